"""One simulated call: the real app, a simulated Asterisk and a scripted caller, over local sockets.

Everything the production path does runs here: ARI REST and events, ``externalMedia``, the AudioSocket
server (or WebSocket media, ``media: websocket``, paced by the simulated chan_websocket), paced playback,
VAD and endpointing, the flow engine and the speech engines. Only Asterisk and the caller are simulated.
Speech modes:

* ``offline``: the app speaks with piper and listens with faster-whisper; the caller's lines are spoken
  by piper too, so the whole audio path is real (needs the ``offline`` extra);
* ``text``: the instant ``sim-text`` engines; the caller's audio carries its words to the simulation
  transcriber. Fast and deterministic, for tests; always printed as such.

What the IVR said is taken from the prompts the app reports, never from re-transcribing its audio.
The conversation itself (the trace followed, the caller's steps played) is :mod:`ivr.simulation.conversation`;
what the call gives back and the script's checks on it, :mod:`ivr.simulation.result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ivr.ari.client import AriClient
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.flows import FlowCatalog
from ivr.call.ports import SpeechFactory, WebhookHandler
from ivr.call.services import CallServices
from ivr.call.speech import registry_factory
from ivr.call.turn_models import TurnModels
from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult
from ivr.flow.model import FlowSettings
from ivr.media.wav import stereo_wav
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs, CallerVoice
from ivr.sim.ws_media import talking_legs
from ivr.simulation import script as sc
from ivr.simulation.conversation import _interactive, _run_steps, _Tracker, _until
from ivr.simulation.result import SimulationError, SimulationResult, SpeechMode, _evaluate
from ivr.speech.base import Synthesizer
from ivr.speech.executor import EngineSpec, SpeechPool
from ivr.speech.registry import CallSpeech, SpeechRegistry
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer
from ivr.websocket import WebSocketMediaClient

__all__ = ["SimulationError", "SimulationResult", "SpeechMode", "sim_text_speech", "simulate"]


def _mock_webhooks(script: sc.CallerScript, tracker: _Tracker) -> WebhookHandler:
    """Answer the flow's web requests from the script's ``webhooks``; unmatched requests fail."""

    async def handle(request: HttpRequest) -> WebhookResult | WebhookFailed:
        shown = f"{request.method} {request.redact(request.url)}"
        for mock in script.webhooks:
            method, _, prefix = mock.match.partition(" ")
            if request.method.upper() == method and request.url.startswith(prefix):
                if mock.fail is not None:
                    tracker.line("http", f"{shown} -> fails: {mock.fail}")
                    return WebhookFailed(mock.fail)
                tracker.line("http", f"{shown} -> {mock.status}")
                return WebhookResult(mock.status, mock.json_body)
        tracker.line("http", f"{shown} -> no mock in the caller script: fails")
        return WebhookFailed("no webhook mock in the caller script matches this request")

    return handle


def sim_text_speech() -> SpeechFactory:
    def factory(settings: FlowSettings, rate: int) -> CallSpeech:
        # About half the pace of real speech: fast tests, yet long enough prompts to barge in on.
        return CallSpeech(TextTranscriber(), ToneSynthesizer(ms_per_char=30))

    return factory


def _offline_available() -> str | None:
    """The first missing offline package, or None (checked without importing the heavy modules)."""
    for module in ("faster_whisper", "piper"):
        if importlib.util.find_spec(module) is None:
            return f"no module named {module!r}"
    return None


async def simulate(
    flow_file: Path,
    script: sc.CallerScript,
    *,
    mode: SpeechMode = "offline",
    fmt: str | None = None,
    record: Path | None = None,
    out: TextIO | None = sys.stdout,
    step_timeout: float = 30.0,
    interactive: bool = False,
    media: str | None = None,
) -> SimulationResult:
    """Run one call of ``flow_file`` with ``script`` as the caller; see the module docstring.

    Webhooks never leave the process: the script's ``webhooks`` answer them. ``env.NAME`` is the
    process environment with the script's ``env`` over it. ``play:`` audio comes from the ``audio``
    directory next to the flow file, as in ``ivr run``.
    """
    if not await asyncio.to_thread(flow_file.is_file):
        raise SimulationError(f"{flow_file}: no such flow file")
    registry: SpeechRegistry | None = None
    pool: SpeechPool | None = None
    caller_voice: Synthesizer | None = None
    if mode == "offline":
        missing = _offline_available()
        if missing is not None:
            raise SimulationError(
                f"offline speech is not installed ({missing}): pip install -e '.[offline]', or use --text"
            )
        # As in `ivr run`: inference in a speech worker process, so the call's audio keeps its pace.
        pool = SpeechPool([EngineSpec("stt", "offline", language="en"), EngineSpec("tts", "offline")])
        registry = SpeechRegistry(cache_dir=None, pool=pool)
        speech = registry_factory(registry, default_stt="offline", default_tts="offline")
        caller_voice = registry.synthesizer("offline")
        await _load_models(pool, registry, out)
    else:
        speech = sim_text_speech()
    flow_name = flow_file.stem
    result = SimulationResult(flow=flow_name, mode=mode, report=None)
    tracker = _Tracker(out, result)
    legs = CallerLegs()
    fmt = fmt or script.format or "slin16"
    media = media or script.media or "audiosocket"
    async with contextlib.AsyncExitStack() as stack:
        # Messages left at record steps live as long as the simulation (the summary says what was kept).
        recordings = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ivr-sim-recordings-")))
        sim = await stack.enter_async_context(
            SimAsterisk(media_connector=legs.connect, websocket_legs=talking_legs(legs))
        )
        server = await stack.enter_async_context(AudioSocketServer(AudioSocketConfig(port=0)))
        websocket = await stack.enter_async_context(WebSocketMediaClient(sim.base_url))
        ari = await stack.enter_async_context(AriClient(sim.base_url, sim.username, sim.password))
        if pool is not None:
            stack.push_async_callback(pool.aclose)
        if registry is not None:
            stack.push_async_callback(registry.aclose)
        # Real speech listens as `ivr run` does: Silero and Smart Turn where installed, loaded now.
        turns = await asyncio.to_thread(TurnModels.load) if mode == "offline" else None
        if turns is not None:
            stack.callback(turns.close)
        app = AriApp(
            ari=ari,
            audiosocket=server,
            services=CallServices(
                flows=FlowCatalog(flow_file, default=flow_name, env={**os.environ, **script.env}),
                speech=speech,
                audio_dir=flow_file.parent / "audio",
                tracer=tracker,
                webhook=_mock_webhooks(script, tracker),
                recordings_dir=recordings,
                clock=_pinned_clock(script),
                turns=turns,
            ),
            config=AriAppConfig(advertise=f"127.0.0.1:{server.port}", step_timeout=10.0, media=media),
            websocket=websocket,
        )
        await app.start()
        stack.push_async_callback(app.close)
        speech_note = (
            "offline speech (piper + faster-whisper)"
            if mode == "offline"
            else "TEXT MODE (sim-text engines, no real speech)"
        )
        if mode == "offline" and out is not None and not interactive:
            print(
                "placing the call: it runs in real time, as long as a phone call (about a minute for the "
                "pizza demo); each line prints as it happens",
                file=out,
                flush=True,
            )
        tracker.line(
            "call",
            f"{script.caller.name} <{script.caller.number}> -> flow {flow_name}, {fmt} over {media}, {speech_note}",
        )
        caller = await sim.place_call(
            args=[f"flow={flow_name}", *(f"{k}={v}" for k, v in script.args.items())],
            caller=(script.caller.name, script.caller.number),
            native_format="slin16" if fmt == "slin16" else "ulaw",
        )
        leg_box: list[CallerVoice] = []

        def bridged() -> bool:
            leg = legs.for_caller(sim, caller.id)
            if leg is not None:
                leg_box.append(leg)
            return bool(leg_box)

        await sim.wait_for(bridged, 15.0)
        leg = leg_box[0]

        async def speak(text: str) -> None:
            tracker.line("caller", f'"{text}"')
            if caller_voice is not None:
                pcm = b"".join([chunk async for chunk in caller_voice.synthesize(text, rate=leg.rate)])
                await leg.speak(pcm)
            else:
                await leg.say(text)

        try:
            if interactive:
                await _interactive(sim, caller.id, tracker, speak)
            else:
                await _run_steps(script, sim, caller.id, tracker, speak, step_timeout)
        except SimulationError as exc:
            result.errors.append(str(exc))
            tracker.line("error", str(exc))
        if caller.id in sim.channels and not tracker.ended:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_until(lambda: tracker.ended), step_timeout)
        if tracker.ended:
            await _until(lambda: not app.calls, timeout=2.0)
            if app.calls and caller.id in sim.channels:
                # the flow is over but the call goes on (bridged to an agent after a transfer): the
                # simulated caller leaves, or the app would hold the call until it is closed
                tracker.line("caller", "(hangs up: the flow has ended)")
                with contextlib.suppress(Exception):
                    await sim.hangup(caller.id)
        await _until(lambda: bool(app.reports) and not app.calls, timeout=15.0)
        result.report = app.reports[0] if app.reports else None
        if record is not None:
            await asyncio.to_thread(record.write_bytes, stereo_wav(bytes(leg.sent), leg.track, leg.rate))
            tracker.line("wav", f"{record} (caller left, IVR right, {leg.rate} Hz)")
        _evaluate(script, result)
        _summary(result, tracker, leg, media)
    return result


async def _load_models(pool: SpeechPool, registry: SpeechRegistry, out: TextIO | None) -> None:
    """Start the speech worker and load the offline models before the call (seconds), saying so first."""
    from ivr.speech.registry import SpeechSettings

    loop = asyncio.get_running_loop()
    began = loop.time()
    if out is not None:
        print(
            "loading the offline speech models (faster-whisper tiny.en, piper en_US-joe-medium): "
            "a few seconds ...",
            file=out,
            flush=True,
        )
    try:
        await pool.start()
    except Exception as exc:
        await pool.aclose()
        raise SimulationError(f"the offline speech worker did not start: {exc}") from None
    await registry.warm_up([SpeechSettings(stt_engine="offline", tts_engine="offline", language="en")])
    if out is not None:
        print(f"models loaded in {loop.time() - began:.1f} s", file=out, flush=True)


def _pinned_clock(script: sc.CallerScript) -> Callable[[], float] | None:
    """The script's ``now`` as a wall clock that runs with the loop's (virtual) time."""
    if script.now is None:
        return None
    when = script.now if script.now.tzinfo is not None else script.now.astimezone()
    start, loop = when.timestamp(), asyncio.get_running_loop()
    began = loop.time()
    return lambda: start + (loop.time() - began)


def _summary(result: SimulationResult, tracker: _Tracker, leg: CallerVoice, media: str) -> None:
    report = result.report
    if report is None:
        tracker.line("summary", "no call report (the call did not start, or did not end within 15 s)")
        return
    latency = sorted(report.response_latency_ms)
    lat = f"{latency[len(latency) // 2]:.0f} ms median, {latency[-1]:.0f} ms max" if latency else "n/a"
    lateness = leg.lateness().summary()
    tracker.line("summary", f"path: {' -> '.join(report.path)}")
    tracker.line("summary", f"variables: {report.variables}")
    tracker.line("summary", f"outcome: {report.outcome}{f' ({report.reason})' if report.reason else ''}")
    for message in report.recordings:
        kept = "stored" if message["path"] else "not stored (sensitive)"
        tracker.line(
            "summary",
            f"recording at {message['step']}: {message['duration_s']:.1f} s, ended by {message['ended_by']}, "
            f"{kept} (deleted with the simulation)",
        )
    greeting = f"{report.greeting_latency_ms:.0f} ms" if report.greeting_latency_ms is not None else "n/a"
    tracker.line("summary", f"greeting latency (call arrives -> first prompt frame): {greeting}")
    tracker.line("summary", f"response latency (end of caller speech -> first IVR audio): {lat}")
    paced = "by the app" if media == "audiosocket" else "by the simulated Asterisk"
    tracker.line(
        "summary",
        f"IVR frame pacing at the caller ({media}, paced {paced}): p50 {lateness.p50_ms:.1f} ms, "
        f"p99 {lateness.p99_ms:.1f} ms late",
    )
    tracker.line(
        "summary",
        f"speech: {'offline engines' if result.mode == 'offline' else 'TEXT MODE (no real speech)'}",
    )
    for check in result.checks:
        tracker.line(
            "check",
            f"{'PASS' if check.passed else 'FAIL'} {check.what}"
            + (f": {check.detail}" if check.detail else ""),
        )
