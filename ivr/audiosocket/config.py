"""What an AudioSocket server is configured with, and what it counts.

Apart from :mod:`ivr.audiosocket.server` so that a connection (:mod:`ivr.audiosocket.connection`) reads
its limits without importing the server that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.audiosocket.protocol import DEFAULT_MAX_PAYLOAD


@dataclass(frozen=True, slots=True)
class AudioSocketConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    uuid_timeout: float = 5.0
    """Seconds a new connection has to send its UUID."""
    idle_timeout: float | None = 30.0
    """Accept mode only: hang up a session that sent nothing for this long (None: never)."""
    max_connections: int = 1000
    max_per_source: int = 0
    """Connections from one address at once (0: no limit); for dialplan-only mode's open door."""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    inbound_max_frames: int = 50
    """Audio frames queued for a slow consumer before the oldest are dropped (50 = 1 s)."""
    prebuffer_ms: int = 60
    write_buffer_limit: int = 64 * 1024
    """Bytes queued towards a peer that stopped reading before frames are dropped instead."""
    accept_format: str = "slin"
    linger: float = 1.0
    """After our hangup: seconds the peer has to close its side (Asterisk takes ms) before we close."""
    reuse_port: bool = False
    """SO_REUSEPORT: several worker processes share one port, the kernel spreads connections over them
    (dialplan-only mode with ``--workers N``)."""
    pacer: str = "auto"
    """Who paces outbound frames: ``native`` (a thread of ours in C: :mod:`ivr.audiosocket.native`),
    ``loop`` (the event loop's frame clock) or ``auto`` (native where it is built and the loop runs on
    the system clock, else the loop)."""
    pacer_realtime: int = 0
    """SCHED_FIFO priority of the native pacing thread (1-99) where the process may set it; 0: normal."""
    trim_interval: float | None = 30.0
    """Give freed memory back to the system (:mod:`ivr.audiosocket.memory`) once a wave of call set-ups or
    endings has settled (a second without a connection coming or going), and this often while calls are
    live (None: never)."""


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    refused_capacity: int = 0
    refused_unexpected: int = 0
    refused_duplicate: int = 0
    protocol_errors: int = 0
    uuid_timeouts: int = 0
    idle_timeouts: int = 0
    handler_errors: int = 0
