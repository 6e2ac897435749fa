"""Calls whose instance died and whose caller left before another instance took them over.

Such a call has a checkpoint and nobody to write its record: its instance is gone, and no other instance
ever gets its socket (the caller hung up in the second between the death and the takeover). So in
per-call mode every instance touches the checkpoints of the calls it serves every :data:`TOUCH_EVERY`
seconds (one transaction), and looks for checkpoints nobody touched for :data:`ORPHAN_AFTER` seconds:
their owner is gone (an instance restarted under the same name does not touch its predecessor's). It takes such a checkpoint over with the same
compare-and-set a resume uses (of all instances sweeping, exactly one wins), deletes it and writes the
call's one record (``outcome: error``, the reason naming the instance that stopped), with what the
checkpoint knew of the call (its path, transcript, variables, DTMF, start).

After a database outage every checkpoint looks old; an instance sweeps only once the database has
answered its touches for :data:`ORPHAN_AFTER` seconds, so the live owners have touched theirs by then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ivr.call.report import CallReport
from ivr.call.resume import CheckpointStore, Claim, carry_report
from ivr.ops.records.model import Checkpoint, RecordsError

log = logging.getLogger("ivr.call")

TOUCH_EVERY = 10.0
ORPHAN_AFTER = 60.0
"""A live instance touches its checkpoints six times in this while; a stalled loop never gets near it."""


class SweptStore(CheckpointStore, Protocol):
    async def touch_checkpoints(self, call_ids: list[str]) -> None: ...

    async def stale_checkpoints(self, before: float, limit: int = 100) -> list[Checkpoint]: ...

    async def discard_checkpoint(self, call_id: str) -> None: ...

    async def record(
        self,
        report: CallReport,
        *,
        caller: str | None = None,
        linkedid: str | None = None,
        direction: str | None = None,
    ) -> object: ...


@dataclass
class OrphanSweeper:
    store: SweptStore
    serving: Callable[[], Iterable[str]]
    """The ids of the calls this process (or instance) serves now."""
    touch_every: float = TOUCH_EVERY
    orphan_after: float = ORPHAN_AFTER
    clock: Callable[[], float] = time.time
    closed: int = 0
    """Orphaned calls this instance has recorded."""
    _reachable_since: float | None = field(default=None, repr=False)

    async def run(self) -> None:
        """Touch and sweep until cancelled."""
        while True:
            await self.once()
            await asyncio.sleep(self.touch_every)

    async def once(self) -> int:
        """One touch, then (when the database has answered long enough) one sweep; calls recorded."""
        now = self.clock()
        try:
            await self.store.touch_checkpoints(list(self.serving()))
        except RecordsError as exc:
            log.debug("checkpoints not touched (the database is unreachable): %s", exc)
            self._reachable_since = None
            return 0
        if self._reachable_since is None:
            self._reachable_since = now
        if now - self._reachable_since < self.orphan_after:
            return 0
        try:
            stale = await self.store.stale_checkpoints(now - self.orphan_after)
        except RecordsError as exc:
            log.debug("stale checkpoints not read: %s", exc)
            return 0
        closed = 0
        for checkpoint in stale:
            closed += await self._close(checkpoint)
        return closed

    async def _close(self, checkpoint: Checkpoint) -> int:
        try:
            taken = await self.store.resume_checkpoint(checkpoint)
            if taken is None:
                return 0  # another instance swept or resumed it first
            await self.store.discard_checkpoint(taken.call_id)
            report = orphan_report(checkpoint)
            await self.store.record(
                report, caller=report.caller or None, linkedid=report.linkedid, direction=report.direction
            )
        except RecordsError as exc:
            log.warning("call %s: orphaned checkpoint not closed: %s", checkpoint.call_id, exc)
            return 0
        log.warning(
            "call %s: its instance %s stopped and the caller left before another instance took the call; "
            "recorded it",
            checkpoint.call_id,
            checkpoint.instance or "?",
        )
        self.closed += 1
        return 1


def orphan_report(checkpoint: Checkpoint) -> CallReport:
    """The record of a call nobody could finish, from what its checkpoint knew."""
    claim = Claim(checkpoint)
    reason = (
        f"its instance {checkpoint.instance or '?'} stopped during the call and the caller left before "
        "another instance took it over"
    )
    report = CallReport(
        call_id=checkpoint.call_id,
        flow=checkpoint.flow,
        outcome="error",
        reason=reason,
        started_at=checkpoint.updated_at,
        ended_at=checkpoint.updated_at,
        flow_version=checkpoint.flow_version,
        variables=dict(checkpoint.variables),
    )
    carry_report(report, claim.part("report"))
    report.errors.append(reason)
    state: Mapping[str, object] = claim.engine_state or {}
    path, transcript = state.get("path"), state.get("transcript")
    if isinstance(path, list):
        report.path = [f"{p[0]}:{p[1]}" if p[0] != checkpoint.flow else str(p[1]) for p in path]
    if isinstance(transcript, list):
        report.transcript = [(str(t[0]), str(t[1])) for t in transcript]
    return report
