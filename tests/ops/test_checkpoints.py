"""Checkpoints of live calls, on both engines: save cheaply, load by call/channel/linkedid, resume with
exactly one winner, and a resumed call ending in one record."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.flow.builtins import MASK
from ivr.ops.records import Checkpoint, RecordsError, RecordStore
from ivr.ops.records.checkpoints import CheckpointBuffer
from ivr.ops.records.model import checkpoint_snapshot
from tests.ops.conftest import Engine
from tests.ops.helpers import make_report


def point(call_id: str, step: str = "menu", **extra: object) -> Checkpoint:
    values: dict[str, object] = {
        "flow": "bank",
        "flow_version": "sha256:0f1e",
        "step": step,
        "variables": {"intent": "balance", "attempts": 2, "api_token": "tok-SECRET"},
        "retries": {"menu:no_input": 1},
        "state": {"stack": [["bank", step]], "timers": {"no_input": 5.0}},
        "channel_id": f"chan-{call_id}",
        "linkedid": f"link-{call_id}",
    }
    values.update(extra)
    return Checkpoint(call_id=call_id, **values)  # type: ignore[arg-type]


async def wait_for_step(store: RecordStore, call_id: str, step: str) -> Checkpoint:
    """Poll another instance's view until the checkpoint shows ``step`` (bounded, not a speed assert)."""
    async with asyncio.timeout(20):
        while True:
            found = await store.load_checkpoint(call_id)
            if found is not None and found.step == step:
                return found
            await asyncio.sleep(0.01)


async def test_saved_checkpoints_load_by_call_channel_and_linkedid(engine: Engine) -> None:
    async with engine.store("a") as a:
        a.save_checkpoint(point("c1"))  # a plain call: returns at once, nothing awaited
        await a.flush_checkpoints()
        by_call = await a.load_checkpoint("c1")
        assert by_call is not None
        assert await a.load_checkpoint(channel_id="chan-c1") == by_call
        assert await a.load_checkpoint(linkedid="link-c1") == by_call
        assert await a.load_checkpoint("nope") is None
        assert await a.load_checkpoint(channel_id="nope") is None
    assert by_call.flow == "bank"
    assert by_call.flow_version == "sha256:0f1e"
    assert by_call.step == "menu"
    assert by_call.variables == {"intent": "balance", "attempts": 2, "api_token": MASK}  # redacted again
    assert by_call.retries == {"menu:no_input": 1}
    assert by_call.state == {"stack": [["bank", "menu"]], "timers": {"no_input": 5.0}}
    assert (by_call.instance, by_call.instances, by_call.resumes, by_call.seq) == ("a", ("a",), 0, 1)
    assert not by_call.resumed
    with pytest.raises(ValueError, match="call id, a channel id or a linkedid"):
        async with engine.store("a") as a:
            await a.load_checkpoint()


async def test_the_background_writer_saves_without_being_asked(engine: Engine) -> None:
    async with engine.store("a") as a, engine.store("b") as b:
        for step in ("welcome", "menu", "pin", "balance"):
            a.save_checkpoint(point("live", step))
        seen = await wait_for_step(b, "live", "balance")  # no flush: the writer did it by itself
        assert 1 <= seen.seq <= 4
        variables = {"n": 0}
        checkpoint = point("live", "goodbye", variables=variables)
        a.save_checkpoint(checkpoint)
        variables["n"] = 99  # a change after the save is not what was saved
        await a.flush_checkpoints()
        assert (await b.load_checkpoint("live")).variables == {"n": 0}  # type: ignore[union-attr]


async def test_state_that_is_not_json_is_refused_at_the_call_site(engine: Engine) -> None:
    async with engine.store("a") as a:
        with pytest.raises(RecordsError, match="not JSON"):
            a.save_checkpoint(point("bad", state={"when": object()}))
        with pytest.raises(RecordsError, match="not JSON"):
            a.save_checkpoint(point("bad", state=float("nan")))
    with pytest.raises(RecordsError, match="closed"):
        a.save_checkpoint(point("late"))


async def test_two_instances_resuming_one_call_exactly_one_wins(engine: Engine) -> None:
    calls = [f"race-{i}" for i in range(12)]
    async with engine.store("a") as a, engine.store("b") as b, engine.store("c") as c:
        for call_id in calls:
            a.save_checkpoint(point(call_id))
        await a.flush_checkpoints()
        for call_id in calls:
            seen_b, seen_c = await asyncio.gather(b.load_checkpoint(call_id), c.load_checkpoint(call_id))
            assert seen_b is not None
            assert seen_c is not None
            won_b, won_c = await asyncio.gather(b.resume_checkpoint(seen_b), c.resume_checkpoint(seen_c))
            winners = [w for w in (won_b, won_c) if w is not None]
            assert len(winners) == 1, (call_id, won_b, won_c)
            [won] = winners
            stored = await a.load_checkpoint(call_id)
            assert stored == won
            assert stored.instance in ("b", "c")
            assert stored.instances == ("a", stored.instance)
            assert stored.resumes == 1
            assert stored.resumed
            loser = c if stored.instance == "b" else b
            assert await loser.resume_checkpoint(seen_b) is None  # a stale read never wins later either


async def test_the_old_owner_cannot_overwrite_a_resumed_call(engine: Engine) -> None:
    async with engine.store("a") as a, engine.store("b") as b:
        a.save_checkpoint(point("fenced", "menu"))
        await a.flush_checkpoints()
        seen = await b.load_checkpoint("fenced")
        assert seen is not None
        taken = await b.resume_checkpoint(seen)
        assert taken is not None
        a.save_checkpoint(point("fenced", "zombie-step"))  # the instance that lost the call, still running
        await a.flush_checkpoints()
        after_zombie = await b.load_checkpoint("fenced")
        assert after_zombie == taken  # ignored: the row belongs to b now
        b.save_checkpoint(point("fenced", "pin"))
        await b.flush_checkpoints()
        now = await a.load_checkpoint("fenced")
    assert now is not None
    assert now.step == "pin"
    assert now.instance == "b"
    assert now.seq == taken.seq + 1


async def test_a_resumed_call_ends_in_one_record_marked_resumed(engine: Engine) -> None:
    async with engine.store("a") as a, engine.store("b") as b:
        plain = await a.record(make_report("plain"))
        assert (plain.instance, plain.instances, plain.resumed) == ("a", ["a"], False)

        a.save_checkpoint(point("moved", "pin"))
        await a.flush_checkpoints()
        # instance a dies here; the dialplan hands the channel back to Stasis and b gets it
        seen = await b.load_checkpoint(channel_id="chan-moved")
        assert seen is not None
        assert await b.resume_checkpoint(seen) is not None
        b.save_checkpoint(point("moved", "balance"))
        written = await b.record(make_report("moved", outcome="completed"))
        assert (written.instance, written.instances, written.resumed) == ("b", ["a", "b"], True)
        assert await a.load_checkpoint("moved") is None  # the call is over: nothing left to resume
        await b.flush_checkpoints()
        assert await a.load_checkpoint("moved") is None  # and the save just before the end was dropped

        records = await a.list(limit=None)
        assert sorted(r.call_id for r in records) == ["moved", "plain"]
        stored = await a.get("moved")
        assert stored == written
        assert stored.outcome == "completed"

        await b.record(make_report("moved", outcome="completed"))  # written twice: still one record
        again = await a.get("moved")
        assert again is not None
        assert (again.instances, again.resumed) == (["a", "b"], True)
        assert len(await a.list(limit=None)) == 2


async def test_discard_forgets_a_checkpoint(engine: Engine) -> None:
    async with engine.store("a") as a:
        a.save_checkpoint(point("gone"))
        await a.flush_checkpoints()
        await a.discard_checkpoint("gone")
        assert await a.load_checkpoint("gone") is None
        a.save_checkpoint(point("never-written"))
        await a.discard_checkpoint("never-written")
        await a.flush_checkpoints()
        assert await a.load_checkpoint("never-written") is None


def test_saves_coalesce_to_the_newest_state_per_call() -> None:
    buffer = CheckpointBuffer()
    snaps = [checkpoint_snapshot(point("x", f"s{i}"), "a", float(i)) for i in range(50)]
    scheduled = [buffer.put(s) for s in snaps]
    assert scheduled == [True] + [False] * 49  # one flush for the whole burst
    buffer.put(checkpoint_snapshot(point("y"), "a", 1.0))
    taken = buffer.take()
    assert [(s["call_id"], s["step"]) for s in taken] == [("x", "s49"), ("y", "menu")]
    assert buffer.put(snaps[0]) is True  # the next save schedules the next flush


def test_a_failed_flush_restores_unless_newer_or_ended() -> None:
    buffer = CheckpointBuffer()
    for call_id in ("keep", "newer", "ended"):
        buffer.put(checkpoint_snapshot(point(call_id, "old"), "a", 1.0))
    taken = buffer.take()
    buffer.put(checkpoint_snapshot(point("newer", "new"), "a", 2.0))
    buffer.drop("ended")  # the call's record is being written
    buffer.restore(taken)
    assert {s["call_id"]: s["step"] for s in buffer.take()} == {"keep": "old", "newer": "new"}


async def test_stale_checkpoints_are_pruned_when_a_store_opens(engine: Engine) -> None:
    async with engine.store("a") as a:
        a.save_checkpoint(point("fresh"))
        a.save_checkpoint(point("stale"))
        await a.flush_checkpoints()
    engine.sql(f"UPDATE checkpoints SET updated_at = {time.time() - 2 * 86400} WHERE call_id = 'stale'")
    async with engine.store("b") as b:
        assert await b.load_checkpoint("stale") is None
        assert await b.load_checkpoint("fresh") is not None


async def test_a_process_touches_the_calls_it_serves_and_the_untouched_ones_are_stale(engine: Engine) -> None:
    """How a dead process's calls are told from a live one's: only live processes touch theirs, call by
    call (an instance restarted under the same name does not keep its predecessor's calls fresh)."""
    async with engine.store("a") as a, engine.store("b") as b:
        a.save_checkpoint(point("alive"))
        a.save_checkpoint(point("before-restart"))  # a's previous process served it, then died
        b.save_checkpoint(point("orphan"))
        await a.flush_checkpoints()
        await b.flush_checkpoints()
        engine.sql(f"UPDATE checkpoints SET updated_at = {time.time() - 600}")
        before = await a.load_checkpoint("alive")
        await a.touch_checkpoints(["alive", "orphan"])  # b owns "orphan": a's touch leaves it alone
        await a.touch_checkpoints([])
        stale = await a.stale_checkpoints(time.time() - 60)
        assert sorted(c.call_id for c in stale) == ["before-restart", "orphan"]
        after = await a.load_checkpoint("alive")
        assert before is not None
        assert after is not None
        assert after.updated_at > before.updated_at
        assert after.seq == before.seq, "a touch is no write of the call: a resume read before it still wins"
        [orphan] = [c for c in stale if c.call_id == "orphan"]
        assert orphan.instance == "b"
        assert await a.resume_checkpoint(orphan) is not None
