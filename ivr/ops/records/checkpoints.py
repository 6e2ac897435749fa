"""Checkpoints of live calls: the statements both engines run, and the buffer that coalesces saves.

The runtime may save a checkpoint at every step change. ``save_checkpoint`` only serialises the state
and puts it here (the latest one per call replaces any unwritten older one); the store's background
writer takes everything pending in one transaction as soon as it is free, so the newest state reaches
the database within one commit's time (milliseconds) and a burst of saves costs one write.

Ownership: a checkpoint row belongs to the instance in its ``instance`` column. Saves from any other
instance are ignored (an instance that lost a call to a resume cannot overwrite the new owner's state),
and a resume is a compare-and-set on ``seq``: of two instances resuming the same call at once, exactly
one matches the row it read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

UPSERT_CHECKPOINT = """
    INSERT INTO checkpoints (call_id, channel_id, linkedid, flow, flow_version, step, variables, retries,
                             state, instance, instances, resumes, seq, created_at, updated_at)
    VALUES (%(call_id)s, %(channel_id)s, %(linkedid)s, %(flow)s, %(flow_version)s, %(step)s, %(variables)s,
            %(retries)s, %(state)s, %(instance)s, %(instances)s, 0, 1, %(now)s, %(now)s)
    ON CONFLICT (call_id) DO UPDATE SET
        channel_id = excluded.channel_id, linkedid = excluded.linkedid, flow = excluded.flow,
        flow_version = excluded.flow_version, step = excluded.step, variables = excluded.variables,
        retries = excluded.retries, state = excluded.state, seq = checkpoints.seq + 1,
        updated_at = excluded.updated_at
    WHERE checkpoints.instance = excluded.instance
"""

RESUME_CHECKPOINT = """
    UPDATE checkpoints SET instance = %(instance)s, instances = %(instances)s, resumes = resumes + 1,
                           seq = seq + 1, updated_at = %(now)s
    WHERE call_id = %(call_id)s AND seq = %(seq)s AND instance = %(owner)s
"""

DELETE_CHECKPOINT = "DELETE FROM checkpoints WHERE call_id = %(call_id)s"

TOUCH_CHECKPOINT = """
    UPDATE checkpoints SET updated_at = %(now)s WHERE call_id = %(call_id)s AND instance = %(instance)s
"""
"""A process says it still serves a call (its checkpoint is no orphan); ``seq`` stays, so a resume that
read the row before the touch still succeeds. Per call, not per instance: an instance restarted under
the same name must not keep its dead predecessor's calls alive."""

PRUNE_CHECKPOINTS = "DELETE FROM checkpoints WHERE updated_at < %(before)s"

CHECKPOINT_TTL_S = 86400.0
"""Checkpoints not updated for a day are deleted when a store opens: calls end long before (the
``max_call_seconds`` default is an hour), so such a row is a call nobody resumed."""


class CheckpointBuffer:
    """The latest unwritten checkpoint of each call (filled on the event loop, drained by the writer).

    One flush at a time: :meth:`take` hands the writer everything pending, which then ends the flush
    with :meth:`written` or, when the write failed, :meth:`restore`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, Any]] = {}
        self._in_flight: set[str] = set()
        self._ended: set[str] = set()
        self._scheduled = False

    def put(self, snapshot: dict[str, Any]) -> bool:
        """Keep ``snapshot`` (replacing an older one of its call); True when a flush must be scheduled."""
        with self._lock:
            self._pending[snapshot["call_id"]] = snapshot
            if self._scheduled:
                return False
            self._scheduled = True
            return True

    def take(self) -> list[dict[str, Any]]:
        """Everything pending; the next :meth:`put` schedules a new flush."""
        with self._lock:
            items = list(self._pending.values())
            self._pending.clear()
            self._in_flight = {item["call_id"] for item in items}
            self._ended.clear()
            self._scheduled = False
            return items

    def drop(self, call_id: str) -> None:
        """The call ended: forget its unwritten checkpoint, and do not let a failed flush restore it."""
        with self._lock:
            self._pending.pop(call_id, None)
            if call_id in self._in_flight:
                self._ended.add(call_id)

    def written(self) -> None:
        with self._lock:
            self._in_flight.clear()
            self._ended.clear()

    def restore(self, items: Iterable[dict[str, Any]]) -> None:
        """Put back what a failed flush took, unless a newer save or the call's end came meanwhile."""
        with self._lock:
            for snapshot in items:
                call_id = snapshot["call_id"]
                if call_id not in self._ended:
                    self._pending.setdefault(call_id, snapshot)
            self._in_flight.clear()
            self._ended.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
