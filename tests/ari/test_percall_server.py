"""PerCallServer without Asterisk: handshake refusals, which call a socket carries, cleanup, bad input.

A fake Asterisk (aiohttp client) plays the per-call socket as Asterisk 22.10.1 does (ApplicationRegistered,
StasisStart, REST replies); the real one is in test_percall_asterisk.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from ivr.ari.errors import AriConnectionError
from ivr.ari.models import StasisEnd
from ivr.ari.percall import PerCallConnection
from ivr.ari.percall_server import PerCallServer
from ivr.ari.rest_messages import RestRequest, RestResponse, decode_request

USER, PASSWORD = "asterisk", "percall-s3cret"
CHANNEL_NAME = "PJSIP/alice-00000001"
APP = f"ivr:{CHANNEL_NAME}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def channel(channel_id: str = "c1", name: str = CHANNEL_NAME) -> dict[str, Any]:
    return {"id": channel_id, "name": name, "state": "Ring", "dialplan": {"context": "in", "exten": "100"}}


class FakeAsterisk:
    """One per-call socket as Asterisk drives it; answers REST requests from ``routes``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, routes: dict[tuple[str, str], Any]) -> None:
        self.ws = ws
        self.routes = routes
        self.requests: list[RestRequest] = []
        self._task = asyncio.ensure_future(self._serve())

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps({"application": APP, **message}))

    async def register(self) -> None:
        await self.send({"type": "ApplicationRegistered"})

    async def stasis_start(self, channel_id: str = "c1") -> None:
        await self.send({"type": "StasisStart", "args": ["100"], "channel": channel(channel_id)})

    async def _serve(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            request = decode_request(msg.data)
            self.requests.append(request)
            status, body = self.routes.get((request.method, request.uri), (404, {"message": "nope"}))
            text = None if body is None else json.dumps(body)
            response = RestResponse(request.request_id, status, "", request.uri, text, "application/json")
            await self.ws.send_str(response.encode())

    async def closed_by_server(self) -> int | None:
        """Wait until the server closes the socket; its close code."""
        await asyncio.wait_for(asyncio.shield(self._task), 5)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def sent(self, method: str, uri: str) -> bool:
        return any(r.method == method and r.uri == uri for r in self.requests)


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "applications/ivr%3APJSIP%2Falice-00000001"): (200, {"name": APP, "channel_ids": []}),
    ("POST", "channels/c1/answer"): (204, None),
    ("DELETE", "channels/c1"): (204, None),
}


Handler = Callable[[PerCallConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, **options: Any) -> AsyncIterator[PerCallServer]:
    options = {"username": USER, "password": PASSWORD, "port": 0, "apps": ["ivr"], **options}
    server = PerCallServer(handler, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def asterisk(
    server: PerCallServer,
    *,
    routes: dict[tuple[str, str], Any] | None = None,
    password: str = PASSWORD,
    protocols: tuple[str, ...] = ("ari",),
) -> AsyncIterator[FakeAsterisk]:
    headers = {"Authorization": basic(USER, password)}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.ws_connect(server.url, protocols=protocols) as ws,
    ):
        fake = FakeAsterisk(ws, dict(ROUTES if routes is None else routes))
        try:
            yield fake
        finally:
            await fake.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - set by the server's tasks
            await asyncio.sleep(0.01)


async def status_of(server: PerCallServer, *, path: str | None = None, **kwargs: Any) -> int:
    url = server.url if path is None else server.url.replace(server.path, path)
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, **kwargs):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_a_call_is_handed_over_with_its_events_and_rest_over_the_socket() -> None:
    seen: list[str] = []
    handed = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        assert (conn.app, conn.base_app, conn.channel_name) == (APP, "ivr", CHANNEL_NAME)
        assert conn.start is not None
        assert conn.start.args == ("100",)
        assert not conn.resumed
        await conn.ari.answer(conn.channel_id)
        handed.set()
        async for event in conn.events():
            seen.append(event.type)

    async with serving(on_call) as server, asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await asyncio.wait_for(handed.wait(), 5)
        assert fake.sent("POST", "channels/c1/answer")
        await fake.send({"type": "ChannelStateChange", "channel": {**channel(), "state": "Up"}})
        await fake.send({"type": "StasisEnd", "channel": channel()})
        conn = next(iter(server.connections))
        await asyncio.wait_for(conn.wait_left_stasis(), 5)
        assert conn.left_stasis
        await fake.close()
        await asyncio.wait_for(conn.wait_closed(), 5)
    assert seen == ["StasisStart", "ChannelStateChange", "StasisEnd"]


async def test_a_reopened_socket_is_handed_over_as_resumed() -> None:
    got: list[PerCallConnection] = []
    done = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        got.append(conn)
        done.set()
        async for _ in conn.events():
            pass

    routes = {
        **ROUTES,
        ("GET", "applications/ivr%3APJSIP%2Falice-00000001"): (200, {"channel_ids": ["m1", "c1"]}),
        ("GET", "channels/m1"): (200, channel("m1", "AudioSocket/127.0.0.1:9092-x")),
        ("GET", "channels/c1"): (200, {**channel(), "state": "Up"}),
    }
    async with serving(on_call) as server, asterisk(server, routes=routes) as fake:
        await fake.register()  # and no StasisStart: it came over the socket that died
        await asyncio.wait_for(done.wait(), 5)
        (conn,) = got
        assert conn.resumed
        assert conn.start is None
        assert (conn.channel_id, conn.channel is not None and conn.channel.state) == ("c1", "Up")


async def test_a_reopened_socket_skips_a_listed_channel_that_is_gone() -> None:
    """Found on the real Asterisk: the application still lists the previous owner's media channel while
    it is being hung up, and looking that one up is a 404; the caller is found all the same."""
    got: list[PerCallConnection] = []
    done = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        got.append(conn)
        done.set()
        async for _ in conn.events():
            pass

    routes = {
        **ROUTES,
        ("GET", "applications/ivr%3APJSIP%2Falice-00000001"): (200, {"channel_ids": ["m1", "c1"]}),
        ("GET", "channels/m1"): (404, {"message": "Channel not found"}),
        ("GET", "channels/c1"): (200, {**channel(), "state": "Up"}),
    }
    async with serving(on_call) as server, asterisk(server, routes=routes) as fake:
        await fake.register()
        await asyncio.wait_for(done.wait(), 5)
        (conn,) = got
        assert conn.resumed
        assert conn.channel_id == "c1"


async def test_stasis_run_again_on_a_living_app_is_a_new_call_without_the_old_sockets_events() -> None:
    """Measured on Asterisk 22.10.1: after Stasis() failed (its socket could not be reopened) and the
    dialplan ran Stasis() again, the new socket gets no ApplicationRegistered, only the events Asterisk
    queued for the app meanwhile (the caller's StasisEnd among them), then the new StasisStart."""
    got: list[PerCallConnection] = []
    seen: list[str] = []

    async def on_call(conn: PerCallConnection) -> None:
        got.append(conn)
        async for event in conn.events():
            seen.append(event.type)

    async with serving(on_call) as server, asterisk(server) as fake:
        await fake.send({"type": "ChannelLeftBridge", "channel": channel(), "bridge": {"id": "b1"}})
        await fake.send({"type": "StasisEnd", "channel": channel()})
        await fake.send({"type": "ChannelDestroyed", "channel": channel("m1", "AudioSocket/x"), "cause": 16,
                         "cause_txt": "Normal Clearing"})  # fmt: skip
        await fake.stasis_start()
        await eventually(lambda: bool(seen))
        (conn,) = got
        assert conn.app == APP
        assert conn.start is not None
        assert not conn.resumed
        assert not conn.left_stasis
        await fake.send(
            {"type": "ChannelDtmfReceived", "channel": channel(), "digit": "5", "duration_ms": 100}
        )
        await eventually(lambda: len(seen) == 2)
    assert seen[:2] == ["StasisStart", "ChannelDtmfReceived"]


async def test_a_handler_that_leaves_its_caller_in_stasis_gets_it_hung_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_call(conn: PerCallConnection) -> None:
        raise RuntimeError("bug in the call code")

    async with serving(on_call, linger=5.0) as server, asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await eventually(lambda: fake.sent("DELETE", "channels/c1"))
    assert "the call handler failed" in caplog.text
    assert "still in Stasis; hanging up" in caplog.text


async def test_wrong_password_is_refused_with_one_line_while_a_good_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handed = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        handed.set()
        async for _ in conn.events():
            pass

    caplog.set_level(logging.WARNING, "ivr.ari.percall")
    async with serving(on_call) as server, asterisk(server) as good:
        await good.register()
        for _ in range(4):  # Asterisk tries reconnect_attempts times for one call
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with asterisk(server, password="wrong"):
                    pass
            assert refused.value.status == 401
        await good.stasis_start()
        await asyncio.wait_for(handed.wait(), 5)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["per-call ARI: refused a connection from 127.0.0.1: wrong user or password"]
    assert PASSWORD not in caplog.text
    assert server.refused["bad_credentials"] == 4


async def test_every_kind_of_bad_handshake_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def on_call(conn: PerCallConnection) -> None:
        raise AssertionError("no call expected")

    good = {"Authorization": basic(USER, PASSWORD)}
    async with serving(on_call, max_connections=0) as server:
        assert await status_of(server, protocols=("ari",)) == 401
        assert await status_of(server, path="/other", protocols=("ari",), headers=good) == 404
        assert await status_of(server, protocols=("media",), headers=good) == 400
        assert await status_of(server, protocols=("ari",), headers={"Authorization": "Basic !!!"}) == 401
        assert await status_of(server, protocols=("ari",), headers=good) == 503  # full
        server.draining = True
        assert await status_of(server, protocols=("ari",), headers=good) == 503
        async with aiohttp.ClientSession() as http, http.get(server.url, headers=good) as resp:
            assert resp.status == 400  # a plain GET, no upgrade
    assert dict(server.refused) == {
        "unauthenticated": 1,
        "path": 1,
        "subprotocol": 1,
        "bad_credentials": 1,
        "full": 1,
        "draining": 1,
        "not_websocket": 1,
    }
    assert server.accepted == 0


async def test_a_malformed_frame_closes_only_its_own_connection(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[PerCallConnection] = []

    async def on_call(conn: PerCallConnection) -> None:
        calls.append(conn)
        async for _ in conn.events():
            pass

    async with serving(on_call) as server, asterisk(server) as good:
        await good.register()
        await good.stasis_start()
        async with asterisk(server) as bad:
            await bad.ws.send_str("{not json")
            assert await bad.closed_by_server() == 1003
        await eventually(lambda: bool(calls))
        (conn,) = calls
        assert not conn.closed
        good_reply = asyncio.ensure_future(conn.ari.answer("c1"))
        await asyncio.wait_for(good_reply, 5)
    assert caplog.text.count("closing the connection") == 1
    assert "the message is not JSON" in caplog.text


async def test_a_socket_that_carries_no_call_is_closed() -> None:
    async def on_call(conn: PerCallConnection) -> None:
        raise AssertionError("no call expected")

    async with serving(on_call, start_timeout=0.2) as server, asterisk(server) as fake:
        assert await fake.closed_by_server() == 1008


async def test_closing_the_server_ends_sockets_and_handlers() -> None:
    running = asyncio.Event()
    outcome: list[str] = []

    async def on_call(conn: PerCallConnection) -> None:
        running.set()
        async for _ in conn.events():
            pass
        try:
            await conn.ari.answer(conn.channel_id)
        except AriConnectionError:
            outcome.append("REST refused after close")

    server = PerCallServer(on_call, username=USER, password=PASSWORD, port=0)
    await server.start()
    async with asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await asyncio.wait_for(running.wait(), 5)
        await server.close()
        assert not server.connections
        assert await fake.closed_by_server() == 1001
    assert outcome == ["REST refused after close"]


async def test_closing_leaves_the_sockets_of_ended_calls_for_asterisk_to_close() -> None:
    """Closed from our side, Asterisk reopens a socket while the call's app lives (~3.5 s after the
    caller's StasisEnd): at a shutdown, another instance then waited 10 s for a call that never came."""

    async def on_call(conn: PerCallConnection) -> None:
        async for _ in conn.events():
            pass

    server = PerCallServer(on_call, username=USER, password=PASSWORD, port=0)
    await server.start()
    async with asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await eventually(lambda: bool(server.connections))
        conn = next(iter(server.connections))
        await fake.send({"type": "StasisEnd", "channel": channel()})
        await asyncio.wait_for(conn.wait_left_stasis(), 5)
        closing = asyncio.ensure_future(server.close())
        await asyncio.sleep(0.3)
        assert not conn.closed, "the server closed a socket Asterisk was about to close"
        await fake.ws.close(code=1000)  # what Asterisk does
        await asyncio.wait_for(closing, 10)
        assert conn.close_code == 1000


async def test_events_after_the_callers_stasis_end_are_still_delivered() -> None:
    events: list[str] = []
    finished = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        async for event in conn.events():
            events.append(event.type)
            if isinstance(event, StasisEnd):
                break
        finished.set()

    async with serving(on_call) as server, asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await fake.send({"type": "StasisEnd", "channel": channel()})
        await asyncio.wait_for(finished.wait(), 5)
        assert not fake.sent("DELETE", "channels/c1")  # the caller left: nothing to hang up
    assert events == ["StasisStart", "StasisEnd"]


def test_credentials_are_required() -> None:
    async def on_call(conn: PerCallConnection) -> None:
        return None

    with pytest.raises(ValueError, match="needs a user and a password"):
        PerCallServer(on_call, username="asterisk", password="")


async def test_a_message_over_the_size_limit_closes_its_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def on_call(conn: PerCallConnection) -> None:
        raise AssertionError("no call expected")

    async with serving(on_call, max_message_bytes=1000) as server, asterisk(server) as fake:
        await fake.send({"type": "ApplicationRegistered", "padding": "x" * 2000})
        assert await fake.closed_by_server() == 1009
    assert caplog.text.count("closing the connection") == 1


async def test_a_malformed_http_request_is_one_refusal_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_call(conn: PerCallConnection) -> None:
        raise AssertionError("no call expected")

    async with serving(on_call) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ari HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(64), 5)).startswith(b"HTTP/1.0 400")
        writer.close()
        await writer.wait_closed()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "per-call ARI: refused a connection from 127.0.0.1: a malformed HTTP request"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert server.refused["bad_http"] == 1


async def test_a_caller_sent_on_to_the_dialplan_is_not_hung_up() -> None:
    returned = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        await conn.ari.answer(conn.channel_id)  # stands for `continue`: StasisEnd comes after the reply
        returned.set()

    async with serving(on_call) as server, asterisk(server) as fake:
        await fake.register()
        await fake.stasis_start()
        await asyncio.wait_for(returned.wait(), 5)
        await asyncio.sleep(0.2)
        await fake.send({"type": "StasisEnd", "channel": channel()})
        await asyncio.sleep(0.2)
        assert not fake.sent("DELETE", "channels/c1")
