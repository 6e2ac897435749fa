"""Taking a call over from its checkpoint (ivr.call.resume) on a real records store (SQLite, two
"instances" sharing the file): exactly one of several instances racing for a call wins it, the one that
lost the call's socket learns who took it, and the resumed call's report keeps what the first one knew."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.call.flows import FlowCatalog
from ivr.call.report import CallReport
from ivr.call.resume import CallCheckpoints, carry_report
from ivr.flow import events as ev
from ivr.ops.records import RecordStore, create_store
from ivr.ops.records.model import CallRecord, Checkpoint

FLOWS = Path(__file__).resolve().parents[1] / "topology" / "data"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[RecordStore]]:
    opened = [create_store(path=tmp_path / "calls.sqlite3", instance=name) for name in ("a", "b", "c")]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


async def a_call_at_its_second_question(store: RecordStore) -> CallCheckpoints:
    """Instance ``store`` runs call c1 to its second question and saves its checkpoint."""
    engine = FlowCatalog(FLOWS, "steps").engine("steps")
    engine.handle(ev.CallStarted("c1", caller_id="555"), now=1000.0)
    engine.handle(ev.PromptFinished(), now=1001.0)
    engine.handle(ev.DtmfReceived("4"), now=1002.0)
    assert engine.current_step == "second"
    report = CallReport(call_id="c1", flow="steps", dtmf=["4"], started_at=1000.0)
    points = CallCheckpoints(store, "c1", "c1", {"bridge": "ivr-bridge-1", "media": "ivr-media-1"})
    assert points.save(engine, report, linkedid="1000.1") is not None
    await store.flush_checkpoints()
    return points


class ReadTogether:
    """A records store whose checkpoint reads wait for each other: the racers below all read the row
    before any of them takes it over, the race a single failover can produce (left to the scheduler, a
    racer may read only after another's takeover, which is the next test's case instead)."""

    def __init__(self, store: RecordStore, barrier: asyncio.Barrier) -> None:
        self.store, self.barrier = store, barrier
        self.instance = store.instance

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.store.save_checkpoint(checkpoint)

    async def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None:
        found = await self.store.load_checkpoint(call_id, channel_id=channel_id, linkedid=linkedid)
        await self.barrier.wait()
        return found

    async def resume_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        return await self.store.resume_checkpoint(checkpoint)

    async def get(self, call_id: str) -> CallRecord | None:
        return await self.store.get(call_id)


async def test_of_instances_racing_for_a_call_exactly_one_takes_it(stores: list[RecordStore]) -> None:
    await a_call_at_its_second_question(stores[0])
    barrier = asyncio.Barrier(2)
    racers = [CallCheckpoints(ReadTogether(store, barrier), "c1", "c1") for store in stores[1:]]
    for racer in racers:
        racer.start_lookup()
    claims = await asyncio.gather(*(r.claimed() for r in racers))
    winners = [c for c in claims if c.checkpoint is not None and not c.lost]
    assert len(winners) == 1
    assert [c.lost for c in claims].count(True) == 1
    [won] = winners
    assert won.checkpoint is not None
    assert won.checkpoint.instances[0] == "a"
    assert won.checkpoint.resumes == 1
    assert won.resources == {"bridge": "ivr-bridge-1", "media": "ivr-media-1"}
    state = won.engine_state
    assert state is not None
    assert state["step"] == "second"


async def test_a_second_failover_takes_the_call_from_the_instance_that_resumed_it(
    stores: list[RecordStore],
) -> None:
    """Asterisk gives a call's socket to one instance at a time, so a takeover read after another
    instance's takeover is a second failover (that instance lost the socket too): it wins, and the
    instance it took the call from learns who has it now (and writes no record)."""
    await a_call_at_its_second_question(stores[0])
    first = CallCheckpoints(stores[1], "c1", "c1")
    first.start_lookup()
    assert (await first.claimed()).checkpoint is not None
    second = CallCheckpoints(stores[2], "c1", "c1")
    second.start_lookup()
    claim = await second.claimed()
    assert claim.checkpoint is not None
    assert not claim.lost
    assert claim.checkpoint.instances == ("a", "b", "c")
    assert claim.checkpoint.resumes == 2
    assert await first.taken_over(wait=1) == "c"


async def test_the_restored_engine_and_report_continue_the_call(stores: list[RecordStore]) -> None:
    await a_call_at_its_second_question(stores[0])
    taker = CallCheckpoints(stores[1], "c1", "c1")
    taker.start_lookup()
    await taker.claimed()
    report = CallReport(call_id="c1", flow="", started_at=2000.0)
    engine = taker.resumed_engine(FlowCatalog(FLOWS, "steps"), report)
    assert engine is not None
    assert engine.variables["first"] == "4"
    assert report.started_at == 1000.0, "the call began on the first instance"
    assert report.dtmf == ["4"]
    assert report.linkedid is None  # the first instance had not learnt it yet
    actions = engine.handle(ev.CallResumed("c1"), now=2001.0)
    assert [a.text for a in actions if hasattr(a, "text")] == ["Sorry, we were cut off."]


async def test_the_instance_that_lost_the_socket_learns_who_took_the_call(stores: list[RecordStore]) -> None:
    first = await a_call_at_its_second_question(stores[0])
    taker = CallCheckpoints(stores[1], "c1", "c1")

    async def take_later() -> None:
        await asyncio.sleep(0.3)
        taker.start_lookup()
        await taker.claimed()

    taking = asyncio.ensure_future(take_later())
    assert await first.taken_over(wait=5) == "b"
    await taking
    assert first.stopped, "no more saves from the instance that lost the call"


async def test_nobody_taking_the_call_over_is_reported_as_such(stores: list[RecordStore]) -> None:
    first = await a_call_at_its_second_question(stores[0])
    assert await first.taken_over(wait=0.6) is None


async def test_no_checkpoint_is_a_new_call(stores: list[RecordStore]) -> None:
    fresh = CallCheckpoints(stores[0], "c9", "c9")
    fresh.start_lookup()
    claim = await fresh.claimed()
    assert claim.checkpoint is None
    assert not claim.lost


def test_carried_lists_come_first_and_the_earliest_start_wins() -> None:
    report = CallReport(call_id="c1", flow="", started_at=50.0, dtmf=["9"])
    carry_report(report, {"started_at": 10.0, "dtmf": ["1", "2"], "caller": "555", "errors": None})
    assert report.started_at == 10.0
    assert report.dtmf == ["1", "2", "9"]
    assert report.caller == "555"
    carry_report(report, "not a mapping")
    assert report.dtmf == ["1", "2", "9"]
