"""``ivr run --workers N``: N call workers under one supervisor, every core pacing its own calls.

The supervisor holds what exists once per instance and runs no call itself:

* ARI mode: the events WebSocket (Asterisk allows one per app). Each caller's ``StasisStart`` goes to the
  least-loaded worker, which does that call's REST and media from then on; every later event of the call
  follows it (:class:`~ivr.workers.routing.CallRouter`). Each worker listens for AudioSocket on its own
  port (the base port + its index), so the media Asterisk opens reaches the worker that asked for it.
* Per-call ARI mode (``IVR_ARI_MODE=per_call``): nothing to hold or route. Every worker runs its own
  per-call server on the one per-call port (``SO_REUSEPORT``): the kernel hands each of Asterisk's
  per-call sockets to one worker, which serves that call. The supervisor opens no connection to
  Asterisk at all.
* Dialplan-only mode: nothing to route; the workers share the AudioSocket port (``SO_REUSEPORT``) and
  the kernel spreads connections over them.
* ``/metrics`` (every worker's metrics summed, plus the supervisor's own), ``/healthz``, ``/readyz``.
* Worker deaths: a worker that exits is restarted (:class:`~ivr.workers.pool.WorkerPool`); the calls it
  had announced and not finished get a record here (``outcome: error``), and in ARI mode their callers
  are hung up and the worker's media channels and bridges deleted, so nothing is left in Asterisk. In
  per-call mode the dead worker's sockets drop instead, Asterisk reopens each on a live worker (or
  another instance) and that one resumes the call from its checkpoint; only a call nobody resumed within
  a few seconds gets its record here.
* SIGTERM: ``/readyz`` turns 503, new callers get congestion, every worker drains its calls within the
  grace period, then everything stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from ivr.ari.client import AriClient
from ivr.ari.errors import ApplicationReplacedError, AriError, NotFound
from ivr.ari.events import EventStream
from ivr.ari.models import ChannelDestroyed, Event, StasisStart
from ivr.call.ari_app import ORIGINATE_PREFIX
from ivr.call.report import CallReport
from ivr.call.resume import HANDOVER_WAIT
from ivr.config import Settings
from ivr.ipc import Message
from ivr.ops.health import HealthServer
from ivr.ops.looplag import LoopMonitor
from ivr.ops.metrics import Metrics
from ivr.ops.records import Checkpoint, RecordsError
from ivr.ops.records.model import default_instance_id
from ivr.workers.errors import StartupError
from ivr.workers.media import check_media_settings, websocket_media_usable
from ivr.workers.metrics import MergedExposition
from ivr.workers.percall import sweep_orphans
from ivr.workers.pool import WorkerPool
from ivr.workers.protocol import Mode, WorkerConfig
from ivr.workers.routing import CallRouter, worker_tag
from ivr.workers.startup import (
    check_ari,
    check_dialplan_mode,
    load_catalog,
    open_records,
    stop_on_signals,
)

log = logging.getLogger("ivr.supervisor")

METRICS_TIMEOUT = 1.0
"""How long a scrape waits for each worker's metrics (a stalled worker must not stall the scrape)."""
DRAIN_MARGIN = 15.0
"""After the grace period: time for goodbyes and teardown before workers are stopped for good."""

ReadyHook = Callable[[dict[str, Any]], Awaitable[None] | None]


def ari_share(total: int, processes: int) -> int:
    """Each process's part of the instance's REST connections (``IVR_ARI_CONNECTIONS``): at least two,
    since the supervisor's events socket holds one of its own for as long as it is open."""
    return max(2, total // max(1, processes))


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        workers: int,
        no_ari: bool = False,
        stop: asyncio.Event | None = None,
        ready: ReadyHook | None = None,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.metrics_instance = settings.instance_id
        """The label of this instance's metrics: only a configured ``IVR_INSTANCE_ID`` (a made-up
        ``host-pid`` would start new series at every restart)."""
        if settings.instance_id is None:  # one instance, however many processes: its records say so
            settings = settings.model_copy(update={"instance_id": default_instance_id()})
        self.settings = settings
        self.size = workers
        self.mode: Mode = "dialplan" if no_ari else "ari"
        self.percall = not no_ari and settings.ari_mode == "per_call"
        """Per-call ARI: Asterisk connects to the workers; the supervisor has no ARI connection."""
        self.stop = stop or asyncio.Event()
        self.ready_hook = ready
        self.log_level = log_level
        self.log_json = log_json
        self.metrics = Metrics(instance=self.metrics_instance)
        self.router = CallRouter(workers)
        self.live: list[set[str]] = [set() for _ in range(workers)]
        """Calls each worker announced and has not released yet."""
        self.pool = WorkerPool(
            workers,
            "ivr.workers.worker:main",
            lambda index: index,
            on_message=self._on_message,
            on_exit=self._on_exit,
            greeting=self._greeting,
        )
        self.ari_share = ari_share(settings.ari_connections, workers + 1)
        """REST connections each process (the workers and this one) keeps to Asterisk at most."""
        self.ari: AriClient | None = None
        self.stream: EventStream | None = None
        self.draining = False
        self._merged = MergedExposition(self.metrics)
        self._requests = itertools.count(1)
        self._scrapes: dict[int, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._records: Any = None

    def _greeting(self, index: int) -> Message:
        settings = self.settings.model_copy(update={"ari_connections": self.ari_share})
        config = WorkerConfig(
            settings, index, self.size, self.mode, self.log_level, self.log_json, self.metrics_instance
        )
        return ("config", config)

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> int:
        catalog = load_catalog(self.settings)  # fail fast, with the same line a worker would print
        if self.mode == "dialplan":
            if catalog.default is None:
                raise StartupError(
                    "dialplan-only mode runs one flow: set IVR_DEFAULT_FLOW (or --default-flow)"
                )
            check_dialplan_mode(catalog)
        check_media_settings(self.settings, no_ari=self.mode == "dialplan")
        async with contextlib.AsyncExitStack() as stack:
            stop_on_signals(self.stop, stack)
            self._relay_sighup(stack)
            self._records = await open_records(self.settings, stack)
            if self.mode == "ari" and not self.percall:
                s = self.settings
                self.ari = AriClient(
                    s.ari_url, s.ari_user, s.ari_password.get_secret_value(), connections=self.ari_share
                )
                stack.push_async_callback(self.ari.close)
                websocket_media_usable(s, (await check_ari(self.ari, s)).version)  # fail fast, one line
            health = await self._start_health(stack)
            try:
                await self.pool.start()
            except RuntimeError as exc:
                await self.pool.stop(timeout=5)
                raise StartupError(str(exc)) from None
            stack.push_async_callback(self.pool.stop)
            if self.mode == "ari" and not self.percall:
                await self._start_events(stack)
            monitor = LoopMonitor(self.metrics.loop_lag.observe)  # from here on nothing may hold the loop
            monitor.start()
            stack.callback(monitor.stop)
            if self.percall:  # for the whole instance: its workers share its id
                sweep_orphans(self._records, lambda: [c for calls in self.live for c in calls], stack)
            info = {
                "mode": self.mode,
                "workers": [w.info for w in self.pool.workers],
                "metrics": health.url if health is not None else None,
                "pid": os.getpid(),
            }
            log.info(
                "ready: %s mode, %d workers (pids %s)",
                self.mode,
                self.size,
                [w.pid for w in self.pool.workers],
            )
            if self.ready_hook is not None:
                result = self.ready_hook(info)
                if asyncio.iscoroutine(result):
                    await result
            code = await self._wait()
            if health is not None:
                health.drain()
            await self._drain()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.stream is not None:
                await self.stream.close()
            return code

    async def _start_health(self, stack: contextlib.AsyncExitStack) -> HealthServer | None:
        if not self.settings.metrics_listen:
            return None
        health = HealthServer.from_listen(
            self.settings.metrics_listen,
            self._merged,
            ready=self._readiness,
            before_scrape=self._gather_metrics,
        )
        try:
            await health.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen for metrics on {self.settings.metrics_listen}: {exc}"
            ) from None
        stack.push_async_callback(health.close)
        return health

    async def _start_events(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.ari is not None
        self.stream = EventStream(
            self.ari, self.settings.ari_app, self._route, on_connected=self._on_connected
        )
        self.stream.start()
        try:
            await self.stream.wait_connected(10.0)
        except ApplicationReplacedError:
            raise StartupError(f"another process took over the ARI app '{self.settings.ari_app}'") from None
        except (AriError, TimeoutError) as exc:
            raise StartupError(f"ARI events WebSocket for '{self.settings.ari_app}': {exc}") from None

    async def _wait(self) -> int:
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.stop.wait())}
        stream_task = self.stream.task if self.stream is not None else None
        if stream_task is not None:
            waiters.add(stream_task)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not stream_task:
                    waiter.cancel()
        if stream_task is not None and stream_task.done() and not self.stop.is_set():
            exc = stream_task.exception() if not stream_task.cancelled() else None
            if isinstance(exc, ApplicationReplacedError):
                log.error(
                    "another process took over the ARI app '%s'; stopping (not fighting over it)", exc.app
                )
            else:
                log.error("the ARI events stream stopped: %s", exc)
            return 1
        log.info("stopping")
        return 0

    async def _drain(self) -> None:
        """Take no new call; let every worker finish its calls within the grace period; then stop."""
        self.draining = True
        for index in range(self.size):
            self.router.set_available(index, False)
        grace = self.settings.shutdown_grace_seconds
        self.pool.broadcast(("drain", grace, self.settings.shutdown_goodbye))
        processes = [w.process for w in self.pool.workers if w.process is not None]
        for worker in self.pool.workers:
            worker.expected_exit = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace + DRAIN_MARGIN):
                await asyncio.gather(*(p.wait() for p in processes if p.returncode is None))

    def _relay_sighup(self, stack: contextlib.AsyncExitStack) -> None:
        """SIGHUP reloads the flows: every worker reloads its own (calls finish on their version)."""

        def relay() -> None:
            for worker in self.pool.workers:
                if (
                    worker.pid is not None
                    and worker.process is not None
                    and worker.process.returncode is None
                ):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGHUP)

        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, relay)
            stack.callback(loop.remove_signal_handler, signal.SIGHUP)

    def _readiness(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        if not any(w.ready.is_set() for w in self.pool.workers):
            return False, "no worker is ready"
        if (
            self.mode == "ari"
            and not self.percall
            and not (self.stream is not None and self.stream.connected)
        ):
            return False, "ARI disconnected"
        return True, f"{sum(w.ready.is_set() for w in self.pool.workers)} of {self.size} workers ready"

    # -- events (ARI mode) -----------------------------------------------------------------------

    def _route(self, event: Event) -> None:
        route = self.router.route(event)
        worker = route.worker
        if worker is None:
            if isinstance(event, StasisStart) and self.router.is_caller(event):
                self._spawn(self._congestion(event.channel.id, "no worker can take the call"))
            elif isinstance(event, ChannelDestroyed) and event.channel.id.startswith(ORIGINATE_PREFIX):
                self._send_any(("event", event.raw))  # an unanswered `ivr originate`: a worker records it
            return
        if not self.pool.send(worker, ("event", event.raw)) and route.new_call:
            self.router.release(event.channel_ids[0])  # its worker is restarting: the caller gets congestion
            self._spawn(self._congestion(event.channel_ids[0], f"worker {worker} is restarting"))

    def _send_any(self, message: Message) -> None:
        for worker in self.pool.workers:
            if worker.send(message):
                return

    async def _on_connected(self, reconnected: bool) -> None:
        if reconnected:
            self.metrics.ari_reconnected()
        self.pool.broadcast(("ari", True, reconnected))

    async def _congestion(self, channel_id: str, reason: str) -> None:
        log.warning("call %s: refused with congestion: %s", channel_id, reason)
        if self.ari is not None:
            with contextlib.suppress(AriError):
                await self.ari.hangup(channel_id, reason="congestion")

    # -- workers ---------------------------------------------------------------------------------

    def _on_message(self, index: int, message: Message) -> None:
        kind = message[0]
        if kind == "ready":
            self.router.set_available(index, not self.draining)
            if self.draining:  # restarted during the drain (it missed the broadcast): no calls, it stops
                self.pool.send(index, ("drain", 0.0, None))
        elif kind == "call":
            self.live[index].add(message[1])
        elif kind == "released":
            self.live[index].discard(message[1])
            self.router.release(message[1])
        elif kind == "metrics":
            future = self._scrapes.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == "failed":
            log.error("worker %d did not start: %s", index, message[1])

    async def _on_exit(self, index: int, code: int | None) -> None:
        """A worker died: its calls get their one record here, and nothing of theirs stays in Asterisk."""
        self.router.set_available(index, False)
        lost = set(self.live[index]) | set(self.router.lose(index))
        self.live[index].clear()
        if lost and self.percall:
            log.error(
                "worker %d exited with code %s during %d call(s): Asterisk reopens their sockets, "
                "another worker resumes them",
                index,
                code,
                len(lost),
            )
            for call_id in sorted(lost):
                self._spawn(
                    self._settle_resumable(call_id, f"worker {index} exited (code {code}) during the call")
                )
            return
        if lost:
            log.error(
                "worker %d exited with code %s during %d call(s): settling them", index, code, len(lost)
            )
        for call_id in sorted(lost):
            await self._record_lost(call_id, f"worker {index} exited (code {code}) during the call")
            if self.ari is not None:
                with contextlib.suppress(AriError):
                    await self.ari.hangup(call_id)
        if self.ari is not None:
            await self._clean_leftovers(index)

    async def _settle_resumable(self, call_id: str, reason: str) -> None:
        """Per-call mode: a dead worker's call gets its record here only if nobody resumed it."""
        seen = await self._checkpoint(call_id)
        await asyncio.sleep(HANDOVER_WAIT)
        now = await self._checkpoint(call_id)
        if now is not None and (seen is None or now.seq != seen.seq):
            return  # someone drives the call (and saves its steps): its record comes from there
        with contextlib.suppress(RecordsError):
            if now is None and await self._records.get(call_id) is not None:
                return  # resumed, finished and recorded
        log.warning("call %s: nobody resumed it after its worker died", call_id)
        await self._record_lost(call_id, f"{reason}; nobody resumed it")

    async def _checkpoint(self, call_id: str) -> Checkpoint | None:
        try:
            found: Checkpoint | None = await self._records.load_checkpoint(call_id)
        except RecordsError:
            return None
        return found

    async def _record_lost(self, call_id: str, reason: str) -> None:
        report = CallReport(call_id=call_id, flow="", outcome="error", reason=reason, ended_at=0.0)
        report.errors.append(reason)
        self.metrics.call_ended("error", None, started=False)
        try:
            if await self._records.get(call_id) is not None:
                return  # the worker wrote the call's record before it died: it stands
            report.ended_at = report.started_at
            await self._records.record(report)
        except RecordsError as exc:
            log.error("call %s: not recorded: %s", call_id, exc)

    async def _clean_leftovers(self, index: int) -> None:
        """Delete the dead worker's media channels and bridges (their ids carry its tag)."""
        assert self.ari is not None
        tag = worker_tag(index)
        try:
            channels = await self.ari.list_channels()
            bridges = await self.ari.list_bridges()
        except AriError as exc:
            log.warning("worker %d: could not list its leftovers in Asterisk: %s", index, exc)
            return
        for channel in channels:
            if channel.id.startswith(tag):
                with contextlib.suppress(NotFound, AriError):
                    await self.ari.hangup(channel.id)
        for bridge in bridges:
            if bridge.id.startswith(tag):
                with contextlib.suppress(NotFound, AriError):
                    await self.ari.destroy_bridge(bridge.id)

    # -- metrics ---------------------------------------------------------------------------------

    async def _gather_metrics(self) -> None:
        waiting: list[asyncio.Future[str]] = []
        loop = asyncio.get_running_loop()
        for worker in self.pool.workers:
            request = next(self._requests)
            future: asyncio.Future[str] = loop.create_future()
            if worker.send(("metrics", request)):
                self._scrapes[request] = future
                waiting.append(future)
        done, pending = await asyncio.wait(waiting, timeout=METRICS_TIMEOUT) if waiting else (set(), set())
        for future in pending:
            future.cancel()
        self._scrapes = {k: f for k, f in self._scrapes.items() if not f.done()}
        self._merged.update([f.result() for f in done if not f.cancelled()])

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
