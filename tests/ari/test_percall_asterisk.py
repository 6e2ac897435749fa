"""Per-call ARI WebSockets against the real Asterisk 22.10.1: Asterisk connects to PerCallServer per call.

The instance is our own (``asterisk_factory``): its websocket_client.conf / ari.conf / dialplan get the
shipped examples (asterisk-docker/etc/*.example, dialplan/percall-fallback.conf.example, with this test's
port and password) plus sections for the failure cases, then ``module reload``. Timings are printed
(``pytest -s``) and written down in README ("Per-call ARI connections"); the assertions never depend on
the machine's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.ari.errors import AriError, AriTimeout, NotFound
from ivr.ari.models import ChannelDestroyed, StasisEnd, StasisStart
from ivr.ari.percall import PerCallConnection
from ivr.ari.percall_server import PerCallServer
from tests.conftest import AsteriskFactory
from tests.real_asterisk import AriProbe, RealAsterisk
from tests.services import free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "percall-test-pw-7f3a"
USER = "asterisk"
APP = "ivr"

EXTRA_CLIENTS = """
[pc-badpw]
type = websocket_client
connection_type = per_call_config
uri = ws://127.0.0.1:{port}/ari
protocols = ari
username = asterisk
password = not-the-password
connection_timeout = 300
reconnect_interval = 300
reconnect_attempts = 2

[pc-dead]
type = websocket_client
connection_type = per_call_config
uri = ws://127.0.0.1:{dead_port}/ari
protocols = ari
username = asterisk
password = {password}

[pc-hung]
type = websocket_client
connection_type = per_call_config
uri = ws://127.0.0.1:{hung_port}/ari
protocols = ari
username = asterisk
password = {password}
connection_timeout = 300
reconnect_interval = 300
reconnect_attempts = 2
"""
EXTRA_APPS = "".join(
    f"\n[{name}-app]\ntype = outbound_websocket\nwebsocket_client_id = {name}\napps = {app}\n"
    "local_ari_user = asterisk\nsubscribe_all = no\n"
    for name, app in (("pc-badpw", "pcbad"), ("pc-dead", "pcdead"), ("pc-hung", "pchung"))
)
PROBE_DIALPLAN = """
; Stasis(<exten>) and remember STASISSTATUS in GLOBAL(PCSTATUS_<PROBE>)
[pc-probe]
exten => _[a-z].,1,Stasis(${EXTEN})
 same => n,Set(GLOBAL(PCSTATUS_${PROBE})=${STASISSTATUS})
 same => n,Hangup()

; where a call sent on with `continue` goes
[pc-after]
exten => s,1,Set(GLOBAL(PCAFTER_${CALLERID(num)})=${STASISSTATUS})
 same => n,Hangup()
"""


@dataclass
class Kit:
    asterisk: RealAsterisk
    port: int
    """Where PerCallServer listens: the uri of the example's [ivr-percall]."""
    dead_port: int
    hung_port: int

    @contextlib.asynccontextmanager
    async def server(
        self, on_call: Callable[[PerCallConnection], Awaitable[None]], **options: Any
    ) -> AsyncIterator[PerCallServer]:
        options = {"username": USER, "password": PASSWORD, "port": self.port, "apps": [APP], **options}
        async with PerCallServer(on_call, **options) as server:
            yield server


def _example(path: str, replacements: dict[str, str]) -> str:
    text = (ROOT / path).read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert len(re.findall(old, text, flags=re.M)) == 1, f"{path}: expected one {old!r}"
        text = re.sub(old, new, text, flags=re.M)
    return text


@pytest.fixture(scope="module")
def kit(asterisk_factory: AsteriskFactory) -> Kit:
    asterisk = asterisk_factory()
    port, dead_port, hung_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
    etc = asterisk.config_dir()
    clients = _example(
        "asterisk-docker/etc/websocket_client.conf.example",
        {r"^uri = .*$": f"uri = ws://127.0.0.1:{port}/ari", r"^password = .*$": f"password = {PASSWORD}"},
    )
    apps = _example(
        "asterisk-docker/etc/ari_outbound.conf.example",
        {r"^local_ari_user = ivr\b": "local_ari_user = asterisk"},
    )
    with (etc / "websocket_client.conf").open("a", encoding="utf-8") as f:
        f.write(
            "\n"
            + clients
            + EXTRA_CLIENTS.format(port=port, dead_port=dead_port, hung_port=hung_port, password=PASSWORD)
        )
    with (etc / "ari.conf").open("a", encoding="utf-8") as f:
        f.write("\n" + apps + EXTRA_APPS)
    asterisk.cli("module reload res_websocket_client.so")
    asterisk.cli("module reload res_ari.so")
    asterisk.set_custom_dialplan(_example("dialplan/percall-fallback.conf.example", {}) + PROBE_DIALPLAN)
    listed = asterisk.cli("ari show outbound-websockets")
    for name in ("ivr-percall-app", "pc-badpw-app", "pc-dead-app", "pc-hung-app"):
        assert re.search(rf"^{name}\s+per_call_config\s+\S+\s+valid", listed, flags=re.M), listed
    return Kit(asterisk, port, dead_port, hung_port)


async def call_ivr(probe: AriProbe, exten: str = "100") -> dict[str, Any]:
    """An inbound call into the example's [ivr-percall]: ;2 runs Stasis(ivr,<exten>), ;1 plays a tone."""
    return await probe.originate(f"Local/{exten}@ivr-percall", context="caller", extension="tone", priority=1)


async def probe_stasis(kit: Kit, probe: AriProbe, app: str) -> tuple[str, float]:
    """Stasis(<app>) on a fresh channel: (STASISSTATUS, seconds until the dialplan went on)."""
    tag = uuid.uuid4().hex[:8]
    async with probe.events(f"pc-watch-{tag}") as watch:
        started = time.monotonic()
        first = await probe.originate(
            f"Local/{app}@pc-probe", app=f"pc-watch-{tag}", variables={"PROBE": tag}
        )
        await watch.wait_for(
            lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == first["id"], 30
        )
        took = time.monotonic() - started
    result = await probe.request("GET", "/asterisk/variable", params={"variable": f"PCSTATUS_{tag}"})
    return str(result.get("value", "")), took


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - state changes in other tasks
            await asyncio.sleep(0.02)


async def test_a_call_gets_its_own_socket_with_rest_media_and_events(kit: Kit) -> None:
    seen: dict[str, Any] = {"events": []}
    media_uuid = uuid.uuid4()
    media_id = f"pc-media-{uuid.uuid4()}"
    bridge_id = f"pc-bridge-{uuid.uuid4()}"
    audiosocket_first: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def audiosocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readexactly(19)
            if not audiosocket_first.done():
                audiosocket_first.set_result(head)
            while await reader.read(4096):
                pass
        writer.close()

    media_server = await asyncio.start_server(audiosocket, "127.0.0.1", 0)
    media_port = media_server.sockets[0].getsockname()[1]

    async def on_call(conn: PerCallConnection) -> None:
        ari, caller = conn.ari, conn.channel_id
        seen["connected"] = time.monotonic()
        seen["app"], seen["name"] = conn.app, conn.channel_name
        await ari.answer(caller)
        seen["exten"] = await ari.get_variable(caller, "EXTEN")
        seen["name_over_rest"] = await ari.get_variable(caller, "CHANNEL(name)")
        await ari.create_bridge(bridge_id=bridge_id)
        await ari.external_media(
            app=conn.app,
            external_host=f"127.0.0.1:{media_port}",
            format="slin16",
            data=str(media_uuid),
            channel_id=media_id,
        )
        async for event in conn.events():
            seen["events"].append(
                (event.type, event.application, getattr(getattr(event, "channel", None), "id", ""))
            )
            if isinstance(event, StasisStart) and event.channel.id == media_id:
                await ari.add_channel(bridge_id, [caller, media_id])
                await ari.request("POST", f"/channels/{caller}/play", {"media": "sound:beep"})
            elif event.type == "PlaybackFinished":
                await ari.hangup(media_id)
                await ari.destroy_bridge(bridge_id)
                await ari.hangup(caller)
            elif isinstance(event, StasisEnd) and event.channel.id == caller:
                seen["stasis_end"] = time.monotonic()
        seen["closed"] = time.monotonic()
        seen["close_code"], seen["left_stasis"] = conn.close_code, conn.left_stasis

    async with kit.server(on_call) as server, AriProbe.open(kit.asterisk) as probe:
        originated = time.monotonic()
        await call_ivr(probe)
        await until(lambda: "closed" in seen)
        await probe.wait_idle()
        assert server.accepted == 1
    media_server.close()
    await media_server.wait_closed()

    name = seen["name"]
    assert re.fullmatch(r"Local/100@ivr-percall-[0-9a-f]{8};2", name), name
    assert seen["app"] == f"{APP}:{name}"
    assert (seen["exten"], seen["name_over_rest"]) == ("100", name)
    assert (await asyncio.wait_for(audiosocket_first, 1))[
        3:
    ] == media_uuid.bytes  # kind 0x01, length 16, uuid
    kinds = [kind for kind, _, _ in seen["events"]]
    assert kinds[0] == "StasisStart"
    for kind in (
        "ChannelStateChange",
        "ChannelEnteredBridge",
        "PlaybackStarted",
        "PlaybackFinished",
        "StasisEnd",
    ):
        assert kind in kinds, kinds
    assert ("StasisStart", seen["app"], media_id) in seen["events"]  # the media channel's, over this socket
    assert {app for _, app, _ in seen["events"]} == {seen["app"]}
    assert (seen["close_code"], seen["left_stasis"]) == (1000, True)
    assert seen["closed"] >= seen["stasis_end"]
    print(
        f"\nper-call: originate -> handler {seen['connected'] - originated:.2f} s; "
        f"caller StasisEnd -> socket closed by Asterisk {seen['closed'] - seen['stasis_end']:.2f} s"
    )


async def test_twenty_calls_at_once_get_twenty_connections(kit: Kit) -> None:
    calls: dict[str, tuple[str, str]] = {}
    closed: list[int | None] = []

    async def on_call(conn: PerCallConnection) -> None:
        await conn.ari.answer(conn.channel_id)
        name = await conn.ari.get_variable(conn.channel_id, "CHANNEL(name)")
        calls[conn.channel_id] = (conn.channel_name, name)
        await conn.ari.hangup(conn.channel_id)
        async for _ in conn.events():
            pass
        closed.append(conn.close_code)

    async with kit.server(on_call) as server, AriProbe.open(kit.asterisk) as probe:
        started = time.monotonic()
        await asyncio.gather(*(call_ivr(probe, str(200 + i)) for i in range(20)))
        await until(lambda: len(calls) == 20, 60)
        print(
            f"\n20 calls at once: all 20 handled {time.monotonic() - started:.2f} s after the first originate"
        )
        await until(lambda: len(closed) == 20, 60)
        await probe.wait_idle(20)
        assert server.accepted == 20
    assert len(calls) == 20
    assert all(own == over_rest for own, over_rest in calls.values())  # each socket's REST reached its call
    assert len({own for own, _ in calls.values()}) == 20
    assert closed == [1000] * 20


async def test_a_wrong_password_is_refused_with_one_line_while_other_calls_proceed(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ivr.ari.percall")
    done: list[str] = []

    async def on_call(conn: PerCallConnection) -> None:
        await conn.ari.answer(conn.channel_id)
        await asyncio.sleep(0.5)  # still up while the bad call is refused
        await conn.ari.hangup(conn.channel_id)
        async for _ in conn.events():
            pass
        done.append(conn.channel_id)

    async with kit.server(on_call) as server, AriProbe.open(kit.asterisk) as probe:
        good = [asyncio.ensure_future(call_ivr(probe, str(300 + i))) for i in range(3)]
        status, _ = await probe_stasis(kit, probe, "pcbad")
        await asyncio.gather(*good)
        await until(lambda: len(done) == 3)
        await probe.wait_idle()
    assert status == "FAILED"
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refusals == ["per-call ARI: refused a connection from 127.0.0.1: wrong user or password"]
    assert server.refused["bad_credentials"] == 2  # reconnect_attempts = 2: Asterisk tried twice
    assert PASSWORD not in caplog.text
    assert "not-the-password" not in caplog.text


async def test_rest_errors_and_timeouts_over_the_socket(kit: Kit) -> None:
    outcome: dict[str, Any] = {}

    async def attempt(name: str, work: Awaitable[Any]) -> None:
        try:
            outcome[name] = await work
        except AriError as exc:
            outcome[name] = exc

    async def on_call(conn: PerCallConnection) -> None:
        ari, caller = conn.ari, conn.channel_id
        await ari.answer(caller)
        await attempt("missing", ari.get_variable("no-such-channel", "EXTEN"))
        await attempt("no_bridge", ari.add_channel("no-such-bridge", caller))
        leg = await ari.originate("Local/s@caller", app=conn.app, app_args="leg")  # into this call's app
        events = conn.events()
        async for event in events:
            if isinstance(event, StasisStart) and event.channel.id == leg.id:
                await ari.hangup(leg.id)
            if isinstance(event, ChannelDestroyed) and event.channel.id == leg.id:
                break
        await attempt("gone", ari.get_variable(leg.id, "EXTEN"))
        await freeze(kit.asterisk.pid)  # Asterisk hangs: the request gets no reply in time
        try:
            await attempt("stopped", ari.get_variable(caller, "EXTEN"))
        finally:
            os.kill(kit.asterisk.pid, signal.SIGCONT)
        await attempt("after", ari.get_variable(caller, "EXTEN"))  # the late reply was dropped
        await ari.hangup(caller)
        async for _ in events:
            pass
        outcome["done"] = True

    async with kit.server(on_call, request_timeout=1.0), AriProbe.open(kit.asterisk) as probe:
        await call_ivr(probe, "400")
        await until(lambda: "done" in outcome, 30)
        await probe.wait_idle()
    missing = outcome["missing"]
    assert isinstance(missing, NotFound)
    assert (missing.status, missing.message) == (404, "Provided channel was not found")
    assert (missing.method, missing.path) == ("GET", "/channels/no-such-channel/variable")
    assert isinstance(outcome["no_bridge"], NotFound)
    assert isinstance(outcome["gone"], NotFound)
    assert isinstance(outcome["stopped"], AriTimeout)
    assert outcome["after"] == "400"


async def test_a_caller_sent_on_with_continue_leaves_and_its_socket_closes(
    kit: Kit, caplog: pytest.LogCaptureFixture
) -> None:
    tag = str(int(time.time() * 1000))[-9:]
    conns: list[PerCallConnection] = []

    async def on_call(conn: PerCallConnection) -> None:
        conns.append(conn)
        await conn.ari.set_variable(conn.channel_id, "CALLERID(num)", tag)
        await conn.ari.continue_in_dialplan(conn.channel_id, context="pc-after", extension="s", priority=1)

    async with kit.server(on_call), AriProbe.open(kit.asterisk) as probe:
        await call_ivr(probe, "460")
        await until(lambda: bool(conns) and conns[0].closed)
        await probe.wait_idle()
        after = await probe.request("GET", "/asterisk/variable", params={"variable": f"PCAFTER_{tag}"})
    assert after["value"] == "SUCCESS"
    assert (conns[0].left_stasis, conns[0].close_code) == (True, 1000)
    assert "hanging up" not in caplog.text


async def test_an_outbound_call_originated_over_http_into_the_app_gets_a_connection(kit: Kit) -> None:
    conns: list[PerCallConnection] = []

    async def on_call(conn: PerCallConnection) -> None:
        conns.append(conn)
        await conn.ari.hangup(conn.channel_id)
        async for _ in conn.events():
            pass

    async with kit.server(on_call), AriProbe.open(kit.asterisk) as probe:
        channel = await probe.originate(
            "Local/tone@caller", app=APP, app_args="outbound"
        )  # as `ivr originate`
        await until(lambda: bool(conns) and conns[0].closed)
        await probe.wait_idle()
    (conn,) = conns
    assert conn.channel_id == channel["id"]
    assert conn.start is not None
    assert conn.start.args == ("outbound",)


async def test_heartbeat_pings_are_answered_by_asterisk(kit: Kit) -> None:
    outcome: dict[str, Any] = {}

    async def on_call(conn: PerCallConnection) -> None:
        await conn.ari.answer(conn.channel_id)
        await asyncio.sleep(2.5)  # two pings, each pong due within 0.5 s, or the socket is closed
        outcome["open"] = not conn.closed
        outcome["exten"] = await conn.ari.get_variable(conn.channel_id, "EXTEN")
        await conn.ari.hangup(conn.channel_id)
        async for _ in conn.events():
            pass
        outcome["done"] = True

    async with kit.server(on_call, heartbeat=1.0), AriProbe.open(kit.asterisk) as probe:
        await call_ivr(probe, "450")
        await until(lambda: "done" in outcome)
        await probe.wait_idle()
    assert (outcome["open"], outcome["exten"]) == (True, "450")


async def test_no_server_listening_fails_stasis_and_the_dialplan_goes_on(kit: Kit) -> None:
    async with AriProbe.open(kit.asterisk) as probe:
        default_status, default_took = await probe_stasis(kit, probe, "pcdead")  # Asterisk's defaults
        example_status, example_took = await probe_stasis(
            kit, probe, APP
        )  # the example's settings, no server
        await probe.wait_idle()
    assert (default_status, example_status) == ("FAILED", "FAILED")
    assert default_took >= 1.5  # (4 - 1) x 500 ms of retries before Asterisk gives up
    assert example_took >= 0.3  # (2 - 1) x 300 ms
    print(
        f"\nno server: Stasis() failed after {default_took:.2f} s (defaults), {example_took:.2f} s (example)"
    )


async def test_a_server_that_never_answers_the_handshake_holds_the_call_until_the_fail_safe(kit: Kit) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    hung = await asyncio.start_server(hang, "127.0.0.1", kit.hung_port)
    try:
        async with AriProbe.open(kit.asterisk) as probe:
            status, took = await probe_stasis(kit, probe, "pchung")
            await probe.wait_idle()
    finally:
        for writer in accepted:
            writer.close()
        hung.close()
        await hung.wait_closed()
    assert status == "FAILED"
    assert accepted  # Asterisk did connect
    assert took >= 3.0  # (300 + 300) x (2 + 3) ms
    print(f"\nhung server: Stasis() failed after {took:.2f} s")


async def test_a_socket_lost_mid_call_comes_back_as_a_resumed_connection(kit: Kit) -> None:
    conns: list[PerCallConnection] = []
    finished = asyncio.Event()

    async def on_call(conn: PerCallConnection) -> None:
        conns.append(conn)
        if not conn.resumed:
            await conn.ari.answer(conn.channel_id)
            await conn.ari.create_bridge(bridge_id=f"pc-resume-{conn.channel_id}")
            await conn.ari.add_channel(f"pc-resume-{conn.channel_id}", conn.channel_id)
            kill_socket(conn)
            async for _ in conn.events():
                pass
            return
        for bridge_id in conn.application.get("bridge_ids", []):  # what the dead instance had built
            await conn.ari.destroy_bridge(bridge_id)
        await conn.ari.hangup(conn.channel_id)
        async for _ in conn.events():
            pass
        finished.set()

    async with kit.server(on_call) as server, AriProbe.open(kit.asterisk) as probe:
        await call_ivr(probe, "500")
        await asyncio.wait_for(finished.wait(), 30)
        await probe.wait_idle()
        assert server.accepted == 2
    first, second = conns
    assert (first.resumed, second.resumed) == (False, True)
    assert second.application["bridge_ids"] == [f"pc-resume-{first.channel_id}"]
    assert first.channel_id in second.application["channel_ids"]
    assert second.start is None
    assert second.channel_id == first.channel_id
    assert second.app == first.app
    assert second.channel is not None
    assert second.channel.state == "Up"


async def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every thread has stopped (one still running could answer)."""
    os.kill(pid, signal.SIGSTOP)
    await until(lambda: all_stopped(pid), 10)


def all_stopped(pid: int) -> bool:
    states = [
        (t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in Path(f"/proc/{pid}/task").iterdir()
    ]
    return all(state == "T" for state in states)


def kill_socket(conn: PerCallConnection) -> None:
    """Drop the TCP connection without a close frame, as when this instance dies."""
    writer = conn._ws._writer
    assert writer is not None
    writer.transport.abort()
