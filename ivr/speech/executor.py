"""Speech inference in worker processes, behind the same ``Transcriber`` / ``Synthesizer`` interfaces.

Offline engines (whisper, piper) burn CPU for hundreds of milliseconds per request and hold the GIL for
part of it: run in the process that paces audio, they make every live call's frames late. A
:class:`SpeechPool` owns a few child processes that load those engines at startup and serve requests over
a Unix socket pair each; :class:`RemoteTranscriber` and :class:`RemoteSynthesizer` forward to it, so the
runtime cannot tell an in-process engine from a remote one. Synthesised audio streams back in chunks as the
child produces it (the first sentence plays while the next is made); closing the stream early (barge-in)
cancels the request in the child.

Wire: :mod:`ivr.ipc` messages, one per event:

==========  ============================================  ==================================
direction   message                                       meaning
==========  ============================================  ==================================
to child    ``("stt", id, spec, pcm, rate, hints, lang)``  transcribe one utterance
to child    ``("tts", id, spec, text, rate, voice, ins)``  synthesise, stream the audio
to child    ``("cancel", id)``                             stop that request (barge-in)
to parent   ``("ready", pid)``                             engines loaded, taking requests
to parent   ``("chunk", id, pcm)``                         audio of a ``tts`` request
to parent   ``("done", id, result)``                       end of a request (a ``Transcript``)
to parent   ``("error", id, message)``                     the request failed
==========  ============================================  ==================================

The child side is :mod:`ivr.speech.worker`. A child that dies fails its requests in flight with a :class:`ProviderError` (the flow's error path) and is
replaced; the children exit by themselves when the parent goes away (their socket reaches EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ivr.ipc import Channel, spawn
from ivr.media.framing import BytesLike, frame_bytes
from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity
from ivr.speech.errors import ProviderError

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0
"""Spawning a child and loading its models (whisper + piper: a few seconds; slow disks: more)."""


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Which engine a child builds (through its own :class:`~ivr.speech.registry.SpeechRegistry`)."""

    kind: Literal["stt", "tts"]
    engine: str
    model: str | None = None
    voice: str | None = None
    language: str | None = None
    instructions: str | None = None


# -- the parent ------------------------------------------------------------------------------------


class _Request:
    __slots__ = ("chunks", "result")

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.result: Any = None


class _Child:
    """One speech worker process and its channel, owned by a :class:`SpeechPool`."""

    def __init__(self, pool: SpeechPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.requests: dict[int, _Request] = {}
        self.ready = asyncio.Event()
        self.reader_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process, self.channel = await spawn(
            "ivr.speech.worker:child_main", tuple(self.pool.specs), name=f"ivr-speech-{self.index}"
        )
        try:
            first = await asyncio.wait_for(self.channel.read(), START_TIMEOUT)
        except TimeoutError:
            first = None
        if first is None or first[0] != "ready":
            await self.stop()
            code_ = self.process.returncode
            raise ProviderError(
                f"speech worker {self.index} failed to start (exit code {code_})", engine="offline"
            )
        self.ready.set()
        self.reader_task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.channel is not None
        while (message := await self.channel.read()) is not None:
            kind, request_id = message[0], message[1]
            request = self.requests.get(request_id)
            if request is None:
                continue  # cancelled meanwhile
            if kind == "chunk":
                request.chunks.put_nowait(("chunk", message[2]))
            elif kind == "done":
                request.result = message[2]
                request.chunks.put_nowait(("done", None))
            elif kind == "error":
                request.chunks.put_nowait(("error", message[2]))
        # EOF: the child is gone.
        self.ready.clear()
        code = await self.process.wait() if self.process is not None else None
        for request in self.requests.values():
            request.chunks.put_nowait(("error", f"speech worker process exited (code {code})"))
        self.requests.clear()
        self.pool._child_died(self, code)

    def submit(self, request_id: int, message: tuple[Any, ...]) -> _Request:
        assert self.channel is not None
        request = _Request()
        self.requests[request_id] = request
        self.channel.send(message)
        return request

    def cancel(self, request_id: int) -> None:
        if self.requests.pop(request_id, None) is not None and self.channel is not None:
            self.channel.send(("cancel", request_id))

    async def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()  # the child sees EOF and exits
        task, self.reader_task = self.reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        process = self.process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()


class SpeechPool:
    """Owns ``processes`` speech workers that each serve every engine in ``specs``."""

    def __init__(self, specs: Sequence[EngineSpec], *, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError("a speech pool needs at least one process")
        self.specs = tuple(dict.fromkeys(specs))
        self.size = processes
        self._children: list[_Child] = []
        self._ids = itertools.count(1)
        self._next = 0
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()
        self.restarts = 0

    async def start(self) -> None:
        """Spawn every worker and wait until each has loaded its models (before the app says ready)."""
        self._children = [_Child(self, i) for i in range(self.size)]
        await asyncio.gather(*(child.start() for child in self._children))
        log.info(
            "speech workers: %d process(es) serving %s",
            self.size,
            ", ".join(f"{s.kind}:{s.engine}" for s in self.specs),
        )

    def _pick(self) -> _Child:
        alive = [c for c in self._children if c.ready.is_set()]
        if not alive:
            raise ProviderError("no speech worker process is running", engine="offline")
        child = min(alive, key=lambda c: (len(c.requests), (c.index - self._next) % len(self._children)))
        self._next = (child.index + 1) % len(self._children)
        return child

    def _child_died(self, child: _Child, code: int | None) -> None:
        if self._closing:
            return
        log.warning("speech worker %d exited (code %s); starting a new one", child.index, code)
        self.restarts += 1
        task = asyncio.ensure_future(self._restart(child.index))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, index: int) -> None:
        child = _Child(self, index)
        self._children[index] = child
        try:
            await child.start()
        except (ProviderError, OSError, TimeoutError) as exc:
            log.error("speech worker %d could not be restarted: %s", index, exc)

    @property
    def pids(self) -> list[int]:
        return [c.process.pid for c in self._children if c.process is not None]

    async def transcribe(
        self, spec: EngineSpec, pcm: BytesLike, *, rate: int, hints: Sequence[str], language: str | None
    ) -> Transcript:
        request_id = next(self._ids)
        child = self._pick()
        request = child.submit(
            request_id, ("stt", request_id, spec, bytes(pcm), rate, tuple(hints), language)
        )
        answered = False
        try:
            kind, value = await request.chunks.get()
            answered = True
        finally:
            if answered:
                child.requests.pop(request_id, None)
            else:  # cancelled (a words check made moot, a hangup): a request still queued never runs
                child.cancel(request_id)
        if kind == "error":
            raise ProviderError(f"offline transcription failed: {value}", engine=spec.engine)
        result: Transcript = request.result
        return result

    async def synthesize(
        self, spec: EngineSpec, text: str, *, rate: int, voice: str | None, instructions: str | None
    ) -> AsyncGenerator[bytes, None]:
        request_id = next(self._ids)
        child = self._pick()
        request = child.submit(request_id, ("tts", request_id, spec, text, rate, voice, instructions))
        finished = False
        try:
            while True:
                kind, value = await request.chunks.get()
                if kind == "done":
                    finished = True
                    return
                if kind == "error":
                    finished = True
                    raise ProviderError(f"offline synthesis failed: {value}", engine=spec.engine)
                yield value
        finally:
            if finished:
                child.requests.pop(request_id, None)
            else:
                child.cancel(request_id)  # closed early: barge-in, hangup

    async def aclose(self) -> None:
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self._children), return_exceptions=True)


class RemoteTranscriber(Transcriber):
    """A transcriber whose inference runs in a :class:`SpeechPool` worker."""

    def __init__(self, pool: SpeechPool, spec: EngineSpec, *, engine: str) -> None:
        self.pool = pool
        self.spec = spec
        self.engine = engine

    async def transcribe(
        self, pcm: BytesLike, *, rate: int, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        return await self.pool.transcribe(self.spec, pcm, rate=rate, hints=hints, language=language)


class RemoteSynthesizer(Synthesizer):
    """A synthesizer whose inference runs in a :class:`SpeechPool` worker.

    ``local`` is the same engine built in this process but never used to synthesise: it answers
    :meth:`identity` (the prompt-cache key), which needs no model.
    """

    def __init__(self, pool: SpeechPool, spec: EngineSpec, local: Synthesizer) -> None:
        self.pool = pool
        self.spec = spec
        self.local = local
        self.engine = local.engine

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return self.local.identity(voice=voice, instructions=instructions)

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        size = frame_bytes(rate)
        rest = b""
        async with contextlib.aclosing(
            self.pool.synthesize(self.spec, text, rate=rate, voice=voice, instructions=instructions)
        ) as chunks:
            async for chunk in chunks:
                data = rest + chunk if rest else chunk
                end = len(data) - len(data) % size
                view = memoryview(data)
                for i in range(0, end, size):
                    yield bytes(view[i : i + size])
                rest = data[end:]
        if rest:
            yield rest
