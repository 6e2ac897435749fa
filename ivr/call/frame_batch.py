"""How a call takes in its caller's frames: one :class:`~ivr.media.batch.LevelBatch` per event loop,
shared by every call the loop runs, and each call's :class:`FrameIntake` in front of it.

A frame whose level nobody measured yet goes to the loop's batch from the socket callback; the batch
measures the frames of all calls that arrived in one loop iteration in one numpy step (``loop.call_soon``
once per batch, never per frame) and then feeds each call's endpointer. A frame the transport measured
already (AudioSocket's native reading thread) goes straight to the endpointer. The batch is looked up once
per call, not per frame.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from ivr.media.batch import LevelBatch, LevelSink, Schedule
from ivr.media.framing import Framer

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


class FrameIntake:
    """One call's caller audio, to its ``on_frame(frame, level)`` in 20 ms frames, in arrival order.

    :meth:`audio` (the transport's plain sink) measures through the loop's batch, cutting or gathering
    payloads of any other size into 20 ms; :meth:`measured` (the transport's measured sink) delivers at
    once. The first measured frame after batched ones flushes the batch first, so frames of the call that
    were still waiting in it (read before the native thread took the socket over, or queued before the
    call listened) are not overtaken.
    """

    __slots__ = ("_batched", "_framer", "_levels", "_on_frame", "_size", "direct")

    def __init__(self, frame_bytes: int, on_frame: LevelSink, levels: LevelBatch | None = None) -> None:
        self._size = frame_bytes
        self._on_frame = on_frame
        self._framer = Framer(frame_bytes)
        self._levels = levels if levels is not None else loop_batch()
        self._batched = False
        self.direct: LevelSink = on_frame
        """Where :meth:`measured` hands a 20 ms frame when nothing waits in the batch: ``on_frame``, or
        (set by the owner while it is the same as ``on_frame`` would do) the consumer behind it, which
        saves a call on nearly every frame. The batch always goes to ``on_frame``."""

    def audio(self, payload: bytes) -> None:
        self._batched = True
        if len(payload) == self._size:
            self._levels.add(self._on_frame, payload)
        else:  # Asterisk sends 20 ms; anything else is cut (or gathered) into 20 ms frames
            for frame in self._framer.push(payload):
                self._levels.add(self._on_frame, bytes(frame))

    def measured(self, payload: bytes, level: float) -> None:
        if self._batched:
            self._batched = False
            self._levels.flush()
        if len(payload) == self._size:
            self.direct(payload, level)
        else:
            self.audio(payload)
