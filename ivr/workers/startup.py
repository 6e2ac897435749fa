"""What a serving process and the supervisor both do before taking a call, each failing with one line.

Split out of :mod:`ivr.workers.process` so that the supervisor (:mod:`ivr.workers.supervisor`), which
checks the same things to fail fast, depends on these checks and not on the serving process's assembly:
loading and checking the flows, choosing the speech engines to run in speech workers, checking ARI,
opening the call records, loading the turn-taking models and taking the stop signals. Every failure is a
:class:`~ivr.workers.errors.StartupError`; log lines keep the ``ivr.run`` logger name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any

from ivr.ari.client import AriClient
from ivr.ari.errors import AriConnectionError, AriError, BadReply, Unauthorized
from ivr.ari.models import AsteriskInfo
from ivr.call.flows import FlowCatalog
from ivr.call.speech import speech_settings
from ivr.call.turn_models import TurnModels
from ivr.config import Settings
from ivr.flow.errors import FlowError, FlowIssue
from ivr.flow.modes import dialplan_mode_issues
from ivr.flow.source import find_flow_file
from ivr.ops.records import RecordsError, create_store
from ivr.speech.executor import EngineSpec
from ivr.speech.registry import SpeechSettings
from ivr.workers.errors import StartupError

log = logging.getLogger("ivr.run")

OFFLOADED_ENGINES = frozenset({"offline"})
"""Engines whose inference runs in speech worker processes (CPU-bound), never on the pacing loop."""


def stop_on_signals(stop: asyncio.Event, stack: contextlib.AsyncExitStack) -> None:
    """SIGTERM and SIGINT set ``stop``; given back when ``stack`` closes (serve() may run inside a bigger
    program, such as a test run, whose Ctrl-C must work again afterwards)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)


def load_catalog(settings: Settings) -> FlowCatalog:
    try:
        return FlowCatalog(settings.flows, settings.default_flow)
    except FlowError as exc:
        raise StartupError(flow_error(exc.issues)) from None
    except FileNotFoundError as exc:
        raise StartupError(str(exc)) from None


def flow_error(issues: Sequence[FlowIssue]) -> str:
    more = f" (and {len(issues) - 1} more; run ivr validate)" if len(issues) > 1 else ""
    return f"flow error: {issues[0] if issues else '?'}{more}"


def check_dialplan_mode(catalog: FlowCatalog) -> None:
    """Dialplan-only mode runs the default flow and its subflows: none may transfer (no ARI channel to
    move), exactly as ``ivr validate --mode dialplan`` says."""
    library = catalog.library(None)
    issues: list[FlowIssue] = []
    for name, flow in library.flows.items():
        path = find_flow_file(catalog.directory, name) or catalog.directory / f"{name}.yaml"
        issues += dialplan_mode_issues(path, flow)
    if issues:
        raise StartupError(flow_error(issues))


def speech_uses(settings: Settings, catalog: FlowCatalog) -> list[SpeechSettings]:
    """The engines every flow of the catalog will ask for (flow settings over the process defaults)."""
    uses = [
        speech_settings(flow.settings, default_stt=settings.stt, default_tts=settings.tts)
        for name in catalog.names
        for flow in catalog.library(name).flows.values()
    ]
    return list(dict.fromkeys(uses))


def offloaded_specs(uses: Sequence[SpeechSettings]) -> list[EngineSpec]:
    specs: list[EngineSpec] = []
    for use in uses:
        if use.stt_engine in OFFLOADED_ENGINES:
            specs.append(
                EngineSpec("stt", use.stt_engine, model=use.stt_model, language=use.language or "en")
            )
        if use.tts_engine in OFFLOADED_ENGINES:
            specs.append(
                EngineSpec(
                    "tts", use.tts_engine, model=use.tts_model, voice=use.voice, instructions=use.instructions
                )
            )
    return list(dict.fromkeys(specs))


async def check_ari(ari: AriClient, settings: Settings) -> AsteriskInfo:
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
    return info


async def load_turn_models(stack: contextlib.AsyncExitStack) -> TurnModels:
    """The turn-taking models (neural VAD, end-of-turn model), loaded and run once in a thread now, before
    the process says it is ready: never first on a live call. One INFO line each says what runs."""
    try:
        turns = await asyncio.to_thread(TurnModels.load)
    except Exception as exc:  # a broken model file: one line, not a traceback
        raise StartupError(f"turn-taking models: {exc}") from None
    stack.callback(turns.close)
    return turns


async def open_records(settings: Settings, stack: contextlib.AsyncExitStack) -> Any:
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
    return records
