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
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from ivr.ari.client import AriClient
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.flows import FlowCatalog
from ivr.call.ports import SpeechFactory, WebhookHandler
from ivr.call.report import CallReport, TraceEvent
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
from ivr.speech.base import Synthesizer
from ivr.speech.executor import EngineSpec, SpeechPool
from ivr.speech.registry import CallSpeech, SpeechRegistry
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer
from ivr.websocket import WebSocketMediaClient

SpeechMode = Literal["offline", "text"]
END_NAMES = {"transferred": "transfer"}


class SimulationError(Exception):
    """The simulation could not run (missing engines, a broken script); one line for the user."""


@dataclass
class Check:
    what: str
    passed: bool
    detail: str = ""


@dataclass
class SimulationResult:
    flow: str
    mode: SpeechMode
    report: CallReport | None
    prompts: list[tuple[str, str]] = field(default_factory=list)
    """(step, text) of every prompt the IVR started, in order."""
    barge_ins: list[str] = field(default_factory=list)
    """Steps whose prompt the caller interrupted (speech or keys), in order."""
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    """The printed conversation, line by line."""

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.checks)


class _Tracker:
    """Follows the call's trace: prints it, and lets script steps wait for what the IVR does."""

    def __init__(self, out: TextIO | None, result: SimulationResult) -> None:
        self.out = out
        self.result = result
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()  # the loop's clock: virtual time in ``ivr test``
        self.listening = False
        self.prompt_seq = 0
        self.changed = asyncio.Event()
        self.ended = False

    def line(self, who: str, text: str) -> None:
        entry = f"[{self.loop.time() - self.t0:6.2f}] {who:<6} {text}"
        self.result.transcript.append(entry)
        if self.out is not None:
            print(entry, file=self.out, flush=True)

    def __call__(self, event: TraceEvent) -> None:
        if event.kind == "prompt":
            self.result.prompts.append((event.step, event.text))
            self.prompt_seq += 1
            self.listening = False
            self.line("ivr", f'{event.step}: "{event.text}"')
        elif event.kind == "listen":
            self.listening = True
        elif event.kind == "record":
            self.listening = True
            self.line("ivr", f"{event.step}: (beep) recording the caller")
        elif event.kind == "heard":
            self.listening = False
            self.line("stt", f'{event.step}: heard "{event.text}"')
        elif event.kind == "dtmf":
            self.line("dtmf", event.text)
        elif event.kind == "barge_in":
            self.result.barge_ins.append(event.step or "")
            self.line("barge", f"{event.step}: the caller interrupted the prompt")
        elif event.kind == "step":
            self.line("step", f"{event.step}" + (f" ({event.text})" if event.text else ""))
        elif event.kind == "end":
            self.ended = True
            self.line("end", event.text)
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.ended:
                        raise SimulationError(f"{what}: the call ended first")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise SimulationError(f"{what}: not within {timeout:g} s") from None


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


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - app state without an event
                await asyncio.sleep(0.05)


async def _run_steps(
    script: sc.CallerScript,
    sim: SimAsterisk,
    caller_id: str,
    tracker: _Tracker,
    speak: Callable[[str], Any],
    timeout: float,
) -> None:
    cursor = 0
    for number, step in enumerate(script.steps, 1):
        label = f"step {number}"
        if isinstance(step, sc.WaitFor):
            wanted = step.wait_for.lower()
            start = cursor

            def found(start: int = start, wanted: str = wanted) -> bool:
                return any(wanted in text.lower() for _, text in tracker.result.prompts[start:])

            await tracker.wait(found, step.timeout_s, f"{label} wait_for {step.wait_for!r}")
            cursor = next(
                i + 1
                for i in range(start, len(tracker.result.prompts))
                if wanted in tracker.result.prompts[i][1].lower()
            )
        elif isinstance(step, sc.Say):
            await tracker.wait(lambda: tracker.listening, timeout, f"{label} say: the IVR never listened")
            await speak(step.say)
        elif isinstance(step, sc.BargeIn):
            seq = tracker.prompt_seq

            def new_prompt(seq: int = seq) -> bool:
                return tracker.prompt_seq > seq

            if tracker.listening or seq == 0:
                await tracker.wait(new_prompt, timeout, f"{label} barge_in: no prompt played")
            await asyncio.sleep(0.4)
            await speak(step.barge_in)
        elif isinstance(step, sc.Press):
            await tracker.wait(lambda: tracker.listening, timeout, f"{label} press: the IVR never listened")
            for key in step.press:
                await sim.press_dtmf(caller_id, key)
                await asyncio.sleep(0.15)
        elif isinstance(step, sc.Silence):
            tracker.line("caller", f"(silent {step.silence} ms)")
            await _until(lambda: tracker.ended, timeout=step.silence / 1000)  # no point once it ended
        elif isinstance(step, sc.HangupStep):
            tracker.line("caller", "(hangs up)")
            if caller_id in sim.channels:
                await sim.hangup(caller_id)
            return


async def _interactive(
    sim: SimAsterisk, caller_id: str, tracker: _Tracker, speak: Callable[[str], Any]
) -> None:
    """Type what the caller says; digits like ``1#`` are pressed; ``/hangup`` or EOF hangs up.

    Lines are read by a daemon thread of its own: a read blocked on the terminal cannot be cancelled,
    so when the IVR ends the call the simulation returns at once instead of waiting for one more Enter
    (a thread of the loop's executor would be joined at exit, which is exactly that wait).
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in iter(sys.stdin.readline, ""):
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")  # EOF

    threading.Thread(target=read, name="ivr-simulate-stdin", daemon=True).start()
    print("type what the caller says; 1# presses keys; /hangup or Ctrl-D ends", file=sys.stderr)
    while not tracker.ended:
        getter = asyncio.ensure_future(lines.get())
        ended = asyncio.ensure_future(tracker.wait(lambda: tracker.ended, 1e9, "the call"))
        done, _ = await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (getter, ended):
            if task not in done:
                task.cancel()
        await asyncio.gather(getter, ended, return_exceptions=True)
        if getter not in done or getter.cancelled():
            return  # the IVR ended the call first
        line = getter.result()
        text = line.strip()
        if not line or text == "/hangup":
            if caller_id in sim.channels:
                await sim.hangup(caller_id)
            return
        if text and not set(text) - sc.DTMF_KEYS:
            for key in text:
                await sim.press_dtmf(caller_id, key)
                await asyncio.sleep(0.15)
        elif text:
            await speak(text)


def _evaluate(script: sc.CallerScript, result: SimulationResult) -> None:
    report = result.report
    prompts = [text for _, text in result.prompts]
    for step in script.steps:
        if isinstance(step, sc.ExpectPrompt):
            ok = any(step.expect_prompt.lower() in p.lower() for p in prompts)
            result.checks.append(
                Check(f"expect_prompt {step.expect_prompt!r}", ok, "" if ok else "never said")
            )
        elif isinstance(step, sc.ExpectStep):
            path = report.path if report else []
            ok = step.expect_step in path or any(p.endswith(f":{step.expect_step}") for p in path)
            result.checks.append(
                Check(f"expect_step {step.expect_step}", ok, "" if ok else f"path was {' -> '.join(path)}")
            )
        elif isinstance(step, sc.ExpectBargeIn):
            barged = step.expect_barge_in
            ok = any(s == barged or s.endswith(f":{barged}") for s in result.barge_ins)
            seen = ", ".join(result.barge_ins) or "none"
            result.checks.append(
                Check(f"expect_barge_in {barged}", ok, "" if ok else f"interrupted prompts: {seen}")
            )
        elif isinstance(step, sc.ExpectVar):
            variables = report.variables if report else {}
            for name, want in step.expect_var.items():
                got = variables.get(name)
                ok = got == want or str(got) == str(want)
                result.checks.append(Check(f"expect_var {name}={want!r}", ok, "" if ok else f"was {got!r}"))
        elif isinstance(step, sc.ExpectEnd):
            outcome = report.outcome if report else "none"
            got = END_NAMES.get(outcome, outcome)
            ok = got == step.expect_end
            result.checks.append(
                Check(f"expect_end {step.expect_end}", ok, "" if ok else f"ended with {got}")
            )


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
