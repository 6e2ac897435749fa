"""One call worker process: the assembled serving process, seated under a supervisor.

Started by :class:`ivr.workers.pool.WorkerPool` with only its index on the command line; its settings
(secrets included) arrive as the first message. It then runs :func:`ivr.workers.process.serve` with a
:class:`WorkerSeat`, which relays the supervisor's ARI events into the app's dispatcher, answers metrics
requests, and tells the supervisor when it is ready and which calls start and end
(:mod:`ivr.workers.protocol` lists the messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from ivr.ari.models import parse_event
from ivr.call.ari_app import AriApp
from ivr.config import Settings
from ivr.ipc import Channel, decode_args
from ivr.logs import setup_logging
from ivr.ops.metrics import Metrics
from ivr.workers.process import StartupError, serve
from ivr.workers.protocol import WorkerConfig

log = logging.getLogger("ivr.worker")


class WorkerSeat:
    """What :func:`~ivr.workers.process.serve` needs to know about running as worker ``index``."""

    def __init__(self, channel: Channel, config: WorkerConfig) -> None:
        self.channel = channel
        self.config = config
        self.index = config.index
        self.ari_connected = config.mode == "ari"
        """The supervisor's events socket is up (it was, when this worker was started)."""
        self._app: AriApp | None = None
        self._metrics: Metrics | None = None
        self._stop: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        self._hooks: set[asyncio.Task[None]] = set()

    @property
    def metrics_instance(self) -> str | None:
        return self.config.metrics_instance

    @property
    def reuse_port(self) -> bool:
        return self.config.mode == "dialplan"

    def audiosocket_port(self, settings: Settings, base: int) -> int:
        if self.config.mode == "dialplan" or base == 0:
            return base  # dialplan-only: one shared port (SO_REUSEPORT); port 0: any free port each
        return base + self.index  # ARI mode: Asterisk must reach the worker that asked for the media

    async def attach(self, app: AriApp | None, metrics: Metrics) -> None:
        self._app, self._metrics = app, metrics
        self._reader = asyncio.ensure_future(self._read())

    def announce_ready(self, info: dict[str, Any]) -> None:
        self.channel.send(("ready", info))

    def call_started(self, call_id: str) -> None:
        self.channel.send(("call", call_id))

    def call_released(self, call_id: str) -> None:
        self.channel.send(("released", call_id))

    async def wait(self) -> int:
        return await asyncio.shield(self._stop)

    async def close(self) -> None:
        for task in [self._reader, *self._hooks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in [self._reader, *self._hooks] if t is not None), return_exceptions=True
        )

    def _finish(self, code: int) -> None:
        if not self._stop.done():
            self._stop.set_result(code)

    async def _read(self) -> None:
        while (message := await self.channel.read()) is not None:
            kind = message[0]
            if kind == "event":
                if self._app is not None:
                    self._app.dispatcher.dispatch(parse_event(message[1]))
            elif kind == "ari":
                connected, reconnected = message[1], message[2]
                self.ari_connected = connected
                if connected and reconnected and self._app is not None:
                    hook = asyncio.ensure_future(self._app.reconnected())
                    self._hooks.add(hook)
                    hook.add_done_callback(self._hooks.discard)
            elif kind == "metrics":
                text = self._metrics.exposition()[0].decode() if self._metrics is not None else ""
                self.channel.send(("metrics", message[1], text))
            elif kind in ("drain", "stop"):
                self._finish(0)
        log.info("worker %d: the supervisor is gone; stopping", self.index)
        self._finish(0)


def main(fd: int, args: str) -> None:
    """Entry point of a call worker (see :func:`ivr.ipc.spawn`)."""
    index: int = decode_args(args)
    # Ctrl-C in a terminal signals the whole process group: the supervisor decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        code = runner.run(_serve(fd, index))
    sys.exit(code)


async def _serve(fd: int, index: int) -> int:
    channel = await Channel.from_fd(fd)
    first = await channel.read()
    if first is None or first[0] != "config":
        return 2
    config: WorkerConfig = first[1]
    setup_logging(config.log_level, json_lines=config.log_json, process=f"worker {index}")
    seat = WorkerSeat(channel, config)
    serving = asyncio.ensure_future(serve(config.settings, no_ari=config.mode == "dialplan", seat=seat))
    try:
        return await serving
    except StartupError as exc:
        channel.send(("failed", str(exc)))
        log.error("worker %d: %s", index, exc)
        return 2
    finally:
        await seat.close()
        with contextlib.suppress(Exception):
            await channel.drain()
        channel.close()
