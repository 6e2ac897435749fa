"""Assembling one serving process: the composition root of ``ivr run``.

The same assembly serves a whole instance in one process (``--workers 0``, tests, the simulator's
siblings) and each call worker under a supervisor (:mod:`ivr.workers.worker`): settings in, a running
process out. Startup checks everything before taking a call and fails with one :class:`StartupError`
line, never a traceback: bad settings, flow errors (file:line), a port in use, an unreachable Asterisk, a
wrong ARI password.

What differs for a worker is passed in as a :class:`Seat`: where its events come from (the supervisor
relays them; it never opens its own events socket, which Asterisk allows once per app), which ARI ids it
creates (its tag, so the supervisor routes their events by name), which AudioSocket port it listens on,
and how it reports readiness, calls and metrics.

ARI comes in two modes (``IVR_ARI_MODE``): ``persistent``, where this process opens the app's events
socket and REST goes over HTTP, and ``per_call``, where Asterisk opens one WebSocket per call to this
process's :class:`~ivr.ari.percall_server.PerCallServer` and the call's REST goes over it (no HTTP to
Asterisk at all; any number of instances behind a load balancer). Under a supervisor every worker runs
its own per-call server on the one per-call port (``SO_REUSEPORT``: the kernel spreads the sockets),
so a worker that dies drops only its own calls' sockets, which Asterisk reopens on another worker.

The checks and resources it shares with the supervisor (flows, ARI, records, turn models, stop signals)
live in :mod:`ivr.workers.startup`; this module keeps the assembly itself and the :class:`Seat`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ivr.ari.client import AriClient
from ivr.ari.errors import ApplicationReplacedError, AriError
from ivr.ari.percall_server import PerCallServer
from ivr.audiosocket.memory import release_free_memory
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import install_reload
from ivr.call.lifecycle import ReportSink
from ivr.call.report import CallReport
from ivr.call.services import CallServices
from ivr.call.speech import registry_factory
from ivr.config import Settings, parse_hostport
from ivr.flow.llm_matcher import LlmMatcher
from ivr.flow.webhook import WebhookClient
from ivr.ops.health import HealthServer
from ivr.ops.looplag import LoopMonitor
from ivr.ops.metrics import Metrics
from ivr.ops.records import RecordsError
from ivr.speech.executor import SpeechPool
from ivr.speech.registry import SpeechRegistry
from ivr.workers.errors import StartupError as StartupError  # re-exported: callers import it from here
from ivr.workers.media import (
    check_media_settings,
    open_websocket_client,
    start_websocket_server,
    websocket_media_usable,
    websocket_server_wanted,
)
from ivr.workers.percall import app_config, start_percall, sweep_orphans
from ivr.workers.startup import (
    check_ari,
    check_dialplan_mode,
    load_catalog,
    load_turn_models,
    offloaded_specs,
    open_records,
    speech_uses,
    stop_on_signals,
)

log = logging.getLogger("ivr.run")

ReadyHook = Callable[[dict[str, Any]], Awaitable[None] | None]

SERVING_RECENT_REPORTS = 50
"""Finished calls' reports a serving process keeps in memory (the records have every call)."""

ENGINE_SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the GIL while another waits (CPython's default is 5 ms)."""


class Seat(Protocol):
    """What a call worker gets from its supervisor (None for a process that is the whole instance)."""

    index: int
    """The worker's number: its ARI ids start with ``ivr-w<index>-``."""

    def audiosocket_port(self, settings: Settings, base: int) -> int:
        """The port this worker listens on (ARI mode: its own; dialplan-only: the shared one)."""

    @property
    def reuse_port(self) -> bool: ...

    @property
    def metrics_instance(self) -> str | None:
        """The instance label of this worker's metrics (the supervisor's ``IVR_INSTANCE_ID``)."""

    async def attach(self, app: AriApp | None, metrics: Metrics) -> None:
        """Start relaying the supervisor's events and questions to this process."""

    def announce_ready(self, info: dict[str, Any]) -> None: ...

    def call_started(self, call_id: str) -> None: ...

    def call_released(self, call_id: str) -> None: ...

    async def wait(self) -> int:
        """Until the supervisor asks this worker to stop (or goes away); returns the exit code."""


@dataclass(frozen=True, slots=True)
class ServeOptions:
    no_ari: bool = False
    stop: asyncio.Event | None = None
    ready: ReadyHook | None = None
    on_report: ReportSink | None = None
    seat: Seat | None = None


def _forget_sighup() -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


async def serve(
    settings: Settings,
    *,
    no_ari: bool = False,
    stop: asyncio.Event | None = None,
    ready: ReadyHook | None = None,
    on_report: ReportSink | None = None,
    seat: Seat | None = None,
) -> int:
    """Serve calls until ``stop`` is set (or SIGTERM/SIGINT, or the supervisor says so); the exit code."""
    catalog = load_catalog(settings)
    if no_ari and catalog.default is None:
        raise StartupError("dialplan-only mode runs one flow: set IVR_DEFAULT_FLOW (or --default-flow)")
    if no_ari:
        check_dialplan_mode(catalog)
    check_media_settings(settings, no_ari=no_ari)
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stop_on_signals(stop, stack)
        metrics = Metrics(instance=seat.metrics_instance if seat is not None else settings.instance_id)
        uses = speech_uses(settings, catalog)
        specs = offloaded_specs(uses) if settings.speech_workers > 0 else []
        pool: SpeechPool | None = None
        if specs:
            pool = SpeechPool(specs, processes=settings.speech_workers)
            try:
                await pool.start()
            except Exception as exc:
                await pool.aclose()
                raise StartupError(f"speech workers did not start: {exc}") from None
            stack.push_async_callback(pool.aclose)
        registry = SpeechRegistry(cache_dir=settings.prompt_cache, pool=pool)
        stack.push_async_callback(registry.aclose)
        try:
            await registry.warm_up(uses)  # models, SDK modules, clients: before /readyz says ready
        except Exception as exc:
            raise StartupError(f"speech engines: {exc}") from None
        turns = await load_turn_models(stack)
        classifier = None
        if os.environ.get("OPENAI_API_KEY"):
            classifier = LlmMatcher().classify  # flows with matcher: llm; keywords when it fails
        else:
            log.info("no OPENAI_API_KEY: flows with 'matcher: llm' use the keyword matcher only")
        http = await stack.enter_async_context(aiohttp.ClientSession())
        records = await open_records(settings, stack)
        # Flow hot reload (SIGHUP, or a changed file): calls in progress finish on their version.
        watcher = install_reload(catalog, watch=settings.flows_watch)
        stack.callback(_forget_sighup)
        if watcher is not None:
            stack.callback(watcher.cancel)
        webhook = await stack.enter_async_context(WebhookClient.from_settings(settings))

        async def finished(report: CallReport) -> None:
            try:
                if not report.handed_over:  # else another owner resumed the call and records it
                    await records.record(
                        report, caller=report.caller, linkedid=report.linkedid, direction=report.direction
                    )
            except RecordsError as exc:
                log.error("call %s: not recorded: %s", report.call_id, exc)
            if seat is not None:
                seat.call_released(report.call_id)
            if on_report is not None:
                result = on_report(report)
                if asyncio.iscoroutine(result):
                    await result

        # Flow engines decide on one thread of their own: a template's rendering (bounded to a few ms of
        # work) then holds the GIL in slices of 1 ms at most, while the loop keeps pacing every call.
        engine_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ivr-engine")
        stack.callback(engine_thread.shutdown, wait=True, cancel_futures=True)
        sys.setswitchinterval(ENGINE_SWITCH_INTERVAL)
        services = CallServices(
            flows=catalog,
            speech=registry_factory(registry, default_stt=settings.stt, default_tts=settings.tts),
            http=http,
            webhook=webhook,
            classifier=classifier,
            audio_dir=catalog.directory / "audio",
            max_call_seconds=settings.max_call_seconds,
            on_report=finished,
            metrics=metrics,
            on_start=seat.call_started if seat is not None else None,
            recordings_dir=settings.recordings_dir,
            engine_executor=engine_thread,
            # Resumable calls need a socket Asterisk can reopen elsewhere: per-call mode. (In persistent
            # mode a caller stays in Stasis when the events socket drops; no other instance gets it.)
            checkpoints=records if settings.ari_mode == "per_call" and not no_ari else None,
            turns=turns,
            # every call is in the records; 1000 reports in memory (~5 MB) would keep RSS above idle
            recent_reports=SERVING_RECENT_REPORTS,
        )
        app_ref: list[AriApp] = []
        percall_ref: list[PerCallServer] = []

        def readiness() -> tuple[bool, str]:
            if no_ari:
                return True, "dialplan-only mode"
            if percall_ref:
                listening = percall_ref[0].listening and not percall_ref[0].draining
                return (True, "per-call ARI server listening") if listening else (False, "not listening")
            stream = app_ref[0].stream if app_ref else None
            connected = stream is not None and stream.connected
            return (True, "ARI connected") if connected else (False, "ARI disconnected")

        health: HealthServer | None = None
        if settings.metrics_listen and seat is None:  # a worker's metrics go through its supervisor
            health = HealthServer.from_listen(settings.metrics_listen, metrics, ready=readiness)
            try:
                await health.start()
            except OSError as exc:
                raise StartupError(f"cannot listen for metrics on {settings.metrics_listen}: {exc}") from None
            stack.push_async_callback(health.close)

        dialplan = DialplanApp(services=services, max_calls=settings.max_calls) if no_ari else None
        host, base_port = settings.listen
        port = seat.audiosocket_port(settings, base_port) if seat is not None else base_port
        server = AudioSocketServer(
            AudioSocketConfig(
                host=host,
                port=port,
                max_connections=settings.audiosocket_max_connections,
                max_per_source=settings.per_source_limit,
                reuse_port=seat is not None and seat.reuse_port,
                pacer=settings.pacer,
                pacer_realtime=settings.pacer_realtime,
            ),
            on_session=dialplan.handle if dialplan else None,
            activity=metrics.call_activity,
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen for AudioSocket on {host}:{port}: {exc.strerror or exc}"
            ) from None
        stack.push_async_callback(server.close)
        if server.pacer is not None:
            metrics.watch_pacer(server.pacer.clock_stats)
        # -- media: the WebSocket media server of dialplan-only mode (ARI mode's client: _start_ari) --
        ws_server = None
        if dialplan is not None and websocket_server_wanted(settings):
            reuse = seat is not None and seat.reuse_port
            ws_server = await start_websocket_server(
                settings, stack, dialplan.handle_websocket, reuse_port=reuse
            )
        app: AriApp | None = None
        percall: PerCallServer | None = None
        if not no_ari and settings.ari_mode == "per_call":
            try:
                # No REST before the first call tells the Asterisk version: IVR_MEDIA=websocket is trusted
                websocket = (
                    await open_websocket_client(settings, stack) if settings.media == "websocket" else None
                )
                app, percall = await start_percall(
                    settings,
                    stack,
                    server,
                    services,
                    seat,
                    advertise=_advertise(settings, server, port),
                    websocket=websocket,
                )
            except OSError as exc:
                raise StartupError(
                    f"cannot listen for per-call ARI on {settings.ari_percall_listen}: {exc.strerror or exc}"
                ) from None
            app_ref.append(app)
            percall_ref.append(percall)
        elif not no_ari:
            app = await _start_ari(settings, stack, server, services, seat, port)
            app_ref.append(app)
        if seat is not None:
            await seat.attach(app, metrics)
        # Everything loaded so far lives as long as the process: keep it out of the garbage collector's
        # full collections, which otherwise stall the event loop for ~100 ms with hundreds of calls.
        gc.collect()
        gc.freeze()
        release_free_memory()  # what loading and warming up freed: the idle baseline is the serving process
        monitor = LoopMonitor(metrics.loop_lag.observe)  # from here on nothing may hold the loop
        monitor.start()
        stack.callback(monitor.stop)
        if percall is not None and seat is None:  # under a supervisor, the supervisor does it
            sweep_orphans(records, lambda: list(app_ref[0].calls) if app_ref else [], stack)
        info: dict[str, Any] = {
            "audiosocket": server.address,
            "websocket": ws_server.address if ws_server is not None else None,
            "media": settings.media,
            "mode": "dialplan" if no_ari else "ari",
            "metrics": health.url if health is not None else None,
            "pid": os.getpid(),
        }
        if percall is not None:
            info["percall"] = percall.url
        log.info(
            "ready: %s mode (%s loop), AudioSocket on %s:%d%s, %smedia %s, flows %s",
            info["mode"],
            type(asyncio.get_running_loop()).__module__.split(".")[0],
            *server.address,
            f", WebSocket media on {ws_server.address[0]}:{ws_server.address[1]}" if ws_server else "",
            f"per-call ARI on {percall.url}, " if percall is not None else "",
            settings.media,
            ", ".join(catalog.names),
        )
        if seat is not None:
            seat.announce_ready(info)
        if ready is not None:
            result = ready(info)
            if asyncio.iscoroutine(result):
                await result
        code = await _wait_for_stop(stop, app, seat)
        if health is not None:
            health.drain()
        if percall is not None:
            percall.draining = True  # new calls get 503: Asterisk retries, through a balancer elsewhere
        if app is not None and code == 0:
            await app.drain(settings.shutdown_grace_seconds, settings.shutdown_goodbye)
        elif dialplan is not None:
            await server.stop_accepting()
            if ws_server is not None:
                ws_server.stop_accepting()
            await dialplan.drain(settings.shutdown_grace_seconds, settings.shutdown_goodbye)
        return code


async def _start_ari(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    server: AudioSocketServer,
    services: CallServices,
    seat: Seat | None,
    port: int,
) -> AriApp:
    ari = AriClient(
        settings.ari_url,
        settings.ari_user,
        settings.ari_password.get_secret_value(),
        connections=max(2, settings.ari_connections),  # a worker's settings carry its share already
    )
    stack.push_async_callback(ari.close)
    info = await check_ari(ari, settings)
    # media: WebSocket media when this Asterisk has MARK_MEDIA (IVR_MEDIA=websocket requires it)
    websocket = (
        await open_websocket_client(settings, stack)
        if websocket_media_usable(settings, info.version)
        else None
    )
    app = AriApp(
        ari=ari,
        audiosocket=server,
        services=services,
        config=app_config(settings, seat, _advertise(settings, server, port)),
        websocket=websocket,
    )
    if seat is None:  # a worker's events come from its supervisor, which holds the events socket
        try:
            await app.start()
        except ApplicationReplacedError:
            raise StartupError(f"another process took over the ARI app '{settings.ari_app}'") from None
        except (AriError, TimeoutError) as exc:
            raise StartupError(f"ARI events WebSocket for '{settings.ari_app}': {exc}") from None
    stack.push_async_callback(app.close, keep_agent_calls=True)
    return app


def _advertise(settings: Settings, server: AudioSocketServer, port: int) -> str:
    """The AudioSocket ``host:port`` Asterisk dials: worker N listens on the base port + N and advertises
    the same offset from the advertised port."""
    offset = port - settings.listen[1] if settings.listen[1] else 0
    if settings.audiosocket_advertise:
        adv_host, adv_port = parse_hostport(settings.audiosocket_advertise)
        return f"{adv_host}:{adv_port + offset}"
    return f"{settings.listen[0]}:{server.port}"


async def _wait_for_stop(stop: asyncio.Event, app: AriApp | None, seat: Seat | None) -> int:
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    stream_task = app.stream.task if app is not None and app.stream is not None else None
    if stream_task is not None:
        waiters.add(stream_task)
    seat_task = asyncio.ensure_future(seat.wait()) if seat is not None else None
    if seat_task is not None:
        waiters.add(seat_task)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if waiter is not stream_task:
                waiter.cancel()
    if seat_task is not None and seat_task.done() and not seat_task.cancelled() and not stop.is_set():
        code: int = seat_task.result()
        return code
    if stream_task is not None and stream_task.done() and not stop.is_set():
        exc = stream_task.exception() if not stream_task.cancelled() else None
        if isinstance(exc, ApplicationReplacedError):
            log.error("another process took over the ARI app '%s'; stopping (not fighting over it)", exc.app)
            return 1
        log.error("the ARI events stream stopped: %s", exc)
        return 1
    log.info("stopping")
    return 0
