"""How an ARI app serves its calls (ids, formats, limits, setup timeouts).

Its own module so that the parts of a call (setup, transfer) read it without importing the call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AriAppConfig:
    app: str = "ivr"
    advertise: str = "127.0.0.1:9092"
    """``host:port`` Asterisk dials for media (``external_host``)."""
    format: str | None = None
    """Force ``slin16``/``slin``; None picks per caller."""
    max_calls: int = 100
    id_prefix: str = "ivr-"
    """Start of every ARI id this app creates (bridges, media channels, agent legs): a worker's is
    ``ivr-w<N>-``, so its supervisor routes their events by name."""
    step_timeout: float = 5.0
    """Each setup step (answer, bridge, externalMedia, UUID, media StasisStart, addChannel)."""
    media: str = "audiosocket"
    """The calls' media transport unless a call asks for another: ``audiosocket`` or ``websocket``."""
    setup_concurrency: int = 32
    """Calls set up at once; the others wait in order (:mod:`ivr.call.setup_gate`)."""
    setup_queue_seconds: float = 10.0
    """Longest a caller waits for a set-up slot before it is refused with congestion."""

    @property
    def media_prefix(self) -> str:
        """Start of this app's media channel ids: a StasisStart for one nobody claims is not a caller."""
        return f"{self.id_prefix}media-"
