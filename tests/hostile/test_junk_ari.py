"""Whatever answers at the ARI URL, ``ivr run`` stops with one line and exit 2; a running client raises
one short :class:`~ivr.ari.errors.AriError`; replies are never read past their limit."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import random
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.ari.client import MAX_EVENT_BYTES, AriClient
from ivr.ari.errors import AriConnectionError, AriError, BadReply
from ivr.ari.events import EventStream
from ivr.ari.models import Event
from ivr.cli import main

JUNK = random.Random(12).randbytes(5000)


def _http(
    body: bytes, *, status: str = "200 OK", headers: str = "Content-Type: application/json\r\n"
) -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _endless(w: Callable[[bytes], None]) -> None:
    w(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(100_000):  # 6.4 GB if nobody stopped reading
        w(b"10000\r\n" + b" " * 0x10000 + b"\r\n")


REPLIES: dict[str, bytes | Callable[[Callable[[bytes], None]], None]] = {
    "random bytes": JUNK,
    "random headers": b"HTTP/1.1 200 OK\r\n" + JUNK,
    "html": _http(b"<html><body>It works!</body></html>", headers="Content-Type: text/html\r\n"),
    "deep json": _http(b"[" * 100_000 + b"]" * 100_000),
    "not utf-8": _http(b'{"system": {"version": "\xff\xfe\xfd"}}'),
    "json, not an object": _http(b"[1, 2, 3]"),
    "empty object": _http(b"{}"),
    "gzip bomb": _http(
        gzip.compress(b" " * 50_000_000),
        headers="Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
    ),
    "claims 200 MB": b"HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\n" + b"[" * 10_000,
    "endless chunks": _endless,
    "truncated": b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"system":',
    "error with junk": _http(JUNK, status="500 Internal Server Error", headers=""),
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.server.requests += 1  # type: ignore[attr-defined]
            reply = self.server.reply  # type: ignore[attr-defined]
            if callable(reply):
                reply(sock.sendall)
            else:
                sock.sendall(reply)
        except OSError:
            pass  # the client stopped reading: that is the point


class JunkServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply: bytes | Callable[[Callable[[bytes], None]], None] = b""
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def junk() -> Iterator[JunkServer]:
    server = JunkServer()
    thread = threading.Thread(target=server.serve_forever, name="junk-ari", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    (tmp_path / "hi.yaml").write_text(
        "name: hi\nstart: hi\nsteps:\n  hi:\n    say: Hi.\n    next: bye\n  bye:\n    hangup:\n"
    )
    return tmp_path


def _run_args(junk: JunkServer, flows: Path) -> list[str]:
    return ["run", "--flows", str(flows), "--ari-url", junk.url, "--listen", "127.0.0.1:0"]


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IVR_METRICS_LISTEN", "")
    monkeypatch.setenv("IVR_PROMPT_CACHE", "")
    monkeypatch.setenv("IVR_RECORDS_PATH", str(tmp_path / "calls.sqlite3"))
    monkeypatch.setenv("IVR_ARI_PASSWORD", "pw")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.mark.usefixtures("quiet_env", "restore_logging")
@pytest.mark.parametrize("kind", list(REPLIES))
def test_ivr_run_startup_says_one_line_and_exits_2(
    kind: str, junk: JunkServer, flows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk.reply = REPLIES[kind]
    assert main(_run_args(junk, flows)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("ivr run:")]
    assert line == err.splitlines()[-1]
    assert junk.url in line
    assert len(line) < 300, line
    assert line.isprintable(), line


def test_the_real_command_too(junk: JunkServer, flows: Path, tmp_path: Path) -> None:
    """The installed entry point, in its own process: exit status 2 and one line, no traceback."""
    junk.reply = REPLIES["random bytes"]
    env = {
        **os.environ,
        "IVR_METRICS_LISTEN": "",
        "IVR_PROMPT_CACHE": "",
        "IVR_RECORDS_PATH": str(tmp_path / "calls.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ivr", *_run_args(junk, flows)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"ivr run: ARI at {junk.url} answered, but not like Asterisk"
    )


@pytest.mark.parametrize("kind", list(REPLIES))
async def test_a_running_client_raises_one_short_ari_error(kind: str, junk: JunkServer) -> None:
    junk.reply = REPLIES[kind]
    async with asyncio.timeout(30), AriClient(junk.url, "ivr", "pw") as ari:
        for _ in range(2):  # and again on the same client: nothing is left half-read
            with pytest.raises(AriError) as caught:
                await ari.asterisk_info()
            message = str(caught.value)
            assert len(message) < 300, message
            assert message.isprintable(), message


@pytest.mark.parametrize(
    ("kind", "expect"),
    [
        ("random bytes", "the reply is not HTTP"),
        ("html", "the reply is not JSON (text/html; is this Asterisk?)"),
        ("deep json", "the reply is JSON nested deeper than 64 levels"),
        ("not utf-8", "the reply is not UTF-8 text"),
        ("gzip bomb", "the reply is not UTF-8 text"),
        ("claims 200 MB", "a reply of 200000000 bytes is over the 4194304-byte limit"),
        ("endless chunks", "the reply is over the 4194304-byte limit"),
        ("truncated", "the reply body is malformed"),
    ],
)
async def test_bad_replies_say_what_was_wrong(kind: str, expect: str, junk: JunkServer) -> None:
    junk.reply = REPLIES[kind]
    async with asyncio.timeout(30), AriClient(junk.url, "ivr", "pw") as ari:
        with pytest.raises(
            BadReply, match=expect.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")
        ):
            await ari.list_channels()


async def test_a_silent_server_is_a_timeout() -> None:
    with socket.socket() as hold:
        hold.bind(("127.0.0.1", 0))
        hold.listen()
        url = f"http://127.0.0.1:{hold.getsockname()[1]}"  # accepts (backlog), never answers
        async with asyncio.timeout(30), AriClient(url, "ivr", "pw", timeout=0.5) as ari:
            with pytest.raises(AriConnectionError, match="timed out"):
                await ari.asterisk_info()


async def test_events_messages_over_the_limit_are_refused(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type": "' + "x" * (MAX_EVENT_BYTES + 10) + '"}')
        await ws.send_str('{"type": "StasisStart"}')
        await asyncio.sleep(5)
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", events)
    server = await aiohttp_server(app)
    async with asyncio.timeout(30), AriClient(str(server.make_url("")), "ivr", "pw") as ari:
        ws = await ari.connect_events("hostile")
        message = await ws.receive()
        assert message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.closed or ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await ws.close()


async def test_the_events_stream_survives_a_deeply_nested_message(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> None:
    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("[" * 100_000 + "]" * 100_000)
        await ws.send_str('{"type": "StasisStart", "application": "hostile", "channel": {"id": "c1"}}')
        async for _ in ws:  # until the client closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", events)
    server = await aiohttp_server(app)
    seen: list[Event] = []
    async with asyncio.timeout(30), AriClient(str(server.make_url("")), "ivr", "pw") as ari:
        stream = EventStream(ari, "hostile", seen.append)
        stream.start()
        try:
            await stream.wait_connected(10)
            while not seen:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert [e.type for e in seen] == ["StasisStart"]
            assert stream.task is not None
            assert not stream.task.done(), "one bad message costs that message only"
        finally:
            await stream.close()
