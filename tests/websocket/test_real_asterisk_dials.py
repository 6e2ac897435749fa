"""WebSocket media with a real Asterisk 22.10.1 as the client: it dials the app's server through
``websocket_client.conf`` entries (externalMedia ``connection_type=client``, ``Dial(WebSocket/<entry>)``).

Runs on an Asterisk of its own: the entries are rewritten for each test's server port.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from functools import partial
from typing import Any

import aiohttp
import pytest

from ivr.transport import AudioIn, DigitIn, MediaClosed, PeerHangup
from ivr.websocket import WebSocketMediaServer, WebSocketMediaSession, WebSocketServerConfig
from ivr.websocket.protocol import ControlForm
from tests.conftest import AsteriskFactory
from tests.real_asterisk import AriProbe, RealAsterisk

from .ear import tone
from .real_call import media_params, real_call

USER, PASSWORD = "ivr-media", "9f2c-test-secret"


@pytest.fixture(scope="module")
def dialling_asterisk(asterisk_factory: AsteriskFactory) -> RealAsterisk:
    return asterisk_factory("wsm")


def configure(asterisk: RealAsterisk, port: int) -> None:
    """Three entries: the right credentials, a wrong password, none at all (then reload the module)."""
    entries = {"ivr-media": (USER, PASSWORD), "ivr-media-wrong": (USER, "guessed"), "ivr-media-anon": None}
    text = []
    for name, creds in entries.items():
        text += [
            f"[{name}]",
            "type = websocket_client",
            "connection_type = per_call_config",
            f"uri = ws://127.0.0.1:{port}/media",
            "protocols = media",
            "connection_timeout = 1000",
            "reconnect_attempts = 1",
        ]
        if creds:
            text += [f"username = {creds[0]}", f"password = {creds[1]}"]
        text.append("")
    (asterisk.config_dir() / "websocket_client.conf").write_text("\n".join(text), encoding="utf-8")
    assert "reloaded" in asterisk.cli("module reload res_websocket_client.so")


def _destroyed(channel_id: str, event: dict[str, Any]) -> bool:
    return bool(event["type"] == "ChannelDestroyed" and event["channel"]["id"] == channel_id)


def server_config() -> WebSocketServerConfig:
    return WebSocketServerConfig(port=0, username=USER, password=PASSWORD)


async def test_asterisk_dials_the_app_with_its_credentials_and_media_flows_both_ways(
    dialling_asterisk: RealAsterisk,
) -> None:
    async with WebSocketMediaServer(server_config()) as server:
        configure(dialling_asterisk, server.port)
        async with real_call(
            dialling_asterisk, "wsm-dials", server=server, external_host="ivr-media", transport_data="f(json)"
        ) as call:
            session = call.session
            assert session.shape == "server"
            assert session.start.form is ControlForm.JSON
            assert session.channel_id == call.media_id
            assert (await session.play(tone(50)).wait()).completed
            assert len(call.ear.loud()) >= 48
            await call.ari.send_dtmf(call.media_id, "4")
            call.ear.say(tone(10))
            digits, audio = [], 0
            async with asyncio.timeout(5):
                async for event in session.events():
                    if isinstance(event, DigitIn):
                        digits.append(event.digit)
                    audio += isinstance(event, AudioIn) and len(event.payload) == 640
                    if digits and audio >= 5:
                        break
            assert digits == ["4"]


async def test_the_kits_outgoing_exten_reaches_the_session_handler(dialling_asterisk: RealAsterisk) -> None:
    app = "wsm-outgoing"
    sessions: asyncio.Queue[WebSocketMediaSession] = asyncio.Queue()

    async def on_session(session: WebSocketMediaSession) -> None:
        await sessions.put(session)
        await session.wait_closed()

    async with WebSocketMediaServer(server_config(), on_session=on_session) as server:
        configure(dialling_asterisk, server.port)
        async with AriProbe.open(dialling_asterisk) as ari, ari.events(app) as events:
            caller = await ari.originate(
                "Local/outgoing@websocket-test",
                app=app,
                formats="slin16",
                variables={"WS_CONNECTION": "ivr-media"},
            )
            try:
                session = await asyncio.wait_for(sessions.get(), 10)
                assert session.start.connection_id == "ivr-media"
                assert session.start.channel.startswith("WebSocket/ivr-media/")
                await events.wait_for(
                    lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == caller["id"]
                )
                assert (await session.play(tone(5)).wait()).completed
                await ari.hangup(caller["id"])
                kinds = [type(e) async for e in session.events() if not isinstance(e, AudioIn)]
                assert kinds == [PeerHangup, MediaClosed]
            finally:
                await ari.hangup(caller["id"])
                await ari.wait_idle()


async def test_a_bad_or_unauthenticated_client_is_refused_with_one_line_and_a_live_call_is_undisturbed(
    dialling_asterisk: RealAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    async with WebSocketMediaServer(server_config()) as server:
        configure(dialling_asterisk, server.port)
        async with real_call(
            dialling_asterisk, "wsm-refuse", server=server, external_host="ivr-media"
        ) as call:
            session, ari = call.session, call.ari
            session.play(tone(400))  # 8 s, playing throughout
            await call.ear.wait_loud(10)
            caplog.clear()
            caplog.set_level(logging.WARNING, logger="ivr.websocket")
            heard_before = len(call.ear.loud())
            for entry in ("ivr-media-wrong", "ivr-media-anon"):
                bad_id = f"wsm-bad-{uuid.uuid4().hex[:8]}"
                expectation = server.expect(bad_id)  # expected: only the credentials refuse it
                await ari.request(
                    "POST",
                    "/channels/externalMedia",
                    params=media_params("wsm-refuse", bad_id, connection_type="client", external_host=entry),
                )
                destroyed = await call.events.wait_for(partial(_destroyed, bad_id))
                assert destroyed["cause"] == 3, "Asterisk gives up on the channel (no route)"
                assert not expectation.future.done()
                expectation.cancel()
            async with aiohttp.ClientSession() as http:  # a stranger without credentials
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await http.ws_connect(f"ws://127.0.0.1:{server.port}/media", protocols=("media",))
            refusals = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(refusals) == 3
            assert all("refused: missing or wrong credentials" in line for line in refusals)
            assert server.stats.refused_auth == 3
            # The live call went on: still playing, still hearing keys, nothing closed.
            await asyncio.sleep(0.5)
            assert len(call.ear.loud()) >= heard_before + 20
            assert not session.closed
            await ari.send_dtmf(call.media_id, "8")
            async with asyncio.timeout(5):
                async for event in session.events():
                    if isinstance(event, DigitIn):
                        assert event.digit == "8"
                        break
            assert not [
                e
                for e in call.events.events
                if e["type"] == "StasisStart" and e["channel"]["id"].startswith("wsm-bad-")
            ]
