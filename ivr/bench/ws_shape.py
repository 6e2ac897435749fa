"""The ``ari-ws`` shape: ``ivr run`` in ARI mode with WebSocket media, the generator playing Asterisk.

The generator hosts the simulated Asterisk (as for ``ari``); each call's media is an externalMedia
``transport=websocket`` channel the app connects to (``/media/<id>``), served by a
:class:`~ivr.sim.ws_media.WebSocketMediaLeg` per call: chan_websocket's queue model, ticked by the
generator's one shared 20 ms :class:`~ivr.audiosocket.clock.FrameClock`, answers marks, flushes,
XOFF/XON. Here **Asterisk paces**: the app sends each prompt ahead and never writes on a clock, so
frame lateness at the caller is the (simulated) Asterisk's, not the app's, and is not reported.

What is measured instead: the app's CPU and RSS per call, and whether it keeps up. A point passes when
every call was set up, nothing was dropped (the app's inbound counter; messages the queue model dropped
whole because it was full), no prompt **stalled** (a tick found Asterisk's queue empty in the middle of a
prompt: the app fell behind what Asterisk plays) and the caller's response latency (end of its speech to
the reply's first played frame) stays within :data:`RESPONSE_P99_LIMIT_MS` at p99. XOFF is counted too
(sending paused by flow control, which is normal for long prompts, never a drop).

The callers behave as :mod:`ivr.bench.legs`' do (noise while listening, a burst of sim-text speech or a
key once a prompt has ended, latency to the reply), but hear the ticks of the queue: a tick that plays
nothing is silence (nothing flows between prompts).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.audiosocket.stats import LatencyHistogram
from ivr.bench.legs import _LISTEN, CALLER_TEXT, NOISE_FRAMES, NOISE_RMS, PoliteCaller
from ivr.bench.legs import _says_menu as says_menu  # the bench callers' one "Press 1" detector
from ivr.sim.chan_websocket import ChanWebsocketModel
from ivr.sim.ws_media import SimSocket, WebSocketMediaLeg
from ivr.speech.simulated import encode_text_speech

WS_SHAPE: Final = "ari-ws"
WS_LABEL: Final = "ivr run (ARI, WebSocket media: Asterisk paces)"
RESPONSE_P99_LIMIT_MS: Final = 500.0
"""The flow's 300 ms endpointing silence plus at most ~200 ms of the app's own delay."""
JUDGED_WINDOW_S: Final = 5.0
"""A window this long sees every caller answered at least once (``--quick``'s 1.5 s may see none)."""

_monotonic = time.monotonic


class BenchWsLeg(PoliteCaller, WebSocketMediaLeg):
    """Asterisk's side of one call's WebSocket media, and a polite caller on it."""

    gen: WsLoadGenerator

    def __init__(
        self, gen: WsLoadGenerator, ws: SimSocket, model: ChanWebsocketModel, channel_id: str, rate: int
    ) -> None:
        super().__init__(ws, model, gen.clock, channel_id=channel_id, rate=rate)
        self.gen = gen
        self.first_rx: float | None = None
        # self.arrivals stays empty: lateness at the caller is Asterisk's here (see the module docstring)
        self.paused = 0
        self._init_turns(channel_id)
        self._base = (0, 0, 0, 0)

    @property
    def closed(self) -> bool:
        return self._done.done()

    def write_key(self, digit: str) -> None:
        """A key straight over the media (``DTMF_END``), when no simulated ARI presses it."""
        self._send(self.model.dtmf(digit))

    # -- what the caller hears ------------------------------------------------------------------

    def on_played(self, frame: bytes, now: float) -> None:
        if self.first_rx is None:
            self.first_rx = now
        voiced = frame.count(0) != len(frame)
        if voiced and self._state == _LISTEN and not self._heard_menu:
            self._heard_menu = says_menu(bytearray(frame), 0, len(frame))
        self._heard(voiced, _monotonic())

    def heard_nothing(self, now: float) -> None:
        self._heard(False, _monotonic())

    # -- what the caller says -------------------------------------------------------------------

    def caller_frame(self) -> bytes | None:
        return self._next_frame(_monotonic())

    # -- the window -----------------------------------------------------------------------------

    def start_window(self) -> None:
        self.latencies, self.key_latencies = array("d"), array("d")
        self.frames_sent = self.keys_sent = 0
        model = self.model
        self._base = (self.stalls, self.stalled_ticks, model.dropped_messages, model.xoff_sent)
        self.recording = True

    def figures(self) -> tuple[int, int, int, int]:
        """(stalls, stalled ticks, messages dropped whole, XOFF) since the window opened."""
        model = self.model
        now = (self.stalls, self.stalled_ticks, model.dropped_messages, model.xoff_sent)
        return (
            now[0] - self._base[0],
            now[1] - self._base[1],
            now[2] - self._base[2],
            now[3] - self._base[3],
        )


class WsLoadGenerator:
    """All WebSocket media legs of one run on one shared clock (what :class:`ivr.bench.legs.LoadGenerator`
    is for AudioSocket, with the same interface for :mod:`ivr.bench.generator`)."""

    def __init__(self, rate: int, *, send_key: Callable[[BenchWsLeg, str], None] | None = None) -> None:
        self.rate = rate
        self.clock = FrameClock(LoopClock())
        size = rate // 50 * 2
        rng = np.random.default_rng(20261201)
        noise = np.clip(rng.normal(0.0, NOISE_RMS, size // 2 * NOISE_FRAMES), -32768, 32767).astype("<i2")
        raw = noise.tobytes()
        self.noise = [raw[i * size : (i + 1) * size] for i in range(NOISE_FRAMES)]
        pcm = encode_text_speech(CALLER_TEXT, rate, ms_per_char=20, min_ms=600)
        pcm += bytes(-len(pcm) % size)
        self.utterance = [pcm[i : i + size] for i in range(0, len(pcm), size)]
        self.legs: dict[str, BenchWsLeg] = {}
        self.connect_failures = 0
        self._send_key = send_key

    def leg(
        self, ws: SimSocket, model: ChanWebsocketModel, clock: FrameClock, channel_id: str, rate: int
    ) -> WebSocketMediaLeg:
        """The simulated Asterisk's ``websocket_legs`` factory (``clock`` is this generator's)."""
        made = BenchWsLeg(self, ws, model, channel_id, rate)
        self.legs[channel_id] = made
        return made

    async def connect(self, host: str, port: int, session: object, fmt: str, channel_id: str) -> Any:
        """No AudioSocket here: a call that asked for it is a failed connection."""
        self.connect_failures += 1
        raise ConnectionRefusedError("the ari-ws shape serves WebSocket media only")

    def send_key(self, leg: BenchWsLeg, digit: str) -> None:
        if self._send_key is not None:
            self._send_key(leg, digit)
        else:
            leg.write_key(digit)

    def live(self) -> Iterator[BenchWsLeg]:
        return (leg for leg in self.legs.values() if not leg.closed)

    def start_window(self) -> None:
        self.clock.wakeup_lateness = LatencyHistogram()
        self.clock.skipped_periods = 0
        for leg in self.legs.values():
            leg.start_window()

    def stop_window(self) -> None:
        for leg in self.legs.values():
            leg.recording = False

    def asterisk_figures(self) -> dict[str, Any]:
        """What the simulated Asterisk saw in the window, summed over the live calls."""
        per_leg = [leg.figures() for leg in self.live()]
        return {
            "stalls": sum(f[0] for f in per_leg),
            "stalled_ticks": sum(f[1] for f in per_leg),
            "dropped_messages": sum(f[2] for f in per_leg),
            "xoff": sum(f[3] for f in per_leg),
            "max_queue_frames": max((leg.model.max_queue_length for leg in self.live()), default=0),
        }

    def close(self) -> None:
        for leg in list(self.legs.values()):
            leg._finish()
        self.clock.close()


def judge(median: Mapping[str, float | None], runs: list[dict[str, Any]], calls: int) -> list[str]:
    """Why an ``ari-ws`` point fails (empty: it passes); see the module docstring."""
    why: list[str] = []
    if not runs or not all(r["calls_setup"] == calls and r["failed_connections"] == 0 for r in runs):
        why.append("calls not all set up or connections failed")
    if median.get("drops"):
        why.append(f"{median['drops']:g} frames dropped by the app")
    if median.get("asterisk_dropped_messages"):
        why.append(f"{median['asterisk_dropped_messages']:g} messages dropped by Asterisk's full queue")
    if median.get("stalls"):
        why.append(f"{median['stalls']:g} prompt stalls (Asterisk's queue ran dry mid-prompt)")
    p99 = median.get("response_p99_ms")
    if p99 is None:
        if any(r["window_seconds"] >= JUDGED_WINDOW_S for r in runs):
            why.append("no caller got a reply within the window")
    elif p99 > RESPONSE_P99_LIMIT_MS:
        why.append(f"response p99 {p99} ms > {RESPONSE_P99_LIMIT_MS:g}")
    return why


def flat(run: dict[str, Any]) -> dict[str, float | None]:
    """The ``ari-ws`` figures of one run that :func:`ivr.bench.search.summarise` takes medians of."""
    figures = run.get("asterisk_paced") or {}
    return {
        "stalls": figures.get("stalls"),
        "asterisk_dropped_messages": figures.get("dropped_messages"),
        "xoff": figures.get("xoff"),
    }


def ws_note(median: dict[str, Any]) -> str:
    """The table's note for an ``ari-ws`` figure: no lateness column (Asterisk's), what counts instead."""
    p99 = median.get("response_p99_ms")
    return (
        f"Asterisk paces (lateness is its own): response p99 {p99 if p99 is not None else 'n/a'} ms, "
        f"{median.get('stalls') or 0:g} stalls, {median.get('xoff') or 0:g} XOFF"
    )
