"""One :class:`~ivr.media.batch.LevelBatch` per event loop, shared by every call the loop runs.

The call runtime hands each caller frame to its loop's batch from the socket callback; the batch measures
the frames of all calls that arrived in one loop iteration in one numpy step (``loop.call_soon`` once per
batch, never per frame) and then feeds each call's endpointer. Looked up once per call, not per frame.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from ivr.media.batch import LevelBatch, Schedule

_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LevelBatch] = weakref.WeakKeyDictionary()


def loop_batch(loop: asyncio.AbstractEventLoop | None = None) -> LevelBatch:
    """The batch of ``loop`` (default: the running loop), created on first use."""
    loop = loop or asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = LevelBatch(_scheduler(weakref.ref(loop)))
    return batch


def _scheduler(ref: weakref.ref[asyncio.AbstractEventLoop]) -> Schedule:
    """``call_soon`` of the loop behind ``ref``, holding it weakly (the batch must not keep it alive)."""

    def schedule(callback: Callable[[], None]) -> object:
        loop = ref()
        return None if loop is None or loop.is_closed() else loop.call_soon(callback)

    return schedule
