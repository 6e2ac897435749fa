"""The bench's callers: Asterisk's side of N AudioSocket sessions on one shared deadline clock.

Every leg shares the project's :class:`FrameClock` timer wheel (absolute deadlines, each leg keeps its own
phase inside the 20 ms period, one timer per 1 ms slot for all the legs in it) and speaks the AudioSocket
wire through an :class:`asyncio.BufferedProtocol` (no streams, no per-call tasks). Each leg:

* sends one 20 ms inbound frame per period, kind ``0x10`` (320 bytes, 8 kHz, what ``AudioSocket()``
  sends) or ``0x12`` (640 bytes, 16 kHz, ``Dial(AudioSocket/.../c(slin16))`` or ``externalMedia``):
  low comfort noise while it listens (a phone line is never digital zero, and the adaptive VAD sees a
  floor), or the caller's "speech": a burst made with :func:`ivr.speech.simulated.encode_text_speech`
  that the VAD hears as speech and the instant ``sim-text`` STT reads back;
* takes turns like a polite caller: it waits until a prompt has ended (400 ms of silence), then answers
  a prompt that said "Press 1" with a key (``1`` and ``2`` in turn: over the socket as ``0x03`` in
  dialplan-only mode, as ARI ``ChannelDtmfReceived`` plus ``0x03`` in ARI mode, as Asterisk does) and
  any other prompt with speech, and measures the latency to the first non-silent frame of the reply;
* timestamps every frame the server sends while a measurement window is open, so lateness against an
  ideal 20 ms cadence, drift and gaps are measured where the audio is received.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from array import array
from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import numpy as np

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.audiosocket.protocol import encode_audio, encode_dtmf, encode_uuid, frame_bytes
from ivr.audiosocket.stats import LatencyHistogram
from ivr.sim.media_leg import CONNECT_TIMEOUT
from ivr.speech.simulated import encode_text_speech

PERIOD = 0.020
CALLER_TEXT = "hello from the benchmark caller"
PROMPT_END_FRAMES = 20
"""Consecutive silent frames (400 ms) after IVR audio that mean "the prompt ended, my turn"."""
LISTEN_FALLBACK_S = 12.0
"""A caller that heard no prompt end for this long speaks anyway (keeps speech flowing if a flow stalls)."""
NOISE_FRAMES = 50
NOISE_RMS = 30.0
"""About -60 dBFS: a quiet line, far below the VAD's speech threshold."""

# What a sim-text prompt carries: a marker, the text's length, then one sample per character. A menu
# prompt is recognised by its encoded "Press 1" (the bench flow's menu; its reprompts contain it too).
_MARKER = np.array([12345, -12345, 23456, -23456, 31111, -31111], dtype="<i2").tobytes()
_MENU_WORDS = (np.frombuffer(b"Press 1", dtype=np.uint8).astype("<i2") * 100 - 12800).tobytes()

_LISTEN, _SPEAK, _AWAIT = 0, 1, 2
_monotonic = time.monotonic

DtmfSender = Callable[["CallerLeg", str], None]


class PoliteCaller:
    """The bench caller's turn taking, shared by the AudioSocket legs here and the WebSocket media legs of
    :mod:`ivr.bench.ws_shape`: noise while listening, a key or a burst of speech once a prompt has ended,
    the latency from its end to the reply's first voiced frame. A leg calls :meth:`_init_turns` once,
    :meth:`_heard` for every frame it hears and :meth:`_next_frame` for every frame it sends."""

    gen: _CallerSource

    def _init_turns(self, channel_id: str) -> None:
        self.frames_sent = 0
        self.keys_sent = 0
        self.recording = False
        self.latencies = array("d")
        self.key_latencies = array("d")
        self.overlapped = 0
        self._state = _LISTEN
        self._state_since = _monotonic()
        self._heard_voice = self._heard_menu = self._awaiting_key = self._overlap = False
        self._silent_run = 0
        self._utt: list[bytes] | None = None
        self._utt_i = 0
        self._utt_end = 0.0
        self._noise_i = hash(channel_id) % NOISE_FRAMES
        self._next_key = "1"

    def _heard(self, voiced: bool, now: float) -> None:
        state = self._state
        if state == _LISTEN:
            if voiced:
                self._heard_voice, self._silent_run = True, 0
            else:
                self._silent_run += 1
        elif state == _AWAIT:
            if voiced:
                if self.recording:
                    (self.key_latencies if self._awaiting_key else self.latencies).append(now - self._utt_end)
                self._listen(now)
                self._heard_voice = True
        elif voiced:  # _SPEAK: the server talked over us; that answer's latency means nothing
            self._overlap = True

    def _listen(self, now: float) -> None:
        self._state, self._state_since = _LISTEN, now
        self._heard_voice = self._heard_menu = False
        self._silent_run = 0

    def _next_frame(self, at: float) -> bytes:
        """The caller's next 20 ms frame (``at``: this tick's time, for the listen fallback)."""
        gen = self.gen
        if (
            self._utt is None
            and self._state == _LISTEN
            and (
                (self._heard_voice and self._silent_run >= PROMPT_END_FRAMES)
                or at - self._state_since > LISTEN_FALLBACK_S
            )
        ):
            if self._heard_menu:  # a key instead of words
                key, self._next_key = self._next_key, ("2" if self._next_key == "1" else "1")
                gen.send_key(self, key)
                self.keys_sent += 1
                self._state, self._awaiting_key = _AWAIT, True
                self._utt_end = self._state_since = _monotonic()
            else:
                self._utt, self._utt_i, self._overlap, self._state = gen.utterance, 0, False, _SPEAK
        self.frames_sent += 1
        utt = self._utt
        if utt is None:
            i = self._noise_i
            self._noise_i = i + 1 if i + 1 < NOISE_FRAMES else 0
            return gen.noise[i]
        frame = utt[self._utt_i]
        self._utt_i += 1
        if self._utt_i == len(utt):
            self._utt = None
            now = _monotonic()
            if self._overlap:
                if self.recording:
                    self.overlapped += 1
                self._listen(now)
            else:
                self._state, self._awaiting_key, self._utt_end = _AWAIT, False, now
            self._state_since = now
        return frame


class _CallerSource(Protocol):
    noise: list[bytes]
    utterance: list[bytes]

    def send_key(self, leg: Any, digit: str) -> None: ...


class CallerLeg(PoliteCaller, asyncio.BufferedProtocol):
    """Asterisk's side of one AudioSocket session: paced caller frames out, timestamped server frames in."""

    gen: LoadGenerator

    def __init__(self, gen: LoadGenerator, channel_id: str) -> None:
        self.gen = gen
        self.channel_id = channel_id
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._acc = bytearray()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None
        self.closed_by_server = False
        self._init_turns(channel_id)
        # what came in
        self.frames_received = 0
        self.first_rx: float | None = None
        self.arrivals = array("d")
        self.paused = 0

    # -- asyncio protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        now = _monotonic()
        acc = self._acc
        acc += self._view[:nbytes]
        end = len(acc)
        pos = 0
        while end - pos >= 3:
            length = (acc[pos + 1] << 8) | acc[pos + 2]
            stop = pos + 3 + length
            if stop > end:
                break
            kind = acc[pos]
            if 0x10 <= kind <= 0x18 and length:
                self.frames_received += 1
                if self.recording:
                    self.arrivals.append(now)
                voiced = acc.count(0, pos + 3, stop) != length
                if voiced and self._state == _LISTEN and not self._heard_menu:
                    self._heard_menu = _says_menu(acc, pos + 3, stop)
                self._heard(voiced, now)
            elif kind == 0x00:
                self.closed_by_server = True
                self._finish(None)
                return
            else:  # what Asterisk answers with a hangup and a reset
                self.error = f"server sent kind 0x{kind:02x} length {length}"
                self._finish(self.error)
                return
            pos = stop
        if pos:
            del acc[:pos]
        if self.first_rx is None and self.frames_received:
            self.first_rx = now

    def eof_received(self) -> bool:
        self.closed_by_server = True
        return False  # close our side at once (no CLOSE-WAIT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        pass

    # -- caller behaviour ------------------------------------------------------------------------------

    def tick(self, deadline: float) -> None:
        """One frame, at this leg's phase of the shared clock."""
        transport = self.transport
        if transport is None or self._closed.done():
            return
        transport.write(self._next_frame(deadline))

    def write_key(self, digit: str) -> None:
        """``0x03`` over this socket (what a bridge delivers to the application)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_dtmf(digit))

    # -- MediaLeg (what SimAsterisk needs) -------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.done()

    def _finish(self, error: str | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
            self.gen.clock.remove(self)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if error is not None:
                transport.abort()
            else:
                transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def send_dtmf(self, digit: str) -> None:
        self.write_key(digit)

    async def close(self) -> None:
        self._finish(None)


def _says_menu(acc: bytearray, start: int, stop: int) -> bool:
    """Whether this frame of a sim-text prompt carries a text with "Press 1" (a marker in the frame)."""
    at = acc.find(_MARKER, start, stop)
    if at < 0:
        return False
    text = at + len(_MARKER) + 2
    if text > stop:
        return False
    chars = int.from_bytes(acc[text - 2 : text], "little", signed=True)
    return acc.find(_MENU_WORDS, text, min(stop, text + 2 * max(chars, 0))) >= 0


class LoadGenerator:
    """All caller legs of one run, their shared clock, and how they connect (directly or through ARI)."""

    def __init__(self, rate: int, *, send_key: DtmfSender | None = None) -> None:
        self.rate = rate
        self.clock = FrameClock(LoopClock())
        size = frame_bytes(rate)
        rng = np.random.default_rng(20261201)
        noise = np.clip(rng.normal(0.0, NOISE_RMS, size // 2 * NOISE_FRAMES), -32768, 32767).astype("<i2")
        raw = noise.tobytes()
        self.noise = [encode_audio(raw[i * size : (i + 1) * size], rate) for i in range(NOISE_FRAMES)]
        pcm = encode_text_speech(CALLER_TEXT, rate, ms_per_char=20, min_ms=600)
        pcm += bytes(-len(pcm) % size)
        self.utterance = [encode_audio(pcm[i : i + size], rate) for i in range(0, len(pcm), size)]
        self.utterance_ms = len(self.utterance) * PERIOD * 1000
        self.legs: dict[str, CallerLeg] = {}
        self.connect_failures = 0
        self._send_key = send_key

    def send_key(self, leg: CallerLeg, digit: str) -> None:
        if self._send_key is not None:
            self._send_key(leg, digit)
        else:
            leg.write_key(digit)

    async def connect(self, host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str) -> CallerLeg:
        """Open one session (SimAsterisk's ``media_connector``, or :meth:`dial`): UUID, then frames."""
        loop = asyncio.get_running_loop()
        try:
            transport, leg = await asyncio.wait_for(
                loop.create_connection(lambda: CallerLeg(self, channel_id), host, port),
                timeout=CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            self.connect_failures += 1
            raise
        if leg.transport is None:  # uvloop may call connection_made a moment later
            leg.connection_made(transport)
        if transport.is_closing():
            self.connect_failures += 1
            raise ConnectionResetError(f"{host}:{port} closed the media connection at once")
        transport.write(encode_uuid(session))
        self.legs[channel_id] = leg
        self.clock.add(leg)  # frames from the first moment, at this leg's own phase
        return leg

    async def dial(self, host: str, port: int) -> CallerLeg | None:
        """What the dialplan's ``AudioSocket()`` does: connect with a new UUID (None if it failed)."""
        session = uuid.uuid4()
        with contextlib.suppress(OSError, TimeoutError):
            return await self.connect(host, port, session, "", str(session))
        return None

    def live(self) -> Iterator[CallerLeg]:
        return (leg for leg in self.legs.values() if not leg.closed)

    def start_window(self) -> None:
        self.clock.wakeup_lateness = LatencyHistogram()
        self.clock.skipped_periods = 0
        for leg in self.legs.values():
            leg.arrivals = array("d")
            leg.latencies = array("d")
            leg.key_latencies = array("d")
            leg.overlapped = 0
            leg.frames_sent = 0
            leg.keys_sent = 0
            leg.recording = True

    def stop_window(self) -> None:
        for leg in self.legs.values():
            leg.recording = False

    def close(self) -> None:
        for leg in list(self.legs.values()):
            leg._finish(None)
        self.clock.close()
