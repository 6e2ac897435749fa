"""The server Asterisk dials: what it accepts, what it refuses (one log line each), what it owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ivr.transport import DigitIn, MediaClosed, PeerHangup
from ivr.websocket.protocol import ControlForm, DtmfEnd, MediaStart, encode_event
from ivr.websocket.server import WebSocketMediaServer, WebSocketServerConfig
from ivr.websocket.session import WebSocketMediaSession

AUTH = {"Authorization": aiohttp.encode_basic_auth("ivr", "s3cret")}


def media_start(channel_id: str, form: ControlForm = ControlForm.PLAIN) -> str:
    start = MediaStart("media-out", f"WebSocket/media-out/{channel_id}", channel_id, "slin16", 640, 20)
    return encode_event(start, form)


@contextlib.asynccontextmanager
async def server(**overrides: object) -> AsyncIterator[WebSocketMediaServer]:
    config = WebSocketServerConfig(port=0, username="ivr", password="s3cret", **overrides)  # type: ignore[arg-type]
    async with WebSocketMediaServer(config) as srv:
        yield srv


@contextlib.asynccontextmanager
async def asterisk(
    srv: WebSocketMediaServer, headers: dict[str, str] | None = AUTH, protocols: tuple[str, ...] = ("media",)
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A client that connects the way chan_websocket does (Basic credentials up front, subprotocol media)."""
    url = f"ws://127.0.0.1:{srv.port}/media"
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.ws_connect(url, protocols=protocols) as ws,
    ):
        yield ws


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_expected_channel_gets_its_session_and_media_flows_both_ways() -> None:
    async with server() as srv:
        expectation = srv.expect("media-1")
        async with asterisk(srv) as ws:
            await ws.send_str(media_start("media-1"))
            session = await expectation.wait(5)
            assert session.rate == 16000
            assert session.channel_id == "media-1"
            assert session.shape == "server"
            assert (await ws.receive_str()) == "MARK_MEDIA 0"  # the probe, before any audio
            session.play(bytes(640 * 3))  # starts at the probe: no mark in between
            assert len(await ws.receive_bytes()) == 3 * 640
            assert (await ws.receive_str()) == "MARK_MEDIA 1"  # its end
            await ws.send_str(encode_event(DtmfEnd("7", "media-1"), ControlForm.PLAIN))
            events = session.events()
            assert await anext(events) == DigitIn("7")
        assert [type(e) async for e in events] == [PeerHangup, MediaClosed]
        assert "media-1" not in srv.sessions


async def test_json_form_is_detected_from_media_start() -> None:
    async with server() as srv:
        expectation = srv.expect("media-j")
        async with asterisk(srv) as ws:
            await ws.send_str(media_start("media-j", ControlForm.JSON))
            session = await expectation.wait(5)
            assert session.start.form is ControlForm.JSON
            assert (await ws.receive_json()) == {"command": "MARK_MEDIA", "correlation_id": "0"}


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": aiohttp.encode_basic_auth("ivr", "wrong")},
        {"Authorization": aiohttp.encode_basic_auth("other", "s3cret")},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer s3cret"},
    ],
)
async def test_bad_or_missing_credentials_are_refused_with_one_line_and_a_live_call_goes_on(
    headers: dict[str, str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    async with server() as srv:
        live = srv.expect("media-live")
        async with asterisk(srv) as good:
            await good.send_str(media_start("media-live"))
            session = await live.wait(5)
            caplog.clear()
            caplog.set_level(logging.WARNING)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with asterisk(srv, headers=headers):
                    pass
            assert refused.value.status == 401
            lines = warnings(caplog)
            assert len(lines) == 1
            assert "credentials" in lines[0]
            assert srv.stats.refused_auth == 1
            await good.send_str(encode_event(DtmfEnd("1", "media-live"), ControlForm.PLAIN))
            assert await anext(session.events()) == DigitIn("1")
            assert not session.closed


async def test_not_a_websocket_or_another_subprotocol_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with server() as srv:
        caplog.set_level(logging.WARNING)
        url = f"http://127.0.0.1:{srv.port}/media"
        async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
            assert resp.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError):
            async with asterisk(srv, protocols=("ari",)):
                pass
        lines = warnings(caplog)
        assert len(lines) == 2
        assert "not a WebSocket upgrade" in lines[0]
        assert "['ari']" in lines[1]


async def test_a_connection_without_subprotocol_is_accepted() -> None:
    # websocket_client.conf without "protocols = media": Asterisk sends no Sec-WebSocket-Protocol.
    async with server() as srv:
        expectation = srv.expect("media-np")
        async with asterisk(srv, protocols=()) as ws:
            await ws.send_str(media_start("media-np"))
            assert (await expectation.wait(5)).channel_id == "media-np"


@pytest.mark.parametrize(
    ("first", "says"),
    [
        ("MEDIA_XON", "not MEDIA_START"),
        ("MEDIA_START connection_id:x", "channel missing"),
        (
            "MEDIA_START connection_id:x channel:c channel_id:m format:ulaw optimal_frame_size:160 ptime:20",
            "slin16",
        ),
        (b"\x00\x01", "BINARY"),
    ],
)
async def test_a_bad_first_message_is_refused(
    first: str | bytes, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with server() as srv:
        srv.expect("m")
        caplog.set_level(logging.WARNING)
        async with asterisk(srv) as ws:
            await (ws.send_str(first) if isinstance(first, str) else ws.send_bytes(first))
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1002
        lines = warnings(caplog)
        assert len(lines) == 1
        assert says in lines[0]


async def test_no_media_start_in_time_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with server(start_timeout=0.1) as srv:
        caplog.set_level(logging.WARNING)
        async with asterisk(srv) as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
        assert any("no MEDIA_START" in line for line in warnings(caplog))


async def test_a_channel_nobody_expects_is_closed_1008_and_a_duplicate_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with server() as srv:
        caplog.set_level(logging.WARNING)
        async with asterisk(srv) as ws:
            await ws.send_str(media_start("stranger"))
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1008
        expectation = srv.expect("twice")
        async with asterisk(srv) as first, asterisk(srv) as second:
            await first.send_str(media_start("twice"))
            await expectation.wait(5)
            await second.send_str(media_start("twice"))
            msg = await second.receive()
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 1008
        lines = warnings(caplog)
        assert len(lines) == 2
        assert "no call expects it" in lines[0]
        assert "already connected" in lines[1]


async def test_dialplan_calls_go_to_the_session_handler() -> None:
    seen: asyncio.Queue[WebSocketMediaSession] = asyncio.Queue()

    async def handler(session: WebSocketMediaSession) -> None:
        await seen.put(session)
        await session.wait_closed()

    config = WebSocketServerConfig(port=0, username="ivr", password="s3cret")
    async with WebSocketMediaServer(config, on_session=handler) as srv, asterisk(srv) as ws:
        await ws.send_str(media_start("1796164433.7"))
        session = await asyncio.wait_for(seen.get(), 5)
        assert session.channel_id == "1796164433.7"


async def test_closing_the_server_hangs_every_call_up() -> None:
    async with server() as srv:
        expectation = srv.expect("media-2")
        async with asterisk(srv) as ws:
            await ws.send_str(media_start("media-2"))
            session = await expectation.wait(5)
            await srv.close()
            texts = []
            while (msg := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                texts.append(msg.data)
            assert texts[-1] == "HANGUP"
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert session.closed
            assert not srv.sessions


async def test_over_capacity_is_refused() -> None:
    async with server(max_connections=1) as srv:
        srv.expect("a")
        async with asterisk(srv) as ws:
            await ws.send_str(media_start("a"))
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with asterisk(srv):
                    pass
            assert refused.value.status == 503


async def test_expectations_time_out_and_are_dropped() -> None:
    async with server() as srv:
        expectation = srv.expect("late")
        with pytest.raises(TimeoutError, match="late"):
            await expectation.wait(0.05)
        assert "late" not in srv._expected
        srv.expect("late")  # can be expected again
        with pytest.raises(ValueError, match="already expected"):
            srv.expect("late")


def test_no_credentials_no_server_and_localhost_by_default() -> None:
    with pytest.raises(ValueError, match="username and password"):
        WebSocketMediaServer(WebSocketServerConfig())
    config = WebSocketServerConfig(username="u", password="hunter2-secret")
    assert config.host == "127.0.0.1"
    assert "hunter2" not in repr(config)
