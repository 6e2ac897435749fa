"""Issue 13's topology on real services: Asterisk -> HAProxy -> two ``ivr run`` instances -> PostgreSQL.

Everything runs as it would in docker-compose.yml, as local processes on free ports (``stack.py``):
calls enter the project's dialplan (``[ivr-lines]`` 7000), Asterisk opens one per-call WebSocket per call
to HAProxy (the shipped ``deploy/haproxy/haproxy.cfg``), HAProxy hands it to an instance, and both
instances keep their records and checkpoints in one PostgreSQL. Each test is bounded in time; the
figures they print (``pytest -s``) are README's "Scaling out" results. Bounds on wall-clock time are
issue 13's acceptance criteria (resume within 2 s), far above what is measured.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.asterisk.harness import Phone, caller_side
from tests.conftest import AsteriskFactory, HAProxyFactory, PostgresFactory, failed
from tests.real_asterisk import AriProbe, rerun_if_asterisk_crashed

from .asterisk_setup import configure_percall
from .stack import PASSWORD, Instance, Topology

NAMES = ("ivr-a", "ivr-b")


@pytest.fixture(scope="module")
def services(
    asterisk_factory: AsteriskFactory, postgres_factory: PostgresFactory, haproxy_factory: HAProxyFactory
) -> Topology:
    postgres = postgres_factory()  # its own server: the outage test stops it
    database = postgres.create_database("topology")
    instances = [Instance(name, records_url=database) for name in NAMES]
    haproxy = haproxy_factory([i.backend for i in instances])
    asterisk = asterisk_factory()
    configure_percall(asterisk, port=haproxy.port, password=PASSWORD)
    return Topology(asterisk, postgres, database, haproxy, instances)


async def up(services: Topology) -> None:
    """Both instances up and ready (as HAProxy sees them too), fresh tables; Asterisk restarted (and
    configured again) if an earlier test crashed it (see ``rerun_if_asterisk_crashed``)."""
    if not services.asterisk.alive():
        services.asterisk.stop()
        services.asterisk.start()
        configure_percall(services.asterisk, port=services.haproxy.port, password=PASSWORD)
    await asyncio.gather(*(i.start() for i in services.instances))  # the first one creates the tables
    services.sql("DELETE FROM calls; DELETE FROM checkpoints")
    await until(lambda: set(services.haproxy.server_states().values()) == {"UP"}, 20)


async def down(services: Topology) -> None:
    await asyncio.gather(*(i.stop() for i in services.instances))


@pytest.fixture
async def topo(services: Topology, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Topology]:
    """The topology up for one test (:func:`up`); its instances stopped afterwards. When the test
    failed, the instances' logs and Asterisk's log of the test are kept in its ``tmp_path`` (the paths
    are printed), and whatever it left in Asterisk is reported and removed (the next test starts clean)."""
    await up(services)
    log_offset = services.asterisk.log_offset()
    try:
        yield services
    finally:
        await down(services)
        if failed(request):
            keep_logs(services, tmp_path, log_offset)
        if failed(request) and services.asterisk.alive():  # a crashed one is restarted by the next up()
            async with AriProbe.open(services.asterisk) as probe:
                left = await probe.settle()
            if left is not None:
                print(f"\nafter the failure, {left} (removed)")


def keep_logs(services: Topology, where: Path, asterisk_from: int) -> None:
    kept = []
    for instance in services.instances:
        path = where / f"{instance.name}.log"
        path.write_text("\n".join(instance.lines) + "\n", encoding="utf-8")
        kept.append(path)
    path = where / "asterisk-full.log"
    path.write_text(services.asterisk.log_since(asterisk_from), encoding="utf-8")
    kept.append(path)
    print("\nlogs of the failed test: " + ", ".join(str(p) for p in kept))


async def until(check: object, timeout: float, interval: float = 0.1) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110 - state of other processes
            await asyncio.sleep(interval)


def owner(topo: Topology, call_id: str) -> Instance:
    """The instance that accepted the call's first socket (its log names the call)."""
    found = [i for i in topo.instances if any(f"per-call ARI: call {call_id} (" in line for line in i.lines)]
    assert found, f"no instance took {call_id}"
    return found[0]


def records(topo: Topology) -> dict[str, tuple[str, str, str, str]]:
    """call_id -> (outcome, instance, instances, resumed) of every record in PostgreSQL."""
    rows = topo.sql("SELECT call_id, outcome, instance, instances::text, resumed::text FROM calls")
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def answer_both(phone: Phone, first: str, second: str) -> None:
    await phone.leg.wait_heard("Press a key for the first answer", timeout=20)
    await phone.press(first)
    await phone.leg.wait_heard("Now press a key for the second answer", timeout=15)
    await phone.press(second)
    await phone.leg.wait_heard(f"You pressed {first} and {second}", timeout=15)


async def test_forty_calls_through_haproxy_are_split_across_the_two_instances(topo: Topology) -> None:
    asterisk = topo.asterisk
    started = time.monotonic()
    async with AriProbe.open(asterisk) as probe:
        for _ in range(40):
            await probe.originate(
                "Local/7000@ivr-lines",
                context="caller",
                extension="s",
                priority=1,
                variables={"IVR_FLOW": "short"},
            )
        await until(lambda: len(records(topo)) >= 40, 90, interval=0.5)
        took = time.monotonic() - started
        await probe.wait_idle(30)
    rows = records(topo)
    assert len(rows) == 40
    assert {outcome for outcome, *_ in rows.values()} == {"hangup"}, rows
    split = {name: sum(1 for r in rows.values() if r[1] == name) for name in NAMES}
    print(f"\n40 calls through HAProxy: {split} in {took:.1f} s (each call about 4 s long)")
    assert all(n >= 10 for n in split.values()), split
    assert all(r[3] == "false" for r in rows.values())
    for instance in topo.instances:
        text = await instance.metrics()
        assert (
            f'ivr_calls_total{{ivr_instance="{instance.name}",outcome="hangup"}} {float(split[instance.name])}'
            in text
        )
        assert not [line for line in instance.lines if " ERROR " in line or "Traceback" in line], (
            instance.lines[-20:]
        )


async def test_sigkill_of_an_instance_mid_call_its_calls_resume_on_the_other_in_one_record_each(
    topo: Topology,
) -> None:
    async def restart() -> None:
        await down(topo)
        await up(topo)

    await rerun_if_asterisk_crashed(topo.asterisk, lambda: sigkill_scenario(topo), restart)


async def sigkill_scenario(topo: Topology) -> None:
    asterisk = topo.asterisk
    async with caller_side(asterisk) as side:
        phones = [await side.call("ivr-lines", "7000", formats="slin16") for _ in range(4)]
        for n, phone in enumerate(phones):
            await phone.leg.wait_heard("Press a key for the first answer", timeout=20)
            await phone.press(str(n + 1))
        for phone in phones:
            await phone.leg.wait_heard("Now press a key for the second answer", timeout=15)
        owners = {phone.line_id: owner(topo, phone.line_id).name for phone in phones}
        victim = topo.by_name("ivr-a")
        doomed = [p for p in phones if owners[p.line_id] == victim.name]
        assert doomed, f"no call on {victim.name}: {owners}"
        await asyncio.sleep(0.3)  # the checkpoints of step "second" are written within milliseconds
        killed = time.monotonic()
        victim.kill()
        resumed: list[float] = []

        async def apology(phone: Phone) -> None:
            await phone.leg.wait_heard("Sorry, we were cut off", timeout=10)
            resumed.append(time.monotonic() - killed)

        await asyncio.gather(*(apology(p) for p in doomed))
        for n, phone in enumerate(phones):
            if phone in doomed:
                await phone.leg.wait_heard_count("Now press a key for the second answer", 2, timeout=10)
            await phone.press(str(n + 5))
            await phone.leg.wait_heard(f"You pressed {n + 1} and {n + 5}", timeout=15)
        await until(lambda: len(records(topo)) >= 4, 30)
        await side.wait_idle(15)
    print(
        f"\nSIGKILL of {victim.name} with {len(doomed)} of 4 calls: resumed on ivr-b after "
        + ", ".join(f"{t:.2f}" for t in sorted(resumed))
        + " s"
    )
    assert max(resumed) < 2.0
    rows = records(topo)
    assert set(rows) == set(owners), "one record per call: none lost, none doubled"
    for phone in phones:
        outcome, instance, instances, was_resumed = rows[phone.line_id]
        assert outcome == "hangup"
        assert instance == "ivr-b"
        if phone in doomed:
            assert instances == '["ivr-a", "ivr-b"]'
            assert was_resumed == "true"
        else:
            assert instances == '["ivr-b"]'
            assert was_resumed == "false"
    assert topo.sql("SELECT count(*) FROM checkpoints") == [["0"]]


async def test_sigterm_drains_one_instance_while_the_other_takes_the_new_calls(topo: Topology) -> None:
    asterisk = topo.asterisk
    leaving = topo.by_name("ivr-a")
    async with caller_side(asterisk) as side:
        first = [await side.call("ivr-lines", "7000", formats="slin16") for _ in range(2)]
        for phone in first:
            await phone.leg.wait_heard("Press a key for the first answer", timeout=20)
        on_leaving = [p for p in first if owner(topo, p.line_id) is leaving]
        assert on_leaving, "leastconn put one of two calls on each instance"
        leaving.terminate()
        await until(lambda: topo.haproxy.server_states().get(leaving.name) != "UP", 10)
        later = [await side.call("ivr-lines", "7000", formats="slin16") for _ in range(3)]
        await asyncio.gather(*(answer_both(p, "1", "2") for p in later))
        await asyncio.gather(*(answer_both(p, "3", "4") for p in first))  # the draining one finishes too
        assert await leaving.wait_exit(60) == 0
        await until(lambda: len(records(topo)) >= 5, 30)
        await side.wait_idle(15)
    rows = records(topo)
    for phone in later:
        assert rows[phone.line_id][:2] == ("hangup", "ivr-b"), rows[phone.line_id]
    for phone in on_leaving:
        assert rows[phone.line_id][:2] == ("hangup", "ivr-a"), "it finished on the draining instance"
    print(f"\nSIGTERM: {len(on_leaving)} call(s) finished on {leaving.name}, 3 new ones went to ivr-b")


async def test_postgres_down_for_ten_seconds_calls_go_on_and_records_arrive_when_it_returns(
    topo: Topology,
) -> None:
    asterisk = topo.asterisk
    topo.postgres.stop("fast")
    try:
        down_at = time.monotonic()
        async with caller_side(asterisk) as side:
            phones = [await side.call("ivr-lines", "7000", formats="slin16") for _ in range(4)]
            await asyncio.gather(*(answer_both(p, "2", "9") for p in phones))
            await until(lambda: sum(i.count("ended (hangup)") for i in topo.instances) >= 4, 20)
            await side.wait_idle(15)
            left = 10.0 - (time.monotonic() - down_at)
            if left > 0:
                await asyncio.sleep(left)
    finally:
        topo.postgres.start()
    back_at = time.monotonic()
    await until(lambda: len(records(topo)) >= 4, 60, interval=0.5)
    print(
        f"\nPostgreSQL down {back_at - down_at:.1f} s: 4 calls ran; their records were in it {time.monotonic() - back_at:.1f} s after it came back"
    )
    rows = records(topo)
    assert set(rows) == {p.line_id for p in phones}
    assert {r[0] for r in rows.values()} == {"hangup"}
    for instance in topo.instances:
        spooled = [line for line in instance.lines if "spool" in line.lower()]
        served = sum(1 for p in phones if owner(topo, p.line_id) is instance)
        if served:
            assert spooled, f"{instance.name} kept its records locally: {instance.lines[-20:]}"


async def test_bad_and_unauthenticated_websocket_clients_are_refused_with_one_line_each(
    topo: Topology,
) -> None:
    asterisk = topo.asterisk
    url = topo.haproxy.url
    async with caller_side(asterisk) as side:
        phone = await side.call("ivr-lines", "7000", formats="slin16")
        await phone.leg.wait_heard("Press a key for the first answer", timeout=20)
        before = [len(i.lines) for i in topo.instances]
        statuses = []
        async with aiohttp.ClientSession() as http:
            for headers, protocols in [
                ({}, ("ari",)),  # no credentials
                ({"Authorization": basic("asterisk", "wrong-" + uuid.uuid4().hex)}, ("ari",)),
                ({"Authorization": basic("asterisk", PASSWORD)}, ("not-ari",)),
            ]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    async with http.ws_connect(url, headers=headers, protocols=protocols):
                        pass
                statuses.append(refused.value.status)
            async with http.get(url.replace("ws://", "http://")) as resp:  # not a WebSocket at all
                statuses.append(resp.status)
        await phone.press("6")
        await phone.leg.wait_heard("Now press a key for the second answer", timeout=15)
        await phone.press("1")
        await phone.leg.wait_heard("You pressed 6 and 1", timeout=15)
        await phone.wait_gone(15)  # the IVR hangs up after its goodbye
        await until(lambda: len(records(topo)) >= 1, 30)
        await side.wait_idle(15)
    assert statuses == [401, 401, 400, 400]
    refusals = [
        line
        for instance, start in zip(topo.instances, before, strict=True)
        for line in instance.lines[start:]
        if "per-call ARI: refused a connection" in line
    ]
    assert len(refusals) == 4, refusals
    assert not any(PASSWORD in line for i in topo.instances for line in i.lines)
    [row] = records(topo).values()
    assert row[0] == "hangup", "the call beside them went on"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
