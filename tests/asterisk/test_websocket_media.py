"""``ivr run`` with WebSocket media against a real Asterisk 22.10.1: ARI calls whose media is an
externalMedia ``transport=websocket`` channel (the app connects to ``/media/<id>``), and dialplan-only
calls that Asterisk dials with ``Dial(WebSocket/<websocket_client.conf entry>/c(slin16))``.

The phone (``harness.py``) hears what Asterisk plays out of chan_websocket's queue through the bridge,
with the arrival time of every frame. The app's own sessions are watched through a spy on the media
client's ``connect`` (the real one runs): how far ahead each prompt went, and when barge-in cleared it.
Assertions are counts and bounds a loaded machine can only make longer, never wrong.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from ivr.websocket import WebSocketMediaClient, WebSocketMediaSession
from tests.conftest import AsteriskFactory
from tests.real_asterisk import RealAsterisk

from .harness import Phone, caller_side
from .ivr_runs import ivr_env, ivr_process, ivr_run, ivr_settings

GREETING = "Welcome to the WebSocket media line."
QUESTION = "Press 1 for one or 2 for two."
GREETING_FRAMES = 80  # 160 characters of the sim-text voice, 10 ms each
QUESTION_FRAMES = 111  # 221 characters (the last frame padded)
NO_INPUT_S = 2.0  # wsmedia.yaml
MEDIA_USER, MEDIA_PASSWORD = "ivr-media", "ws-media-test-secret"
MARKER = np.array([12345, -12345, 23456, -23456, 31111, -31111], dtype="<i2").tobytes()
"""What ivr.speech.simulated puts 100 ms into every sim-text prompt."""


@dataclass
class MediaSpy:
    """The app's WebSocket media sessions (the real ``connect`` runs) and when each one cleared a prompt."""

    sessions: list[WebSocketMediaSession] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> MediaSpy:
    found = MediaSpy()
    connect = WebSocketMediaClient.connect

    async def spying(self: WebSocketMediaClient, connection_id: str, **kw: Any) -> WebSocketMediaSession:
        session = await connect(self, connection_id, **kw)
        found.sessions.append(session)
        clear = session.clear

        def timed_clear() -> int:
            cleared = clear()
            if cleared:
                found.clears.append(asyncio.get_running_loop().time())
            return cleared

        session.clear = timed_clear  # type: ignore[method-assign]
        return session

    monkeypatch.setattr(WebSocketMediaClient, "connect", spying)
    return found


def prompt_frames(phone: Phone) -> list[list[float]]:
    """Arrival times of the frames of each prompt the phone heard, cut where the next prompt starts: a
    sim-text prompt carries a marker 100 ms (5 frames) after its first sample."""
    heard, size = bytes(phone.leg.heard), phone.frame_bytes
    starts, at = [], heard.find(MARKER)
    while at >= 0:
        starts.append(at // size - 5)
        at = heard.find(MARKER, at + 1)
    times = [t for t, _ in phone.frames()]
    return [times[a:b] for a, b in zip(starts, [*starts[1:], len(times)], strict=True)]


async def test_an_ari_call_over_websocket_media_paced_by_asterisk(
    real_asterisk: RealAsterisk, spy: MediaSpy
) -> None:
    """The greeting is handed to Asterisk at once and heard as steady 20 ms frames; the question is
    heard whole and the no-input timer starts at Asterisk's end mark; the key is acted on once (it
    arrives as ChannelDtmfReceived and as DTMF_END); the hangup leaves no channel and no bridge."""
    settings = ivr_settings(real_asterisk, IVR_MEDIA="websocket", IVR_DEFAULT_FLOW="wsmedia")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
        assert await phone.ivr_media_format() == "(slin16)"
        assert (await phone.ivr_media()).startswith("ivr-media-")
        await phone.leg.wait_heard("I did not hear you", timeout=20)
        [session] = spy.sessions
        assert session.shape == "client"
        assert session.marks_confirmed
        assert not spy.clears, "nothing was cut short"
        greeting, question, reprompt = prompt_frames(phone)[:3]
        gaps = [b - a for a, b in itertools.pairwise(greeting)]
        print(
            f"\ngreeting: {len(greeting)} frames over {(greeting[-1] - greeting[0]) * 1000:.0f} ms, median gap "
            f"{statistics.median(gaps) * 1000:.1f} ms; at most {session.stats.max_unconfirmed} frames in "
            f"Asterisk's hands at once; no-input reprompt {(reprompt[0] - question[-1]) * 1000:.0f} ms after "
            "the question's last frame"
        )
        assert len(greeting) == GREETING_FRAMES, "heard whole, nothing dropped"
        assert len(question) == QUESTION_FRAMES, "heard to its end: listening had not begun"
        assert session.stats.max_unconfirmed >= GREETING_FRAMES - 5, "the greeting went ahead at once"
        assert greeting[-1] - greeting[0] >= 0.9 * 0.020 * (len(greeting) - 1), "paced, not a burst"
        assert 0.015 <= statistics.median(gaps) <= 0.025
        assert reprompt[0] - question[-1] >= NO_INPUT_S - 0.05, (
            "listening began when the caller heard the end"
        )
        await phone.press("1")
        await phone.leg.wait_heard("One it is", timeout=10)
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.outcome == "hangup"
        assert report.dtmf == ["1"]
        assert report.path[:3] == ["hello", "main", "one"]
        await side.wait_idle()


async def test_barge_in_silences_the_caller_side_within_100_ms(
    real_asterisk: RealAsterisk, spy: MediaSpy
) -> None:
    settings = ivr_settings(real_asterisk, IVR_MEDIA="websocket", IVR_DEFAULT_FLOW="wsmedia")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
        await phone.leg.wait_heard(QUESTION, timeout=15)
        await asyncio.sleep(0.5)  # well into the question, most of it still in Asterisk's queue
        await phone.press("2")
        await phone.leg.wait_heard("Two it is", timeout=10)
        [cleared_at] = spy.clears
        greeting, question = prompt_frames(phone)[:2]
        assert len(greeting) == GREETING_FRAMES
        after = [t for t in question if t > cleared_at]
        print(f"\nafter FLUSH_MEDIA the phone heard {len(after)} more frames of the question")
        assert len(question) < QUESTION_FRAMES - 20, "the question was cut short"
        assert len(after) <= 5, "at most 100 ms of the question after barge-in"
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.dtmf == ["2"]
        assert report.path[:3] == ["hello", "main", "two"]
        await side.wait_idle()


async def test_a_call_asking_for_websocket_media_by_channel_variable(
    real_asterisk: RealAsterisk, spy: MediaSpy
) -> None:
    """AudioSocket is the deployment's default; ``IVR_MEDIA=websocket`` on the channel picks WebSocket."""
    async with ivr_run(ivr_settings(real_asterisk)) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app, "IVR_MEDIA": "websocket"}
        )
        await phone.leg.wait_heard("Say sales or support")
        assert len(spy.sessions) == 1
        assert await side.ari.channels()  # the call is live
        names = [c["name"] for c in await side.ari.channels()]
        assert any(n.startswith("WebSocket/INCOMING/") for n in names), names
        await phone.press("1")
        await phone.leg.wait_heard("Sales it is")
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.dtmf == ["1"]
        await side.wait_idle()


@pytest.fixture(scope="module")
def dialling_asterisk(asterisk_factory: AsteriskFactory) -> RealAsterisk:
    """An Asterisk of its own: its websocket_client.conf is rewritten for this module's server port."""
    return asterisk_factory("wsd")


def media_entry(asterisk: RealAsterisk, port: int) -> None:
    """The project's example entry (asterisk-docker/etc/websocket_client_media.conf.example), pointed at
    the test's ``ivr run --no-ari``."""
    text = "\n".join(
        [
            "[ivr-media]",
            "type = websocket_client",
            "connection_type = per_call_config",
            f"uri = ws://127.0.0.1:{port}/media",
            "protocols = media",
            f"username = {MEDIA_USER}",
            f"password = {MEDIA_PASSWORD}",
            "connection_timeout = 1000",
            "reconnect_attempts = 1",
            "",
        ]
    )
    (asterisk.config_dir() / "websocket_client.conf").write_text(text, encoding="utf-8")
    assert "reloaded" in asterisk.cli("module reload res_websocket_client.so")


async def test_dialplan_dial_websocket_into_ivr_run_no_ari(dialling_asterisk: RealAsterisk) -> None:
    """``Dial(WebSocket/ivr-media/c(slin16))`` (the kit's ``websocket-test,outgoing``): Asterisk dials the
    app's WebSocket media server with the entry's credentials; the default flow runs; DTMF over the
    socket, once; the flow's hangup ends the call and nothing is left."""
    settings = ivr_settings(
        dialling_asterisk,
        IVR_DEFAULT_FLOW="menu",
        IVR_MEDIA="websocket",
        IVR_MEDIA_WEBSOCKET_LISTEN="127.0.0.1:0",
        IVR_MEDIA_WEBSOCKET_PASSWORD=MEDIA_PASSWORD,
    )
    async with ivr_run(settings, no_ari=True) as run, caller_side(dialling_asterisk) as side:
        media_entry(dialling_asterisk, int(run.info["websocket"][1]))
        phone = await side.call(
            "websocket-test",
            "outgoing",
            formats="slin16",
            phone_half="a",  # the kit's websocket-test runs on ;2: keys pressed on ;1 reach it
            variables={"WS_CONNECTION": "ivr-media", "WS_CODEC": "slin16"},
        )
        await phone.leg.wait_heard("Welcome to the test line.")
        await phone.leg.wait_heard("Say sales or support")
        await phone.press("1")
        await phone.leg.wait_heard("Sales it is")
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.outcome == "hangup"
        assert report.path[:3] == ["hello", "main", "sales"]
        assert report.dtmf == ["1"], "DTMF over the socket, once"
        await side.wait_idle()


async def test_ivr_run_with_a_worker_serves_websocket_media_calls_and_sigterm_ends_them(
    real_asterisk: RealAsterisk,
) -> None:
    """The real CLI: the supervisor holds the events socket, its worker connects the calls' media to
    ``/media/<id>``; SIGTERM hangs up the live calls (HANGUP over the socket) and nothing is left."""
    env = ivr_env(real_asterisk, IVR_MEDIA="websocket", IVR_DEFAULT_FLOW="patient")
    async with ivr_process(env) as ivr, caller_side(real_asterisk) as side:
        assert "worker" in await ivr.wait_line("media websocket"), "the worker's ready line names its media"
        phones = [
            await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": env["IVR_ARI_APP"]})
            for _ in range(3)
        ]
        await asyncio.gather(*(p.leg.wait_heard("Say sales or support") for p in phones))
        names = [c["name"] for c in await side.ari.channels()]
        assert sum(n.startswith("WebSocket/INCOMING/") for n in names) == 3, names
        assert await ivr.terminate() == 0
        await asyncio.gather(*(p.wait_gone() for p in phones))
        await side.wait_idle()
    assert not [line for line in ivr.lines if "Traceback" in line]
