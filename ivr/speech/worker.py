"""The speech worker process: builds the engines a :class:`~ivr.speech.executor.SpeechPool` asked for
and serves its requests (wire: :mod:`ivr.speech.executor`).

Kept apart from the pool so that the child, which builds engines through a
:class:`~ivr.speech.registry.SpeechRegistry`, and the registry, which hands out the pool's remote engines,
do not import each other.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from ivr.ipc import Channel, decode_args
from ivr.media.framing import frame_bytes
from ivr.speech.base import Synthesizer, Transcriber, closing
from ivr.speech.executor import EngineSpec
from ivr.speech.registry import SpeechRegistry


def child_main(fd: int, args: str) -> None:
    """Entry point of a speech worker process (see :func:`ivr.ipc.spawn`): serve on ``fd`` until EOF."""
    specs: tuple[EngineSpec, ...] = decode_args(args)
    asyncio.run(_child_serve(fd, specs))


async def _child_serve(fd: int, specs: Sequence[EngineSpec]) -> None:
    registry = SpeechRegistry()  # the child's own registry, no prompt cache
    channel = await Channel.from_fd(fd)
    tasks: dict[int, asyncio.Task[None]] = {}

    def engine(spec: EngineSpec) -> Transcriber | Synthesizer:
        if spec.kind == "stt":
            return registry.transcriber(spec.engine, model=spec.model, language=spec.language)
        return registry.synthesizer(
            spec.engine, model=spec.model, voice=spec.voice, instructions=spec.instructions
        )

    for spec in specs:  # warm up: models load before the parent counts this child as ready
        load = getattr(engine(spec), "load", None)
        if load is not None:
            await load()
    channel.send(("ready", os.getpid()))

    async def run(message: tuple[Any, ...]) -> None:
        kind, request_id, spec = message[0], message[1], message[2]
        try:
            made = engine(spec)
            if kind == "stt":
                assert isinstance(made, Transcriber)
                pcm, rate, hints, language = message[3:]
                result = await made.transcribe(pcm, rate=rate, hints=hints, language=language)
                channel.send(("done", request_id, result))
            else:
                assert isinstance(made, Synthesizer)
                text, rate, voice, instructions = message[3:]
                batch = bytearray()
                chunk = 5 * frame_bytes(rate)  # 100 ms per message: few messages, first audio early
                async with closing(
                    made.synthesize(text, rate=rate, voice=voice, instructions=instructions)
                ) as frames:
                    async for frame in frames:
                        batch += frame
                        if len(batch) >= chunk:
                            channel.send(("chunk", request_id, bytes(batch)))
                            batch.clear()
                if batch:
                    channel.send(("chunk", request_id, bytes(batch)))
                channel.send(("done", request_id, None))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            channel.send(("error", request_id, f"{type(exc).__name__}: {exc}"))
        finally:
            tasks.pop(request_id, None)

    try:
        while (message := await channel.read()) is not None:
            if message[0] == "cancel":
                task = tasks.get(message[1])
                if task is not None:
                    task.cancel()
            else:
                tasks[message[1]] = asyncio.ensure_future(run(message))
    finally:
        for task in list(tasks.values()):
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        channel.close()
