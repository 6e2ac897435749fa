"""A talking caller on Asterisk's side of an AudioSocket session, for the simulator and tests.

Like a real phone bridged to the media channel, it sends a 20 ms frame every 20 ms (silence unless it is
speaking), paced on absolute deadlines, and it records everything the application sends with the arrival
time of each frame, so tests can check what the IVR said and measure its pacing from the receiving side.
It behaves like Asterisk at the edges: UUID first, FIN on hangup, never ``0x00``, and a reset when the
application sends anything but audio or hangup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Protocol

from ivr.audiosocket.protocol import (
    Audio,
    FrameDecoder,
    Hangup,
    ProtocolError,
    encode_audio,
    encode_uuid,
    frame_bytes,
    rate_for_format,
)
from ivr.audiosocket.stats import LatencyHistogram
from ivr.sim.ari_state import SimBridge, SimChannel
from ivr.sim.media_leg import CONNECT_TIMEOUT, write_dtmf
from ivr.speech.simulated import decode_text_speech, encode_text_speech

log = logging.getLogger("ivr.sim.caller")

PERIOD = 0.020


class CallerVoice:
    """What a simulated caller says and hears, whatever carries its media (AudioSocket or WebSocket).

    The transport's leg takes the next frame to send with :meth:`next_frame` once per 20 ms and hands
    every frame the application played to :meth:`hear`, with its arrival time.
    """

    def __init__(self, channel_id: str, rate: int) -> None:
        self.channel_id = channel_id
        self.rate = rate
        self.heard = bytearray()
        """Every audio payload the application sent, in order."""
        self.sent = bytearray()
        """Every frame this caller sent (speech and silence), in order: the caller's track of a recording."""
        self.arrivals: list[float] = []
        self.error: str | None = None
        self.hangup_received = False
        self._outgoing: deque[bytes] = deque()
        self._spoken = asyncio.Event()
        self._closed = asyncio.Event()
        self._heard_changed = asyncio.Event()
        self._silence = bytes(frame_bytes(rate))

    # -- what the caller does --------------------------------------------------------------------

    async def say(self, text: str, *, wait: bool = True) -> None:
        """Speak ``text`` (simulation speech: the words ride in the audio); returns once it was sent."""
        await self.speak(encode_text_speech(text, self.rate, ms_per_char=40, min_ms=400), wait=wait)

    async def speak(self, pcm: bytes, *, wait: bool = True) -> None:
        """Send ``pcm`` (s16le at :attr:`rate`) as the caller's voice, paced; returns once it was sent."""
        size = frame_bytes(self.rate)
        pcm += bytes(-len(pcm) % size)
        self._spoken.clear()
        self._outgoing.extend(pcm[i : i + size] for i in range(0, len(pcm), size))
        if wait:
            await self._spoken.wait()

    async def send_dtmf(self, digit: str) -> None:
        raise NotImplementedError

    # -- what the caller heard -------------------------------------------------------------------

    def heard_texts(self) -> list[str]:
        return decode_text_speech(bytes(self.heard))

    async def wait_heard(self, fragment: str, timeout: float = 10.0) -> None:
        """Wait until a prompt containing ``fragment`` has been heard."""
        async with asyncio.timeout(timeout):
            while not any(fragment.lower() in t.lower() for t in self.heard_texts()):
                self._heard_changed.clear()
                await self._heard_changed.wait()

    async def wait_heard_count(self, fragment: str, count: int, timeout: float = 10.0) -> None:
        """Wait until prompts containing ``fragment`` have been heard ``count`` times."""
        async with asyncio.timeout(timeout):
            while sum(fragment.lower() in t.lower() for t in self.heard_texts()) < count:
                self._heard_changed.clear()
                await self._heard_changed.wait()

    def lateness(self) -> LatencyHistogram:
        """How late each received frame was against an ideal 20 ms cadence anchored at the first one.

        The ideal clock restarts after gaps longer than a second; cumulative drift is visible as growing
        lateness, not hidden by per-frame gaps.
        """
        hist = LatencyHistogram()
        if not self.arrivals:
            return hist
        start = self.arrivals[0]
        n = 0
        for t in self.arrivals:
            expected = start + n * PERIOD
            if t - expected > 1.0:
                start, n, expected = t, 0, t
            hist.record(t - expected)
            n += 1
        return hist

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def track(self) -> bytes:
        """What the caller heard, one frame per 20 ms it sent (silence where nothing played): the IVR's
        side of a recording, in step with :attr:`sent`."""
        return bytes(self.heard)

    # -- used by the transport's leg -------------------------------------------------------------

    def next_frame(self) -> bytes:
        """The caller's next 20 ms (speech, else silence), recorded in :attr:`sent`."""
        if self._outgoing:
            frame = self._outgoing.popleft()
            if not self._outgoing:
                self._spoken.set()
        else:
            frame = self._silence
        self.sent += frame
        return frame

    def hear(self, payload: bytes | memoryview, now: float) -> None:
        self.heard += payload
        self.arrivals.append(now)
        self._heard_changed.set()

    def ended(self) -> None:
        """The media is over: nothing more will be said (nobody waits for it) or heard."""
        self._outgoing.clear()
        self._spoken.set()
        self._closed.set()
        self._heard_changed.set()


class CallerLeg(CallerVoice):
    """One simulated caller's media over AudioSocket: speaks, stays silent, records what it hears."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel_id: str, rate: int
    ) -> None:
        super().__init__(channel_id, rate)
        self._reader = reader
        self._writer = writer
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name=f"sim-caller-read-{channel_id}"),
            loop.create_task(self._send(), name=f"sim-caller-send-{channel_id}"),
        ]

    async def send_dtmf(self, digit: str) -> None:
        await write_dtmf(self._writer, digit)

    # -- plumbing --------------------------------------------------------------------------------

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        try:
            while not self._writer.is_closing() and not self._closed.is_set():
                self._writer.write(encode_audio(self.next_frame(), self.rate))
                n += 1
                await asyncio.sleep(max(0.0, start + n * PERIOD - loop.time()))
        except (ConnectionError, OSError):
            pass
        finally:
            # The call is over: nothing more will be said, so nobody waits for it.
            self._outgoing.clear()
            self._spoken.set()

    async def _read(self) -> None:
        decoder = FrameDecoder(max_payload=65535)
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    return
                now = loop.time()
                for frame in decoder.feed(data):
                    if isinstance(frame, Audio) and frame.payload:
                        self.hear(frame.payload, now)
                    elif isinstance(frame, Hangup):
                        self.hangup_received = True
                        return
                    else:  # Asterisk hangs up and resets on anything else
                        self.error = f"application sent {frame!r}"
                        self._writer.transport.abort()
                        return
        except ProtocolError as exc:
            self.error = str(exc)
            self._writer.transport.abort()
        except (ConnectionError, OSError):
            return
        finally:
            self._closed.set()
            self._heard_changed.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class SimTopology(Protocol):
    """Who is bridged with whom (:class:`~ivr.sim.ari_server.SimAsterisk` is one)."""

    @property
    def channels(self) -> Mapping[str, SimChannel]: ...

    @property
    def bridges(self) -> Mapping[str, SimBridge]: ...


class CallerLegs:
    """A media connector for :class:`~ivr.sim.ari_server.SimAsterisk` that dials talking callers.

    AudioSocket legs come from :meth:`connect`; WebSocket media legs register here too
    (``SimAsterisk(websocket_legs=ivr.sim.ws_media.talking_legs(legs))``)."""

    def __init__(self) -> None:
        self.legs: dict[str, CallerVoice] = {}

    async def connect(self, host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str) -> CallerLeg:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=CONNECT_TIMEOUT)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(encode_uuid(session))
        await writer.drain()
        leg = CallerLeg(reader, writer, channel_id, rate_for_format(fmt))
        self.legs[channel_id] = leg
        return leg

    def for_caller(self, sim: SimTopology, caller_id: str) -> CallerVoice | None:
        """The media leg bridged with ``caller_id`` (None until the app bridged it)."""
        caller = sim.channels.get(caller_id)
        bridge = sim.bridges.get(caller.bridge_id) if caller is not None and caller.bridge_id else None
        if bridge is None:
            return None
        for other in bridge.channels:
            leg = self.legs.get(other)
            if leg is not None:
                return leg
        return None
