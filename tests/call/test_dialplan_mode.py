"""Dialplan-only mode: a caller leg dials the AudioSocket server directly, as AudioSocket() does."""

from __future__ import annotations

import asyncio
import uuid

from ivr.audiosocket.protocol import RATE_KINDS as AUDIO_KINDS
from ivr.audiosocket.protocol import Audio, FrameDecoder, Kind, encode_uuid
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.sim.caller_leg import CallerLeg, CallerLegs

from .conftest import DATA, sim_speech


async def test_audiosocket_app_call_runs_the_default_flow_at_8k() -> None:
    app = DialplanApp(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech())
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    async with server:
        legs = CallerLegs()
        leg = await legs.connect("127.0.0.1", server.port, uuid.uuid4(), "slin", "AudioSocket-1")
        assert leg.rate == 8000
        await leg.wait_heard("Say sales")
        await leg.send_dtmf("2")  # DTMF comes over the socket in this mode
        await leg.wait_heard("Support it is")
        await leg.wait_closed()
        assert leg.hangup_received, "the app ends the call with a hangup message, then closes"
        await leg.close()
        [report] = app.reports
        assert report.outcome == "hangup"
        assert report.dtmf == ["2"]
        gaps = [b - a for a, b in zip(leg.arrivals, leg.arrivals[1:], strict=False)]
        assert max(gaps) < 2.0, "never 2 s without a frame: AudioSocket() would hang up"
        assert not server.sessions


async def test_wideband_dial_waits_for_the_first_audio_frame_before_the_first_prompt() -> None:
    """Defect 3: Dial(AudioSocket/.../c(slin16)) sends its UUID at once but its first audio later; the
    first prompt must not go out at 8 kHz (kind 0x10) because the call started before the rate was known."""
    app = DialplanApp(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech())
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode_uuid(uuid.uuid4()))
        await asyncio.sleep(0.15)  # Asterisk's first audio comes once the caller's side sends some
        leg = CallerLeg(reader, writer, "AudioSocket-16k", 16000)
        kinds: list[int] = []
        tap = _KindTap(kinds)
        original = leg._reader.read

        async def read(n: int = -1) -> bytes:  # see every message's kind as it arrives
            data = await original(n)
            tap.feed(data)
            return data

        leg._reader.read = read  # type: ignore[method-assign]
        await leg.wait_heard("Say sales")
        await leg.send_dtmf("2")
        await leg.wait_heard("Support it is")
        await leg.wait_closed()
        await leg.close()
        assert "Welcome to the test line." in leg.heard_texts(), "the greeting is heard at 16 kHz"
        [report] = app.reports
        assert report.path[:3] == ["hello", "main", "support"]
        assert kinds, "frames were seen"
        assert Kind.SLIN_8K not in kinds, "every prompt frame is 16 kHz audio (kind 0x12)"


class _KindTap:
    """Records the kind of every non-silent audio message (prompts), and every other message."""

    def __init__(self, kinds: list[int]) -> None:
        self.kinds = kinds
        self.decoder = FrameDecoder(max_payload=65535)

    def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if isinstance(frame, Audio):
                if any(frame.payload):
                    self.kinds.append(AUDIO_KINDS[frame.rate])
            else:
                self.kinds.append(Kind.HANGUP)
