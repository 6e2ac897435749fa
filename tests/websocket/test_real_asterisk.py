"""WebSocket media against the real Asterisk 22.10.1, the app connecting to Asterisk's /media/<id>.

Timing is Asterisk's (its 20 ms channel timer), measured where the caller hears it; the assertions are
lower bounds and counts of frames, which a loaded machine can only make longer, never wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import statistics
import time
import uuid

import aiohttp
import pytest

from ivr.transport import AudioIn, DigitIn, MediaClosed, PeerHangup, PlayoutState
from ivr.websocket import WebSocketMediaClient
from ivr.websocket.protocol import (
    QUEUE_MAX,
    XOFF_LEVEL,
    ControlForm,
    DtmfEnd,
    ErrorEvent,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    Status,
    decode_event,
    encode_event,
)
from tests.real_asterisk import AriProbe, RealAsterisk

from .ear import tone
from .real_call import media_params, real_call

log = logging.getLogger(__name__)


async def test_the_caller_hears_steady_frames_while_the_app_sends_the_whole_prompt_ahead(
    real_asterisk: RealAsterisk,
) -> None:
    async with real_call(real_asterisk, "wsm-steady") as call:
        session, ear = call.session, call.ear
        asked = asyncio.get_running_loop().time()
        playout = session.play(tone(150))  # 3 s
        await asyncio.sleep(0.3)
        assert session.stats.frames_sent == 150, "the whole prompt went ahead"
        status = await session.status()
        assert status.queue_length >= 100, "Asterisk holds it and plays it out itself"
        result = await playout.wait()
        assert result.state is PlayoutState.COMPLETED
        assert result.frames == 150
        heard = ear.loud()
        assert 148 <= len(heard) <= 150  # a loaded bridge may lose a frame; never the prompt's tail
        gaps = [b - a for a, b in itertools.pairwise(heard)]
        log.info(
            "cadence at the caller: median %.1f ms, span %.0f ms",
            statistics.median(gaps) * 1000,
            (heard[-1] - heard[0]) * 1000,
        )
        assert heard[-1] - heard[0] >= 0.8 * 149 * 0.020, "paced by Asterisk, not a burst"
        assert 0.010 <= statistics.median(gaps) <= 0.030
        assert playout.first_frame_at is not None
        assert playout.first_frame_at >= asked


async def test_the_prompt_ends_when_asterisk_reports_its_mark_not_when_it_was_sent(
    real_asterisk: RealAsterisk,
) -> None:
    async with real_call(real_asterisk, "wsm-mark") as call:
        session, ear = call.session, call.ear
        playout = session.play(tone(50))  # 1 s
        await asyncio.sleep(0.1)
        assert session.stats.frames_sent == 50
        assert not playout.done
        assert len(ear.loud()) < 25
        await playout.wait()
        heard_at_end = len(ear.loud())
        log.info("heard %d of 50 frames when the end mark came back", heard_at_end)
        assert heard_at_end >= 47, "completed when the caller had heard (nearly) all of it"


async def test_barge_in_silences_the_caller_within_100_ms(real_asterisk: RealAsterisk) -> None:
    async with real_call(real_asterisk, "wsm-flush") as call:
        session, ear = call.session, call.ear
        playout = session.play(tone(500))  # 10 s
        await ear.wait_loud(25)
        before, cleared_at = len(ear.loud()), time.monotonic()
        assert session.clear() == 1
        assert playout.done
        assert (await playout.wait()).state is PlayoutState.CLEARED
        await asyncio.sleep(0.6)
        after = ear.loud()[before:]
        log.info(
            "after FLUSH_MEDIA the caller heard %d more frames, the last %.0f ms later",
            len(after),
            ((after[-1] - cleared_at) * 1000) if after else 0,
        )
        assert len(after) <= 5, "at most 100 ms of the prompt after barge-in"
        assert (await session.status()).queue_length == 0
        nxt = session.play(tone(10))  # the next prompt is not flushed with the old one
        assert (await nxt.wait()).completed
        assert len(ear.loud()) - before - len(after) >= 9


async def test_xoff_and_xon_are_respected_when_sending_far_ahead_and_nothing_is_dropped(
    real_asterisk: RealAsterisk,
) -> None:
    async with real_call(real_asterisk, "wsm-xoff") as call:
        session, ear = call.session, call.ear
        session.play(tone(2000))  # 40 s: far more than Asterisk's queue holds
        longest = 0
        deadline = time.monotonic() + 15
        while session.stats.xoff < 2 and time.monotonic() < deadline:  # XOFF, XON, XOFF again
            status = await session.status()
            longest = max(longest, status.queue_length)
            await asyncio.sleep(0.25)
        # Count with Asterisk's queue paused, so nothing moves between the two counts.
        session.send_command("PAUSE_MEDIA")
        await ear.wait_quiet(0.3)
        status = await session.status()
        heard = len(ear.loud())
        log.info(
            "queue %d (longest %d), heard %d, sent %d, xoff %d",
            status.queue_length,
            longest,
            heard,
            session.stats.frames_sent,
            session.stats.xoff,
        )
        assert status.media_paused
        assert session.stats.xoff >= 2, "paused on XOFF, resumed on XON, paused again"
        assert XOFF_LEVEL <= longest < QUEUE_MAX
        assert session.stats.max_unconfirmed < QUEUE_MAX
        # Nothing dropped: every frame sent is either heard already or still in Asterisk's queue (a
        # dropped message would be 10 frames; the bridge may lose one under heavy load).
        assert 0 <= session.stats.frames_sent - status.queue_length - heard <= 2
        session.clear()


async def test_a_caller_key_is_one_digit_in_once(real_asterisk: RealAsterisk) -> None:
    variables = {"DTMF": "12#", "DTMF_DELAY": "1"}
    async with real_call(
        real_asterisk, "wsm-dtmf", caller="Local/dtmf@caller", caller_variables=variables
    ) as call:
        digits: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(6):  # the keys come 1.5 to 3 s in; then room for a duplicate
                async for event in call.session.events():
                    if isinstance(event, DigitIn):
                        digits.append(event.digit)
        assert digits == ["1", "2", "#"]
        ari_digits = [
            e["digit"]
            for e in call.events.of_type("ChannelDtmfReceived")
            if e["channel"]["id"] == call.caller_id
        ]
        assert ari_digits == ["1", "2", "#"], (
            "ARI reports the caller's keys too: the runtime must use one source"
        )


async def test_asterisk_hanging_up_is_peer_hangup_then_media_closed(real_asterisk: RealAsterisk) -> None:
    async with real_call(real_asterisk, "wsm-hangup-in") as call:
        playout = call.session.play(tone(200))
        await call.ear.wait_loud(5)
        await call.ari.hangup(call.media_id)
        kinds = [type(e) async for e in call.session.events() if not isinstance(e, AudioIn)]
        assert kinds == [PeerHangup, MediaClosed]
        assert (await playout.wait()).state is PlayoutState.CLEARED
        assert "1000" in (call.session.close_reason or "")


async def test_the_app_hanging_up_ends_the_media_channel(real_asterisk: RealAsterisk) -> None:
    async with real_call(real_asterisk, "wsm-hangup-out") as call:
        call.session.hangup("flow finished")
        await call.events.wait_for(
            lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == call.media_id
        )
        await call.session.aclose()
        assert call.session.close_reason == "flow finished"
        late = call.session.play(tone(1))
        assert (await late.wait()).state is PlayoutState.FAILED


async def test_caller_audio_arrives_as_audio_in_frames(real_asterisk: RealAsterisk) -> None:
    async with real_call(real_asterisk, "wsm-inbound") as call:
        call.ear.say(tone(25))
        loud = 0
        async with asyncio.timeout(5):
            async for event in call.session.events():
                if isinstance(event, AudioIn):
                    assert event.rate == 16000
                    assert len(event.payload) == 640
                    peak = max(
                        abs(int.from_bytes(event.payload[i : i + 2], "little", signed=True))
                        for i in range(0, 640, 2)
                    )
                    loud += peak > 1000
                    if loud >= 20:
                        break
        assert loud >= 20


async def test_the_kits_incoming_exten_connects_and_plays(real_asterisk: RealAsterisk) -> None:
    """``Dial(WebSocket/INCOMING/c(slin16))``: the id is the channel variable; ``;1`` answers when we connect."""
    app = "wsm-incoming"
    async with (
        AriProbe.open(real_asterisk) as ari,
        ari.events(app) as events,
        WebSocketMediaClient(real_asterisk.http_url) as client,
    ):
        caller = await ari.originate("Local/incoming@websocket-test", app=app, formats="slin16")
        try:
            for _ in range(200):  # ;2's Dial() makes the WebSocket/INCOMING channel
                chans = [c for c in await ari.channels() if c["name"].startswith("WebSocket/INCOMING/")]
                if chans:
                    break
                await asyncio.sleep(0.05)
            assert chans, "no WebSocket/INCOMING channel"
            connection_id = await ari.get_variable(chans[0]["id"], "MEDIA_WEBSOCKET_CONNECTION_ID")
            assert not events.of_type("StasisStart"), "the caller waits for the media connection"
            session = await client.connect(connection_id)
            await events.wait_for(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == caller["id"])
            await ari.request("POST", f"/channels/{caller['id']}/play", params={"media": "sound:beep"})
            frames = 0
            async with asyncio.timeout(5):
                async for event in session.events():
                    frames += isinstance(event, AudioIn)
                    if frames >= 10:
                        break
            assert (await session.play(tone(5)).wait()).completed
        finally:
            await ari.hangup(caller["id"])
            await ari.wait_idle()


@pytest.mark.parametrize("form", [ControlForm.PLAIN, ControlForm.JSON])
async def test_what_asterisk_sends_is_exactly_what_the_codec_reads_and_writes(
    real_asterisk: RealAsterisk, form: ControlForm
) -> None:
    """Every event provoked on a raw socket decodes, and re-encodes to the very same text."""
    app = f"wsm-wire-{form.name.lower()}"
    media_id = f"wsm-wire-{uuid.uuid4().hex[:8]}"
    transport_data = {"transport_data": "f(json)"} if form is ControlForm.JSON else {}
    async with AriProbe.open(real_asterisk) as ari, ari.events(app), aiohttp.ClientSession() as http:
        media = await ari.request(
            "POST",
            "/channels/externalMedia",
            params=media_params(app, media_id, connection_type="server", **transport_data),
        )
        cid = media["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"]
        try:
            async with http.ws_connect(
                f"ws://127.0.0.1:{real_asterisk.port}/media/{cid}", protocols=("media",)
            ) as ws:
                assert ws.protocol == "media"
                texts: list[str] = []

                async def command(plain: str, json_text: str) -> None:
                    await ws.send_str(plain if form is ControlForm.PLAIN else json_text)

                async def until(kind: type, timeout: float = 5.0) -> object:
                    async with asyncio.timeout(timeout):
                        while True:
                            msg = await ws.receive()
                            if msg.type is aiohttp.WSMsgType.TEXT:
                                texts.append(msg.data)
                                event = decode_event(msg.data)
                                if isinstance(event, kind):
                                    return event

                start = await until(MediaStart)
                assert isinstance(start, MediaStart)
                assert start.form is form
                assert start.channel_id == media_id
                assert (start.format, start.optimal_frame_size, start.ptime) == ("slin16", 640, 20)
                await command("MARK_MEDIA m1", '{"command":"MARK_MEDIA","correlation_id":"m1"}')
                assert await until(MediaMarkProcessed) == MediaMarkProcessed(
                    "m1", media_id if form is ControlForm.JSON else None
                )
                await command("GET_STATUS", '{"command":"GET_STATUS"}')
                assert isinstance(await until(Status), Status)
                await command("REPORT_QUEUE_DRAINED", '{"command":"REPORT_QUEUE_DRAINED"}')
                await until(QueueDrained)
                await command(
                    "STOP_MEDIA_BUFFERING b1", '{"command":"STOP_MEDIA_BUFFERING","correlation_id":"b1"}'
                )
                assert (await until(MediaBufferingCompleted)).correlation_id == "b1"  # type: ignore[attr-defined]
                await command(
                    "SET_MEDIA_DIRECTION both", '{"command":"SET_MEDIA_DIRECTION","direction":"sideways"}'
                )
                assert "SET_MEDIA_DIRECTION" in (await until(ErrorEvent)).error_text  # type: ignore[attr-defined]
                for _ in range(XOFF_LEVEL // 10 + 2):
                    await ws.send_bytes(bytes(640 * 10))
                await until(MediaXoff)
                await command("FLUSH_MEDIA", '{"command":"FLUSH_MEDIA"}')
                await until(MediaXon)
                await ari.request("POST", f"/channels/{media_id}/dtmf", params={"dtmf": "9"})
                assert (await until(DtmfEnd)).digit == "9"  # type: ignore[attr-defined]
                for text in texts:
                    event = decode_event(text)
                    if not isinstance(event, ErrorEvent):  # its text loses Asterisk's trailing newline
                        assert encode_event(event, form) == text
        finally:
            await ari.hangup(media_id)
            await ari.wait_idle()
