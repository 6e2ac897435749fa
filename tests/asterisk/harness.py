"""The test side of a real-Asterisk call: the caller's phone, its ear and mouth (``ivr_runs`` runs the IVR).

A caller is a Local channel ``Local/ari@caller`` whose two halves both enter the test's own Stasis app
first. One half is the *phone*: the test bridges it with an externalMedia AudioSocket channel to its own
socket server, where a :class:`~ivr.sim.caller_leg.CallerLeg` speaks (paced 20 ms frames, silence
between words) and records every frame it hears with its arrival time. The other half is the *line*:
once the phone is ready, the test ``continue``s it into the dialplan that hands the call to the IVR
(``ivr-in`` for ARI mode, ``audiosocket-test`` for dialplan-only mode, or the project's own dialplan).
So the phone hears the IVR from its very first frame, DTMF pressed on the phone arrives on the line as a
real phone's would, and hanging up the phone is the caller hanging up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.audiosocket.protocol import HEADER_SIZE, Kind, frame_bytes, rate_for_format
from ivr.sim.caller_leg import CallerLeg
from tests.real_asterisk import AriProbe, EventLog, RealAsterisk

FLOWS = Path(__file__).parents[2] / "flows"


def stasis_start(channel_id: str) -> Callable[[dict[str, Any]], bool]:
    def match(event: dict[str, Any]) -> bool:
        return bool(event["type"] == "StasisStart" and event["channel"]["id"] == channel_id)

    return match


class Ears:
    """The test's AudioSocket server: Asterisk connects each phone's externalMedia channel here."""

    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, tuple[str, asyncio.Future[CallerLeg]]] = {}
        self._server: asyncio.Server | None = None
        self.legs: list[CallerLeg] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def expect(self, call_id: uuid.UUID, fmt: str) -> asyncio.Future[CallerLeg]:
        future: asyncio.Future[CallerLeg] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = (fmt, future)
        return future

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE + 16), 5)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if header[0] != Kind.UUID:
            writer.close()
            return
        call_id = uuid.UUID(bytes=bytes(header[HEADER_SIZE:]))
        waiting = self._waiting.pop(call_id, None)
        if waiting is None or waiting[1].done():
            writer.close()
            return
        fmt, future = waiting
        leg = CallerLeg(reader, writer, f"ear-{call_id}", rate_for_format(fmt))
        self.legs.append(leg)
        future.set_result(leg)

    async def close(self) -> None:
        for leg in self.legs:
            await leg.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Phone:
    """One caller: the phone half (with the test's ear and mouth) and the line half of a Local channel."""

    side: CallerSide
    phone_id: str
    line_id: str
    leg: CallerLeg
    bridge_id: str
    media_id: str
    ear_id: uuid.UUID
    started_at: float = 0.0

    async def press(self, digits: str, **params: Any) -> None:
        """Keys pressed on the phone: they reach the line half as a real phone's DTMF does."""
        await self.side.ari.send_dtmf(self.phone_id, digits, **params)

    async def say(self, pcm: bytes, *, wait: bool = True) -> None:
        await self.leg.speak(pcm, wait=wait)

    async def hangup(self) -> None:
        await self.side.ari.hangup(self.phone_id)

    async def ivr_media(self, timeout: float = 10.0) -> str:
        """The channel the IVR bridged with the line half (its AudioSocket media channel), once it did."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for bridge in await self.side.ari.bridges():
                members = bridge["channels"]
                if bridge["id"] != self.bridge_id and self.line_id in members and len(members) == 2:
                    return str(next(c for c in members if c != self.line_id))
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the IVR never bridged {self.line_id}")
            await asyncio.sleep(0.05)

    async def ivr_media_format(self) -> str:
        """``CHANNEL(audionativeformat)`` of the IVR's media channel, e.g. ``(slin16)``."""
        return await self.side.ari.get_variable(await self.ivr_media(), "CHANNEL(audionativeformat)")

    @property
    def leg_name(self) -> str:
        """Name of the phone's own AudioSocket channel in Asterisk."""
        return f"AudioSocket/{self.side.ears.address}-{self.ear_id}"

    @property
    def frame_bytes(self) -> int:
        return frame_bytes(self.leg.rate)

    def frames(self) -> list[tuple[float, bytes]]:
        """Every frame heard so far with its arrival time (loop time)."""
        size = self.frame_bytes
        heard = bytes(self.leg.heard)
        return [(t, heard[i * size : (i + 1) * size]) for i, t in enumerate(self.leg.arrivals)]

    def prompts(self, min_gap_frames: int = 5) -> list[tuple[int, int]]:
        """Runs of non-silent frames heard, as (first, last) frame indexes; quiet gaps shorter than
        ``min_gap_frames`` do not split a run."""
        runs: list[tuple[int, int]] = []
        for i, (_, frame) in enumerate(self.frames()):
            if not any(frame):
                continue
            if runs and i - runs[-1][1] <= min_gap_frames:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return runs

    async def wait_audio(self, timeout: float = 10.0, *, after: int = 0) -> int:
        """Until the phone hears something that is not silence (a prompt) in frame ``after`` or later;
        returns that frame's index."""
        size = self.frame_bytes
        async with asyncio.timeout(timeout):
            while True:
                heard = self.leg.heard
                for i in range(after, len(heard) // size):
                    if any(heard[i * size : (i + 1) * size]):
                        return i
                after = max(after, len(heard) // size)
                await asyncio.sleep(0.02)

    async def wait_quiet(self, quiet_ms: int = 400, timeout: float = 15.0) -> int:
        """Until the phone has heard audio and then ``quiet_ms`` of silence (a prompt finished); returns
        the index of the first quiet frame."""
        need = quiet_ms // 20
        async with asyncio.timeout(timeout):
            while True:
                frames = self.frames()
                last_loud = max((i for i, (_, f) in enumerate(frames) if any(f)), default=None)
                if last_loud is not None and len(frames) - 1 - last_loud >= need:
                    return last_loud + 1
                await asyncio.sleep(0.02)

    async def wait_gone(self, timeout: float = 15.0) -> None:
        """Until the phone half is hung up (the call is over on the caller's side). A channel that
        entered the test app through the dialplan gets no ChannelDestroyed after its StasisEnd."""
        await self.side.events.wait_for(
            lambda e: e["type"] in ("StasisEnd", "ChannelDestroyed") and e["channel"]["id"] == self.phone_id,
            timeout,
        )

    async def wait_back(self, timeout: float = 15.0) -> dict[str, Any]:
        """The line half re-entered the test app (a dialplan target that hands it back, such as the kit's
        ``caller,ari``): its StasisStart."""
        return await self.side.events.wait_for(
            stasis_start(self.line_id), timeout, start=self.side.line_started.get(self.line_id, 0)
        )


class CallerSide:
    """The test's own Stasis app: places callers whose ears and mouths the test owns."""

    def __init__(self, asterisk: RealAsterisk, ari: AriProbe, events: EventLog, app: str, ears: Ears) -> None:
        self.asterisk = asterisk
        self.ari = ari
        self.events = events
        self.app = app
        self.ears = ears
        self.phones: list[Phone] = []
        self.line_started: dict[str, int] = {}

    async def call(
        self,
        context: str,
        extension: str,
        *,
        variables: Mapping[str, str] | None = None,
        formats: str | None = None,
        ear_format: str = "slin16",
        phone_half: str = "b",
        timeout: float = 10.0,
    ) -> Phone:
        """A caller whose line half continues at ``context,extension,1`` once the phone is listening.

        ``phone_half`` "b" (``;2``) suits ARI mode: DTMF pressed on ``;2`` arrives on ``;1`` as
        ``ChannelDtmfReceived``. "a" (``;1``) suits the ``audiosocket-test`` dialplan, which runs on ``;2``.
        """
        tag = uuid.uuid4().hex[:12]
        a, b = f"ta-{tag}", f"tb-{tag}"
        start = len(self.events.events)
        await self.ari.originate(
            "Local/ari@caller",
            app=self.app,
            channel_id=a,
            other_channel_id=b,
            formats=formats,
            variables={"CALLER_APP": self.app, **(variables or {})},
        )
        for channel in (a, b):
            await self.events.wait_for(stasis_start(channel), timeout, start=start)
        phone_id, line_id = (b, a) if phone_half == "b" else (a, b)
        phone = await self._attach(
            tag, phone_id=phone_id, line_id=line_id, ear_format=ear_format, timeout=timeout
        )
        await self.ari.request(
            "POST",
            f"/channels/{line_id}/continue",
            params={"context": context, "extension": extension, "priority": 1},
        )
        return phone

    async def _attach(
        self, tag: str, *, phone_id: str, line_id: str, ear_format: str, timeout: float
    ) -> Phone:
        """Bridge the phone half with the test's ear and mouth (an externalMedia AudioSocket channel)."""
        bridge_id, media_id, ear_id = f"tbr-{tag}", f"tm-{tag}", uuid.uuid4()
        await self.ari.request("POST", "/bridges", params={"type": "mixing", "bridgeId": bridge_id})
        leg_future = self.ears.expect(ear_id, ear_format)
        media_start = len(self.events.events)
        await self.ari.request(
            "POST",
            "/channels/externalMedia",
            params={
                "app": self.app,
                "external_host": self.ears.address,
                "encapsulation": "audiosocket",
                "transport": "tcp",
                "format": ear_format,
                "data": str(ear_id),
                "channelId": media_id,
            },
        )
        leg = await asyncio.wait_for(leg_future, timeout)
        await self.events.wait_for(
            lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == media_id,
            timeout,
            start=media_start,
        )
        await self.ari.request(
            "POST", f"/bridges/{bridge_id}/addChannel", params={"channel": f"{phone_id},{media_id}"}
        )
        phone = Phone(self, phone_id, line_id, leg, bridge_id, media_id, ear_id)
        self.phones.append(phone)
        self.line_started[line_id] = len(self.events.events)
        phone.started_at = asyncio.get_running_loop().time()
        return phone

    async def call_inbound(
        self, exten: str = "100", *, variables: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> Phone:
        """A caller into the kit's ``ivr-in`` as a real inbound call: the line half (``;2``) enters the
        IVR's app in state Ring and the IVR answers it; then the phone half (``;1``) runs ``caller,ari``
        into the test app and the ear is attached (so the first moments of the greeting go unheard)."""
        tag = uuid.uuid4().hex[:12]
        a, b = f"ta-{tag}", f"tb-{tag}"
        start = len(self.events.events)
        await self.ari.originate(
            f"Local/{exten}@ivr-in",
            context="caller",
            extension="ari",
            priority=1,
            channel_id=a,
            other_channel_id=b,
            formats="slin16",
            variables={"CALLER_APP": self.app, **(variables or {})},
        )
        await self.events.wait_for(stasis_start(a), timeout, start=start)
        return await self._attach(tag, phone_id=a, line_id=b, ear_format="slin16", timeout=timeout)

    async def release(self, phone: Phone) -> None:
        """Hang up the test's own side of ``phone`` (its ear and mouth, and their bridge)."""
        for channel in (phone.media_id, phone.phone_id, phone.line_id):
            await self.ari.hangup(channel)
        with contextlib.suppress(AssertionError):
            await self.ari.request("DELETE", f"/bridges/{phone.bridge_id}")

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Release every phone, then until Asterisk holds no channel and no bridge at all: whatever the
        IVR created for its calls is gone too."""
        for phone in self.phones:
            await self.release(phone)
        await self.ari.wait_idle(timeout)

    async def cleanup(self) -> None:
        for phone in self.phones:
            for channel in (phone.media_id, phone.phone_id, phone.line_id):
                await self.ari.hangup(channel)
            with contextlib.suppress(AssertionError):
                await self.ari.request("DELETE", f"/bridges/{phone.bridge_id}")


@contextlib.asynccontextmanager
async def caller_side(asterisk: RealAsterisk, app: str | None = None) -> AsyncIterator[CallerSide]:
    name = app or f"phones-{uuid.uuid4().hex[:8]}"
    ears = Ears()
    await ears.start()
    try:
        async with AriProbe.open(asterisk) as ari, ari.events(name) as events:
            side = CallerSide(asterisk, ari, events, name, ears)
            try:
                yield side
            except Exception as exc:
                # A failed test may have left calls of the IVR in Asterisk: report them with its failure
                # and remove them, so the next test sharing this Asterisk does not fail for them too.
                await side.cleanup()
                left = await ari.settle()
                if left is not None:
                    exc.add_note(f"after the failure, {left} (removed)")
                raise
            else:
                await side.cleanup()
    finally:
        await ears.close()
