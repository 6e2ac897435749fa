"""``ivr run`` in per-call ARI mode against a real Asterisk 22.10.1: calls over their own sockets.

One Asterisk of this module's own, configured with the shipped per-call examples and the project's
dialplan (``asterisk_setup``); ``ivr run`` runs in this process (the real ``serve()``); callers are the
suite's phones (``tests/asterisk/harness.py``) dialling ``[ivr-lines]`` 7000 of the project's dialplan.
A relay (``TcpProxy``) between Asterisk and ``ivr run`` cuts a call's socket as a dying instance or a
restarting balancer would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import pytest

from ivr.config import Settings
from ivr.ops.records import open_database
from tests.asterisk.harness import caller_side
from tests.asterisk.ivr_runs import ivr_env, ivr_process, ivr_run, ivr_settings
from tests.asterisk.tcpproxy import TcpProxy
from tests.conftest import AsteriskFactory
from tests.real_asterisk import AriProbe, RealAsterisk, rerun_if_asterisk_crashed
from tests.services import free_tcp_port

from .asterisk_setup import APP, PERCALL_USER, configure_percall

DATA = Path(__file__).parent / "data"
PASSWORD = "topology-percall-pw-51c2"


class Kit:
    def __init__(self, asterisk: RealAsterisk, relay_port: int) -> None:
        self.asterisk = asterisk
        self.relay_port = relay_port
        """Where Asterisk's per-call connection goes (the relay in front of ``ivr run``)."""

    async def restart(self) -> None:
        """Asterisk again after a crash, configured as before (start.sh rewrites the configuration)."""
        self.asterisk.stop()
        self.asterisk.start()
        configure_percall(self.asterisk, port=self.relay_port, password=PASSWORD)

    def settings(self, ivr_port: int, **env: str) -> Settings:
        values = {
            "IVR_ARI_MODE": "per_call",
            "IVR_ARI_APP": APP,
            "IVR_ARI_PERCALL_LISTEN": f"127.0.0.1:{ivr_port}",
            "IVR_ARI_PERCALL_USER": PERCALL_USER,
            "IVR_ARI_PERCALL_PASSWORD": PASSWORD,
            "IVR_FLOWS": str(DATA),
            "IVR_DEFAULT_FLOW": "steps",
            "IVR_INSTANCE_ID": "solo",
        }
        return ivr_settings(self.asterisk, **{**values, **env})


@pytest.fixture(scope="module")
def kit(asterisk_factory: AsteriskFactory) -> Kit:
    asterisk = asterisk_factory()
    relay_port = free_tcp_port()
    configure_percall(asterisk, port=relay_port, password=PASSWORD)
    return Kit(asterisk, relay_port)


@pytest.fixture(autouse=True)
async def asterisk_alive(kit: Kit) -> None:
    """An Asterisk crash in one test (see ``rerun_if_asterisk_crashed``) does not fail the next ones."""
    if not kit.asterisk.alive():
        await kit.restart()


class Relay(TcpProxy):
    """A TcpProxy listening on a fixed port (the uri Asterisk was given)."""

    def __init__(self, listen: int, upstream: int) -> None:
        super().__init__("127.0.0.1", upstream)
        self.listen = listen

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen)
        return self.listen


async def asterisk_logged(asterisk: RealAsterisk, offset: int, text: str, timeout: float) -> str:
    """Asterisk's log since ``offset`` once it holds ``text`` (or when ``timeout`` is over)."""
    deadline = time.monotonic() + timeout
    while text not in (log := asterisk.log_since(offset)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    return log


def is_percall(head: bytes) -> bool:
    return head.startswith(b"GET /ari ")


async def test_a_call_runs_over_its_own_socket_and_leaves_nothing_behind(kit: Kit) -> None:
    ivr_port = free_tcp_port()
    relay = Relay(kit.relay_port, ivr_port)
    await relay.start()
    try:
        async with ivr_run(kit.settings(ivr_port)) as run, caller_side(kit.asterisk) as side:
            phone = await side.call("ivr-lines", "7000", formats="slin16")
            await phone.leg.wait_heard("Press a key for the first answer", timeout=15)
            await phone.press("4")
            await phone.leg.wait_heard("Now press a key for the second answer", timeout=10)
            await phone.press("7")
            await phone.leg.wait_heard("You pressed 4 and 7", timeout=10)
            [report] = await run.wait_reports(1, timeout=20)
            assert report.outcome == "hangup", report
            assert report.flow == "steps"
            assert report.path == ["hello", "first", "second", "bye", "done"]
            assert report.linkedid
            await side.wait_idle()
        assert len(relay.links) == 1, "one socket for the call"
    finally:
        await relay.close()


async def test_a_call_whose_socket_drops_is_resumed_at_its_step_in_one_record(kit: Kit) -> None:
    await rerun_if_asterisk_crashed(kit.asterisk, lambda: socket_drop_scenario(kit), kit.restart)


async def socket_drop_scenario(kit: Kit) -> None:
    ivr_port = free_tcp_port()
    relay = Relay(kit.relay_port, ivr_port)
    await relay.start()
    settings = kit.settings(ivr_port)
    try:
        async with ivr_run(settings) as run, caller_side(kit.asterisk) as side:
            phone = await side.call("ivr-lines", "7000", formats="slin16")
            await phone.leg.wait_heard("Press a key for the first answer", timeout=15)
            await phone.press("4")
            await phone.leg.wait_heard("Now press a key for the second answer", timeout=10)
            await asyncio.sleep(0.3)  # the checkpoint of step "second" is written within milliseconds
            cut_at = time.monotonic()
            assert relay.cut(is_percall) == 1
            await phone.leg.wait_heard("Sorry, we were cut off", timeout=10)
            resumed_in = time.monotonic() - cut_at
            await phone.leg.wait_heard_count("Now press a key for the second answer", 2, timeout=10)
            await phone.press("7")
            await phone.leg.wait_heard("You pressed 4 and 7", timeout=10)
            reports = await run.wait_reports(2, timeout=30)
            await side.wait_idle()
        print(f"\nsocket cut: the apology was heard {resumed_in:.2f} s later")
        assert resumed_in < 2.0  # issue 13's bound; ~0.6 s measured (Asterisk's 0.5 s lookup included)
        assert len(relay.links) == 2, "Asterisk reopened the call's socket once"
        handed, final = sorted(reports, key=lambda r: r.handed_over, reverse=True)
        assert handed.handed_over
        assert handed.outcome == "handed_over"
        assert not final.handed_over
        assert final.outcome == "hangup"
        assert final.call_id == handed.call_id
        assert final.path == ["hello", "first", "second", "second", "bye", "done"]
        assert final.variables["first"] == "4"
        assert final.variables["second"] == "7"
        with open_database(path=settings.records_path) as db:
            [record] = db.list()
        assert record.call_id == final.call_id
        assert record.resumed is True
        assert record.instances == ["solo"]
        assert record.outcome == "hangup"
    finally:
        await relay.close()


async def test_a_call_nobody_could_take_back_returns_through_the_dialplans_stasis_retry(kit: Kit) -> None:
    """Its instance died and Asterisk could not reopen the socket anywhere (no instance reachable):
    Stasis() returns FAILED, the shipped [ivr-unavailable] plays music on hold for IVR_RETRY_AFTER
    and runs Stasis() again; the instance that gets that new StasisStart resumes the call from its
    checkpoint."""
    ivr_port = free_tcp_port()
    relay = Relay(kit.relay_port, ivr_port)
    await relay.start()
    settings = kit.settings(ivr_port)
    try:
        async with ivr_run(settings) as run, caller_side(kit.asterisk) as side:
            phone = await side.call("ivr-lines", "7000", formats="slin16", variables={"IVR_RETRY_AFTER": "3"})
            await phone.leg.wait_heard("Press a key for the first answer", timeout=15)
            await phone.press("5")
            await phone.leg.wait_heard("Now press a key for the second answer", timeout=10)
            await asyncio.sleep(0.3)
            offset = kit.asterisk.log_offset()
            relay.block(is_percall)  # nothing takes the reopened socket
            assert relay.cut(is_percall) == 1
            log = await asterisk_logged(kit.asterisk, offset, "trying again in 3 s", timeout=10)
            assert "trying again in 3 s" in log, log[-2000:]
            relay.unblock()  # an instance is back before the retry
            await phone.leg.wait_heard("Sorry, we were cut off", timeout=10)
            await phone.leg.wait_heard_count("Now press a key for the second answer", 2, timeout=10)
            await phone.press("2")
            await phone.leg.wait_heard("You pressed 5 and 2", timeout=10)
            reports = await run.wait_reports(2, timeout=30)
            await side.wait_idle()
        assert "MusicOnHold" in log, "the answered caller hears music while it waits"
        assert sorted(r.outcome for r in reports) == ["handed_over", "hangup"]
        with open_database(path=settings.records_path) as db:
            [record] = db.list()
        assert record.resumed is True
        assert record.path == ["hello", "first", "second", "second", "bye", "done"]
    finally:
        await relay.close()


async def test_a_wrong_password_is_refused_and_the_call_goes_to_the_fallback(kit: Kit) -> None:
    ivr_port = free_tcp_port()
    relay = Relay(kit.relay_port, ivr_port)
    await relay.start()
    try:
        settings = kit.settings(ivr_port, IVR_ARI_PERCALL_PASSWORD="not-what-asterisk-sends")
        async with ivr_run(settings) as run, AriProbe.open(kit.asterisk) as probe:
            offset = kit.asterisk.log_offset()
            await probe.originate("Local/7000@ivr-lines", context="caller", extension="s", priority=1)
            log = await asterisk_logged(kit.asterisk, offset, "continuing at", timeout=20)
            assert "unavailable for" in log, log[-2000:]
            assert "trying again" in log, log[-2000:]
            assert "continuing at" in log, "after the retry the call goes to IVR_FALLBACK"
            assert run.reports == []
            await probe.clear()
    finally:
        await relay.close()


async def test_a_dead_workers_call_is_resumed_by_another_worker_of_the_instance(kit: Kit) -> None:
    """``--workers 2`` share the per-call port (SO_REUSEPORT): a worker's SIGKILL drops its call's
    socket, Asterisk reopens it on the same port, the kernel hands it to the live worker."""
    await rerun_if_asterisk_crashed(kit.asterisk, lambda: dead_worker_scenario(kit), kit.restart)


async def dead_worker_scenario(kit: Kit) -> None:
    relay = Relay(kit.relay_port, free_tcp_port())
    env = ivr_env(
        kit.asterisk,
        IVR_WORKERS="2",
        IVR_ARI_MODE="per_call",
        IVR_ARI_APP=APP,
        IVR_ARI_PERCALL_LISTEN=f"127.0.0.1:{relay.upstream[1]}",
        IVR_ARI_PERCALL_USER=PERCALL_USER,
        IVR_ARI_PERCALL_PASSWORD=PASSWORD,
        IVR_FLOWS=str(DATA),
        IVR_DEFAULT_FLOW="steps",
        IVR_INSTANCE_ID="workers",
    )
    await relay.start()
    try:
        async with ivr_process(env) as run, caller_side(kit.asterisk) as side:
            ready = await run.wait_line("workers (pids")
            pids = [int(p) for p in re.findall(r"\d+", ready.partition("pids")[2])]
            assert len(pids) == 2, ready
            phone = await side.call("ivr-lines", "7000", formats="slin16")
            await phone.leg.wait_heard("Press a key for the first answer", timeout=15)
            serving = await run.wait_line("per-call ARI: call ")
            worker = int(re.search(r"\[worker (\d+)\]", serving)[1])  # type: ignore[index]
            await phone.press("3")
            await phone.leg.wait_heard("Now press a key for the second answer", timeout=10)
            await asyncio.sleep(0.3)
            os.kill(pids[worker], signal.SIGKILL)
            await phone.leg.wait_heard("Sorry, we were cut off", timeout=10)
            resumed = await run.wait_line("resumed after a reconnect")
            assert f"[worker {1 - worker}]" in resumed, resumed
            await phone.leg.wait_heard_count("Now press a key for the second answer", 2, timeout=10)
            await phone.press("8")
            await phone.leg.wait_heard("You pressed 3 and 8", timeout=10)
            await phone.wait_gone(timeout=15)
            await run.wait_line(f"worker {worker} exited")
            await side.wait_idle()
            assert await run.terminate() == 0
        with open_database(path=Path(env["IVR_RECORDS_PATH"])) as db:
            [record] = db.list()
        assert record.outcome == "hangup"
        assert record.resumed is True
        assert record.variables["first"] == "3"
        assert record.variables["second"] == "8"
    finally:
        await relay.close()
