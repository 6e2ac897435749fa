"""``ivr run``: serve calls until SIGTERM, in ARI mode (default) or dialplan-only mode (``--no-ari``).

Startup checks everything it can before taking a call and fails with one line, never a traceback: bad
settings, flow errors (file:line), a port in use, an unreachable Asterisk, a wrong ARI password.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ivr.ari.client import AriClient
from ivr.ari.errors import ApplicationReplacedError, AriConnectionError, AriError, BadReply, Unauthorized
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig, ReportSink
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog, install_reload
from ivr.call.runtime import CallReport
from ivr.call.speech import registry_factory
from ivr.config import ConfigError, Settings, load_settings
from ivr.flow.errors import FlowError
from ivr.flow.llm_matcher import LlmMatcher
from ivr.flow.webhook import WebhookClient
from ivr.logs import setup_logging
from ivr.ops.health import HealthServer
from ivr.ops.metrics import Metrics
from ivr.ops.records import RecordsError, create_store
from ivr.speech.registry import SpeechRegistry

log = logging.getLogger("ivr.run")

FLAG_SETTINGS = (
    ("--flows", "flows", "a flow file or a directory of flows (IVR_FLOWS)"),
    ("--default-flow", "default_flow", "flow for calls that name none (IVR_DEFAULT_FLOW)"),
    ("--ari-url", "ari_url", "Asterisk HTTP base URL without /ari (IVR_ARI_URL)"),
    (
        "--ari-user",
        "ari_user",
        "ARI user (IVR_ARI_USER); the password only from IVR_ARI_PASSWORD or ivr.toml",
    ),
    ("--ari-app", "ari_app", "Stasis application name (IVR_ARI_APP)"),
    ("--listen", "audiosocket_listen", "AudioSocket host:port (IVR_AUDIOSOCKET_LISTEN)"),
    (
        "--advertise",
        "audiosocket_advertise",
        "host:port Asterisk dials for media (IVR_AUDIOSOCKET_ADVERTISE)",
    ),
    ("--format", "format", "force slin16 or slin (IVR_FORMAT)"),
    ("--stt", "stt", "default speech-to-text engine (IVR_STT)"),
    ("--tts", "tts", "default text-to-speech engine (IVR_TTS)"),
    ("--max-calls", "max_calls", "concurrent calls (IVR_MAX_CALLS)"),
)


class StartupError(Exception):
    """One line for the operator; ``ivr run`` exits 2 with it."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="serve calls until SIGTERM (ARI app + AudioSocket server)")
    p.add_argument("--config", type=Path, help="settings file (default: ./ivr.toml if present)")
    for flag, dest, text in FLAG_SETTINGS:
        p.add_argument(flag, dest=dest, help=text, type=int if dest == "max_calls" else str)
    p.add_argument("--no-ari", action="store_true", help="dialplan-only mode: accept AudioSocket() calls")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line (with call_id)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    limiter = setup_logging(args.log_level, json_lines=args.log_json)
    overrides = {dest: getattr(args, dest) for _, dest, _ in FLAG_SETTINGS}
    try:
        settings = load_settings(overrides, toml_path=args.config)
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            return runner.run(serve(settings, no_ari=args.no_ari))
    except (ConfigError, StartupError) as exc:
        print(f"ivr run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        limiter.flush()  # say how many log lines were suppressed before the process goes


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (``pip install 'asterisk-ivr[uvloop]'``): about half the CPU per call."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def load_catalog(settings: Settings) -> FlowCatalog:
    try:
        return FlowCatalog(settings.flows, settings.default_flow)
    except FlowError as exc:
        first = exc.issues[0] if exc.issues else None
        more = f" (and {len(exc.issues) - 1} more; run ivr validate)" if len(exc.issues) > 1 else ""
        raise StartupError(f"flow error: {first}{more}") from None
    except FileNotFoundError as exc:
        raise StartupError(str(exc)) from None


async def serve(
    settings: Settings,
    *,
    no_ari: bool = False,
    stop: asyncio.Event | None = None,
    ready: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    on_report: ReportSink | None = None,
) -> int:
    """Run until ``stop`` is set (or SIGTERM/SIGINT); returns the exit code."""
    catalog = load_catalog(settings)
    if no_ari and catalog.default is None:
        raise StartupError("dialplan-only mode runs one flow: set IVR_DEFAULT_FLOW (or --default-flow)")
    registry = SpeechRegistry(cache_dir=settings.prompt_cache)
    speech = registry_factory(registry, default_stt=settings.stt, default_tts=settings.tts)
    audio_dir = catalog.directory / "audio"
    classifier = None
    if os.environ.get("OPENAI_API_KEY"):
        classifier = LlmMatcher().classify  # flows with matcher: llm; keywords when it fails
    else:
        log.info("no OPENAI_API_KEY: flows with 'matcher: llm' use the keyword matcher only")
    host, port = settings.listen
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        stack.push_async_callback(registry.aclose)
        try:
            records = create_store(
                path=settings.records_path,
                url=settings.records_url.get_secret_value() if settings.records_url else None,
                spool=settings.records_spool,
                instance=settings.instance_id,
            )
        except RecordsError as exc:
            raise StartupError(f"call records: {exc}") from None
        try:
            await records.open()
        except RecordsError as exc:
            raise StartupError(f"call records at {records.where}: {exc}") from None
        stack.push_async_callback(records.close)
        # Flow hot reload (SIGHUP or a changed file): one hook, see ivr.call.flows.install_reload.
        watcher = install_reload(catalog, watch=settings.flows_watch)
        if watcher is not None:
            stack.callback(watcher.cancel)
        metrics = Metrics()
        webhook = await stack.enter_async_context(WebhookClient.from_settings(settings))
        app_ref: list[AriApp] = []

        def readiness() -> tuple[bool, str]:
            if no_ari:
                return True, "dialplan-only mode"
            stream = app_ref[0].stream if app_ref else None
            return (
                (True, "ARI connected")
                if stream is not None and stream.connected
                else (False, "ARI disconnected")
            )

        health: HealthServer | None = None
        if settings.metrics_listen:
            health = HealthServer.from_listen(settings.metrics_listen, metrics, ready=readiness)
            try:
                await health.start()
            except OSError as exc:
                raise StartupError(f"cannot listen for metrics on {settings.metrics_listen}: {exc}") from None
            stack.push_async_callback(health.close)

        async def finished(report: CallReport) -> None:
            try:
                await records.record(
                    report, caller=report.caller, linkedid=report.linkedid, direction=report.direction
                )
            except RecordsError as exc:
                log.error("call %s: not recorded: %s", report.call_id, exc)
            if on_report is not None:
                result = on_report(report)
                if asyncio.iscoroutine(result):
                    await result

        dialplan: DialplanApp | None = None
        if no_ari:
            dialplan = DialplanApp(
                flows=catalog,
                speech=speech,
                http=http,
                audio_dir=audio_dir,
                max_calls=settings.max_calls,
                max_call_seconds=settings.max_call_seconds,
                on_report=finished,
                metrics=metrics,
                classifier=classifier,
                webhook=webhook,
                recordings_dir=settings.recordings_dir,
            )
        server = AudioSocketServer(
            AudioSocketConfig(
                host=host,
                port=port,
                max_connections=settings.audiosocket_max_connections,
                max_per_source=settings.per_source_limit,
            ),
            on_session=dialplan.handle if dialplan else None,
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen for AudioSocket on {host}:{port}: {exc.strerror or exc}"
            ) from None
        stack.push_async_callback(server.close)
        info: dict[str, Any] = {
            "audiosocket": server.address,
            "mode": "dialplan" if no_ari else "ari",
            "metrics": health.url if health is not None else None,
        }
        app: AriApp | None = None
        if not no_ari:
            ari = AriClient(settings.ari_url, settings.ari_user, settings.ari_password.get_secret_value())
            stack.push_async_callback(ari.close)
            await check_ari(ari, settings)
            app = AriApp(
                ari=ari,
                audiosocket=server,
                flows=catalog,
                speech=speech,
                http=http,
                config=AriAppConfig(
                    app=settings.ari_app,
                    advertise=settings.advertise
                    if settings.audiosocket_advertise
                    else f"{host}:{server.port}",
                    format=settings.format,
                    max_calls=settings.max_calls,
                    max_call_seconds=settings.max_call_seconds,
                    audio_dir=audio_dir,
                    recordings_dir=settings.recordings_dir,
                ),
                on_report=finished,
                metrics=metrics,
                classifier=classifier,
                webhook=webhook,
            )
            app_ref.append(app)
            try:
                await app.start()
            except ApplicationReplacedError:
                raise StartupError(f"another process took over the ARI app '{settings.ari_app}'") from None
            except (AriError, TimeoutError) as exc:
                raise StartupError(f"ARI events WebSocket for '{settings.ari_app}': {exc}") from None
            stack.push_async_callback(app.close, keep_agent_calls=True)
        # Everything loaded so far lives as long as the process: keep it out of the garbage collector's
        # full collections, which otherwise stall the event loop for ~100 ms with hundreds of calls.
        gc.collect()
        gc.freeze()
        log.info(
            "ready: %s mode (%s loop), AudioSocket on %s:%d, flows %s",
            info["mode"],
            type(asyncio.get_running_loop()).__module__.split(".")[0],
            *server.address,
            ", ".join(catalog.names),
        )
        if ready is not None:
            result = ready(info)
            if asyncio.iscoroutine(result):
                await result
        code = await wait_for_stop(stop, app)
        if health is not None:
            health.drain()
        if app is not None and code == 0:
            await app.drain(settings.shutdown_grace_seconds, settings.shutdown_goodbye)
        elif dialplan is not None:
            await server.stop_accepting()
            await dialplan.drain(settings.shutdown_grace_seconds, settings.shutdown_goodbye)
        return code


async def check_ari(ari: AriClient, settings: Settings) -> None:
    try:
        info = await ari.asterisk_info()
    except Unauthorized:
        raise StartupError(
            f"ARI at {settings.ari_url} refused user '{settings.ari_user}': check IVR_ARI_USER and IVR_ARI_PASSWORD"
        ) from None
    except BadReply as exc:
        raise StartupError(f"ARI at {settings.ari_url} answered, but not like Asterisk: {exc}") from None
    except AriConnectionError as exc:
        raise StartupError(f"cannot reach ARI at {settings.ari_url}: {exc}") from None
    except AriError as exc:
        raise StartupError(f"ARI at {settings.ari_url}: {exc}") from None
    log.info("connected to Asterisk %s at %s", info.version or "?", settings.ari_url)


async def wait_for_stop(stop: asyncio.Event, app: AriApp | None) -> int:
    waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    stream_task = app.stream.task if app is not None and app.stream is not None else None
    if stream_task is not None:
        waiters.add(stream_task)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            if waiter is not stream_task:
                waiter.cancel()
    if stream_task is not None and stream_task.done() and not stop.is_set():
        exc = stream_task.exception() if not stream_task.cancelled() else None
        if isinstance(exc, ApplicationReplacedError):
            log.error("another process took over the ARI app '%s'; stopping (not fighting over it)", exc.app)
            return 1
        log.error("the ARI events stream stopped: %s", exc)
        return 1
    log.info("stopping")
    return 0
