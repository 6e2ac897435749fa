"""The simulated Asterisk's chan_websocket legs, both shapes.

**The app connects** (ARI mode).
``POST /channels/externalMedia`` with ``transport=websocket connection_type=server`` makes a channel that
waits (state Down) and replies with ``channelvars.MEDIA_WEBSOCKET_CONNECTION_ID``; the app's connection to
``/media/<that id>`` answers it (``StasisStart`` follows, as on Asterisk 22.10.1). From then on a
:class:`WebSocketMediaLeg` is Asterisk's side of the connection, paced like chan_websocket: a 20 ms tick
(one shared :class:`~ivr.audiosocket.clock.FrameClock`) takes one frame from the
:class:`~ivr.sim.chan_websocket.ChanWebsocketModel`'s queue, which answers marks, flushes, and says XOFF at
900 queued frames and XON below 800; what a tick plays is what the caller hears. A talking leg also sends
the caller's 20 ms frame every tick (a phone's line is never idle); a silent one sends nothing, like a
Local channel. Closing the socket is the hangup, both ways; a caller's key is ``DTMF_END``.

**Asterisk connects** (dialplan-only mode, ``Dial(WebSocket/<entry>/c(slin16))``): :func:`dial` plays
Asterisk's chan_websocket client: it connects to the app's server with the entry's Basic credentials and
subprotocol ``media``, says MEDIA_START, and is the same leg from then on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import WSMsgType, web

from ivr.audiosocket.clock import FrameClock
from ivr.audiosocket.stats import LatencyHistogram
from ivr.sim.caller_leg import PERIOD, CallerLegs, CallerVoice
from ivr.sim.chan_websocket import ChanWebsocketModel
from ivr.transport import SLIN_FORMAT_RATES
from ivr.websocket.protocol import MAX_BINARY_PAYLOAD, SUBPROTOCOL, ControlForm

log = logging.getLogger("ivr.sim.ws")

_MARK: Final = "MEDIA_MARK_PROCESSED"


class SimSocket(Protocol):
    """Either end of an aiohttp WebSocket (the server's response, or a client connection)."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def receive(self, timeout: float | None = None) -> Any: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


def control_form(transport_data: str) -> ControlForm:
    """``transport_data=f(json)`` (appended to the dial string) asks for JSON control messages."""
    return ControlForm.JSON if "f(json)" in transport_data.replace(" ", "").lower() else ControlForm.PLAIN


class WebSocketMediaLeg(CallerVoice):
    """Asterisk's side of one chan_websocket connection: the model's queue, its tick, the caller.

    ``talks``: send the caller's frame (speech, else silence) every tick. :attr:`stalls` counts the gaps
    in a prompt's audio: ticks that found the queue empty in the middle of a prompt (no mark reached
    since its last frame) before more of it came, i.e. the app fell behind what Asterisk plays.
    """

    def __init__(
        self,
        ws: SimSocket,
        model: ChanWebsocketModel,
        clock: FrameClock,
        *,
        channel_id: str,
        rate: int,
        talks: bool = False,
    ) -> None:
        super().__init__(channel_id, rate)
        self.ws = ws
        self.model = model
        self.clock = clock
        self.talks = talks
        self.stalls = 0
        self.stalled_ticks = 0
        self.frames_played = 0
        self._track = bytearray()
        self._in_audio = False
        self._gap = 0
        self._out: deque[str | bytes] = deque()
        self._wake = asyncio.Event()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        """The client session of a leg that dialled the app (closed with the leg)."""

    # -- MediaLeg (what the simulated ARI needs) ------------------------------------------------

    async def wait_closed(self) -> None:
        await asyncio.shield(self._done)

    async def send_dtmf(self, digit: str) -> None:
        """A caller's key, as the bridge forwards it: ``DTMF_END`` over the socket."""
        self._send(self.model.dtmf(digit))

    async def close(self) -> None:
        """The channel was hung up: Asterisk closes the socket (1000)."""
        self._finish()
        with contextlib.suppress(Exception):
            await self.ws.close(code=1000)
        if self._task is not None and self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Read until the connection is over (MEDIA_START has been sent); the writer runs beside."""
        writer = self._loop.create_task(self._write(), name=f"sim-ws-write-{self.channel_id}")
        self.clock.add(self)
        try:
            await self._read()
        finally:
            self._finish()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def tick(self, deadline: float) -> None:
        """One 20 ms chan_websocket timer tick: play a frame (the caller hears it), send its events,
        then the caller's own frame."""
        if self._done.done():
            return
        frame, events = self.model.tick()
        for text in events:
            if _MARK in text:
                self._in_audio, self._gap = False, 0
            self._send(text)
        now = self._loop.time()
        if frame is not None:
            if self._in_audio and self._gap:
                self.stalls += 1
                self.stalled_ticks += self._gap
            self._in_audio, self._gap = True, 0
            self.frames_played += 1
            self.on_played(frame, now)
        else:
            if self._in_audio:
                self._gap += 1
            self.heard_nothing(now)
        out = self.caller_frame()
        if out is not None:
            self._send(out)
            self._track += frame if frame is not None else self._silence

    def lateness(self) -> LatencyHistogram:
        """Per prompt: each played frame against a 20 ms cadence from the prompt's first frame (nothing
        flows between prompts, so each unbroken run restarts the ideal clock; gaps inside a prompt are
        :attr:`stalls`)."""
        hist = LatencyHistogram()
        start = previous = None
        n = 0
        for at in self.arrivals:
            if start is None or previous is None or at - previous > 1.5 * PERIOD:
                start, n = at, 0
            hist.record(at - (start + n * PERIOD))
            previous = at
            n += 1
        return hist

    @property
    def track(self) -> bytes:
        """What the caller heard per tick it talked, silence where Asterisk played nothing (nothing flows
        between prompts), so it lines up with :attr:`sent`."""
        return bytes(self._track)

    def on_played(self, frame: bytes, now: float) -> None:
        """What the caller hears (subclasses measure it)."""
        self.hear(frame, now)

    def heard_nothing(self, now: float) -> None:
        """A tick that played nothing: silence for the caller (subclasses count it)."""

    def caller_frame(self) -> bytes | None:
        """The caller's audio for this tick, or None (a silent line sends nothing)."""
        return self.next_frame() if self.talks else None

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, message: str | bytes) -> None:
        if not self._done.done():
            self._out.append(message)
            self._wake.set()

    async def _write(self) -> None:
        ws, out, wake = self.ws, self._out, self._wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                while out:
                    message = out.popleft()
                    if isinstance(message, bytes):
                        await ws.send_bytes(message)
                    else:
                        await ws.send_str(message)
        except (ConnectionError, RuntimeError):
            self._finish()

    async def _read(self) -> None:
        ws, model = self.ws, self.model
        while not self._done.done():
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                data: bytes = msg.data
                if len(data) > MAX_BINARY_PAYLOAD:
                    self.error = f"a {len(data)}-byte binary message (Asterisk reads at most 64 KiB)"
                    await ws.close(code=1009)
                    return
                for text in model.receive_binary(data):
                    self._send(text)
            elif msg.type is WSMsgType.TEXT:
                self._command(msg.data)
                if model.hangup_requested:
                    self.hangup_received = True
                    await ws.close(code=1000)
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the app went away
                return

    def _command(self, text: str) -> None:
        ignored = self.model.ignored_commands
        for reply in self.model.receive_text(text):
            self._send(reply)
        if self.model.ignored_commands > ignored and self.error is None:
            # chan_websocket logs "unknown command" and does nothing: a regression in the app's encoder
            self.error = f"application sent a command Asterisk ignores: {text[:60]!r}"

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
            self.clock.remove(self)
            self.ended()


LegFactory = Callable[[web.WebSocketResponse, ChanWebsocketModel, FrameClock, str, int], WebSocketMediaLeg]
"""Makes Asterisk's side of a connection: ``(ws, model, clock, channel_id, rate)``."""


def silent_leg(
    ws: web.WebSocketResponse, model: ChanWebsocketModel, clock: FrameClock, channel_id: str, rate: int
) -> WebSocketMediaLeg:
    """The default: a caller that says nothing (and hears, for whoever looks)."""
    return WebSocketMediaLeg(ws, model, clock, channel_id=channel_id, rate=rate)


def media_response() -> web.WebSocketResponse:
    """The server side of ``/media/<id>``: subprotocol ``media``, no compression, Asterisk's limits."""
    return web.WebSocketResponse(
        protocols=(SUBPROTOCOL,), compress=False, max_msg_size=1 << 20, autoping=True
    )


def talking_legs(legs: CallerLegs) -> LegFactory:
    """Talking callers (speech or silence every 20 ms), registered in ``legs`` beside AudioSocket ones."""

    def make(
        ws: web.WebSocketResponse, model: ChanWebsocketModel, clock: FrameClock, channel_id: str, rate: int
    ) -> WebSocketMediaLeg:
        leg = WebSocketMediaLeg(ws, model, clock, channel_id=channel_id, rate=rate, talks=True)
        legs.legs[channel_id] = leg
        return leg

    return make


async def dial(
    url: str,
    *,
    username: str,
    password: str,
    clock: FrameClock,
    fmt: str = "slin16",
    channel_id: str | None = None,
    entry: str = "ivr-media",
    form: ControlForm = ControlForm.PLAIN,
    talks: bool = True,
) -> WebSocketMediaLeg:
    """``Dial(WebSocket/<entry>/c(fmt))``: connect to the app's server as chan_websocket does (Basic
    credentials up front, subprotocol ``media``), say MEDIA_START, and run the leg in a task of its own
    (:meth:`WebSocketMediaLeg.close` ends it). Raises ``aiohttp.WSServerHandshakeError`` when refused."""
    rate = SLIN_FORMAT_RATES[fmt]
    channel_id = channel_id or f"sim-{uuid.uuid4().hex[:12]}"
    http = aiohttp.ClientSession()
    try:
        ws = await http.ws_connect(
            url,
            protocols=(SUBPROTOCOL,),
            headers={
                "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            },
            max_msg_size=1 << 20,
            autoping=True,
        )
    except BaseException:
        await http.close()
        raise
    model = ChanWebsocketModel(
        frame_size=rate // 50 * 2,
        form=form,
        channel_id=channel_id,
        fmt=fmt,
        connection_id=entry,
        channel=f"WebSocket/{entry}/0x{uuid.uuid4().hex[:12]}",
    )
    await ws.send_str(model.media_start())
    leg = WebSocketMediaLeg(ws, model, clock, channel_id=channel_id, rate=rate, talks=talks)
    leg._http = http
    leg._task = asyncio.get_running_loop().create_task(leg.run(), name=f"sim-ws-dial-{channel_id}")
    return leg
