"""``ivr bench --turns``, end to end: speech end -> first reply frame through the call runtime.

Each answer of the turn corpus is one whole call over local sockets: the simulated Asterisk, an
AudioSocket caller leg that plays the corpus answer (its voice and line noise) once the question has
been heard, the AudioSocket server and the app with the process's turn-taking models (as ``ivr run``
loads them: Silero and Smart Turn where installed) and the engines under test:

* ``offline``: faster-whisper and piper, in a speech worker process;
* ``stand-in``: a local OpenAI stand-in on 127.0.0.1 (``/audio/transcriptions`` answers the item's words
  at once, ``/audio/speech`` streams a tone at once), through the real HTTP engines and client.

Everything runs as ``ivr run`` runs it, in real time: offline inference in one speech worker process,
Silero batched on its thread, Smart Turn on its own, a prompt cache (fixed texts render once). The
figure is measured on the caller's side: from the true end of the answer's speech (known from the
corpus) to the first audible frame the leg receives back. The intent
is read from where the flow went (or what it captured), with the hints the runtime passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from ivr.ari.client import AriClient
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.bench.turn_corpus import RATE, Item, build, load_pcm
from ivr.bench.turn_questions import flow_yaml
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.flows import FlowCatalog
from ivr.call.report import TraceEvent
from ivr.call.services import CallServices
from ivr.call.speech import registry_factory
from ivr.call.transcribing import LOCAL_STT
from ivr.call.turn_models import TurnModels
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs, CallerVoice
from ivr.speech.executor import EngineSpec, SpeechPool
from ivr.speech.registry import SpeechRegistry

ANSWER_KINDS = ("complete", "number_pause", "uhm")
PREROLL_MS = 300
"""Line noise the caller leg sends before the answer's first word (as a phone line carries)."""
GAP_S = 0.5
"""The caller answers this long after hearing the end of the question."""
AUDIBLE_DBFS = -50.0
ENGINES = ("stand-in", "offline")


@dataclass(slots=True)
class CallOutcome:
    item: str
    kind: str
    reply_ms: float | None
    answer: str | None
    expect: str | None
    heard: tuple[str, ...] = ()
    """What the call's STT heard (its ``heard`` traces), for the misses' detail."""

    @property
    def correct(self) -> bool:
        return self.answer == self.expect


@dataclass(slots=True)
class EngineResult:
    engine: str
    vad: str
    turn_model: bool
    words: bool = False
    """Words checked at pauses (``end_of_turn.words: auto``, the default, with a local speech-to-text)."""
    outcomes: list[CallOutcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        replies = [o.reply_ms for o in self.outcomes if o.reply_ms is not None]
        complete = [o.reply_ms for o in self.outcomes if o.reply_ms is not None and o.kind == "complete"]
        return {
            "engine": self.engine,
            "vad": self.vad,
            "turn_model": self.turn_model,
            "words_checked": self.words,
            "answers": len(self.outcomes),
            "reply_p50_ms": _pct(replies, 50),
            "reply_p95_ms": _pct(replies, 95),
            "complete_p50_ms": _pct(complete, 50),
            "intent_accuracy": (sum(o.correct for o in self.outcomes) / len(self.outcomes))
            if self.outcomes
            else None,
        }


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="nearest"))


def _answer(item: Item, path: list[str], variables: dict[str, Any]) -> str | None:
    if item.spec.capture == "choice":
        for step in path:
            if step.startswith("got_"):
                return step.removeprefix("got_")
        return None
    value = variables.get("value")
    if item.spec.capture == "yes_no":
        return None if value is None or value == "" else ("yes" if value is True else "no")
    return str(value) if value else None


def answer_pcm(item: Item, cache: Path) -> tuple[bytes, float]:
    """The caller's answer (with the line's noise around it) and where its speech ends, in seconds."""
    assert item.speech_start_ms is not None
    assert item.speech_end_ms is not None
    line = load_pcm(cache, item.caller)
    bytes_per_ms = RATE * 2 // 1000
    start = max(0, item.speech_start_ms - PREROLL_MS) * bytes_per_ms
    end = min(len(line), (item.speech_end_ms + 40) * bytes_per_ms)
    return line[start:end], (item.speech_end_ms - start // bytes_per_ms) / 1000


class StandIn:
    """The local OpenAI stand-in: answers at once (the words the caller said; a tone for any prompt)."""

    def __init__(self) -> None:
        self.transcript = ""
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/v1/audio/speech", self._speech)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1"

    async def _transcribe(self, request: web.Request) -> web.Response:
        await request.post()
        return web.json_response({"text": self.transcript})

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seconds = min(8.0, 0.06 * len(str(body.get("input", ""))))
        t = np.arange(int(24000 * seconds)) / 24000
        pcm = (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for i in range(0, len(pcm), 4800):
            await resp.write(pcm[i : i + 4800])
        await resp.write_eof()
        return resp

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _first_audible(leg: CallerVoice, since: float) -> float | None:
    size = leg.rate // 50 * 2
    for i, at in enumerate(leg.arrivals):
        if at < since:
            continue
        x = np.frombuffer(bytes(leg.heard[i * size : (i + 1) * size]), dtype="<i2").astype(np.float64)
        p = float(np.mean(x * x)) / 32768.0**2 if x.size else 0.0
        if p > 0 and 10 * math.log10(p) > AUDIBLE_DBFS:
            return at
    return None


async def _one_call(
    app: AriApp,
    sim: SimAsterisk,
    legs: CallerLegs,
    trace: list[TraceEvent],
    flow: str,
    pcm: bytes,
    end_s: float,
) -> tuple[float | None, list[str], dict[str, Any]]:
    trace.clear()
    before = len(app.reports)
    caller = await sim.place_call(args=[f"flow={flow}"], native_format="ulaw")
    leg: CallerVoice | None = None
    async with asyncio.timeout(60):
        while leg is None:
            leg = legs.for_caller(sim, caller.id)
            await asyncio.sleep(0.01)
        while not any(t.kind == "listen" for t in trace):  # noqa: ASYNC110 - the app's trace
            await asyncio.sleep(0.01)
        await asyncio.sleep(GAP_S)
        await leg.speak(pcm)  # returns when its last frame was sent
        speech_end = asyncio.get_running_loop().time() - (len(pcm) / (2 * RATE) - end_s) + 0.02
        while len(app.reports) <= before:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    report = app.reports[-1]
    at = _first_audible(leg, speech_end)
    return (None if at is None else (at - speech_end) * 1000), report.path, report.variables


async def _run_engine(
    engine: str,
    items: Sequence[Item],
    cache: Path,
    turns: TurnModels,
    progress: Callable[[str], None] | None,
) -> EngineResult:
    stt = "openai" if engine == "stand-in" else "offline"
    result = EngineResult(engine, turns.vad_kind, turns.turn is not None, words=stt in LOCAL_STT)
    standin: StandIn | None = None
    async with contextlib.AsyncExitStack() as stack:
        # A prompt cache as `ivr run` has by default (IVR_PROMPT_CACHE): fixed texts render once.
        prompts = stack.enter_context(tempfile.TemporaryDirectory(prefix="ivr-turn-prompts-"))
        if engine == "stand-in":
            standin = StandIn()
            await standin.start()
            stack.push_async_callback(standin.close)
            env = {"OPENAI_API_KEY": "sk-stand-in-not-a-real-key", "OPENAI_BASE_URL": standin.url}
            registry = SpeechRegistry(env=env, cache_dir=prompts)
            speech = registry_factory(registry, default_stt=stt, default_tts="openai-speech")
        else:  # as `ivr run` runs them: in one speech worker process (IVR_SPEECH_WORKERS=1)
            pool = SpeechPool([EngineSpec("stt", "offline", language="en"), EngineSpec("tts", "offline")])
            await pool.start()
            stack.push_async_callback(pool.aclose)
            registry = SpeechRegistry(env=dict(os.environ), cache_dir=prompts, pool=pool)
            speech = registry_factory(registry, default_stt=stt, default_tts="offline")
        stack.push_async_callback(registry.aclose)
        flows_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ivr-turn-calls-")))
        legs = CallerLegs()
        sim = await stack.enter_async_context(SimAsterisk(media_connector=legs.connect))
        server = await stack.enter_async_context(AudioSocketServer(AudioSocketConfig(port=0)))
        ari = await stack.enter_async_context(AriClient(sim.base_url, sim.username, sim.password))
        trace: list[TraceEvent] = []
        for n, item in enumerate(items):
            (flows_dir / f"t{n}.yaml").write_text(flow_yaml(item, f"t{n}"), encoding="utf-8")
        app = AriApp(
            ari=ari,
            audiosocket=server,
            services=CallServices(
                flows=FlowCatalog(flows_dir, default="t0"), speech=speech, tracer=trace.append, turns=turns
            ),
            config=AriAppConfig(advertise=f"127.0.0.1:{server.port}", step_timeout=30.0),
        )
        await app.start()
        stack.push_async_callback(app.close)
        for n, item in enumerate(items):
            if standin is not None:
                standin.transcript = item.spec.answer
            pcm, end_s = answer_pcm(item, cache)
            reply, path, variables = await _one_call(app, sim, legs, trace, f"t{n}", pcm, end_s)
            answer = _answer(item, path, variables)
            heard = tuple(t.text for t in trace if t.kind == "heard")
            result.outcomes.append(
                CallOutcome(item.spec.name, item.spec.kind, reply, answer, item.spec.expect, heard)
            )
        if progress is not None:
            progress(f"end to end, {engine}: done")
    return result


def run(
    cache: Path,
    engines: Sequence[str] = ENGINES,
    *,
    progress: Callable[[str], None] | None = None,
    turns: TurnModels | None = None,
) -> list[EngineResult]:
    """Every answer of the corpus through the runtime, per engine setup (see the module docstring)."""
    items = [i for i in build(cache) if i.spec.kind in ANSWER_KINDS]
    own = turns is None
    models = turns or TurnModels.load()
    try:
        with asyncio.Runner() as runner:
            return [runner.run(_run_engine(e, items, cache, models, progress)) for e in engines]
    finally:
        if own:
            models.close()


def table(results: Sequence[EngineResult]) -> str:
    def f(v: Any, fmt: str = "{:.0f}") -> str:
        return "-" if v is None else fmt.format(v)

    lines = [
        "| engines | VAD, end of turn | answers | speech end -> first reply frame, p50 / p95 (ms) "
        "| complete answers p50 | intent accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r.summary()
        turn = "Smart Turn" if s["turn_model"] else "silence"
        if s["words_checked"]:
            turn += ", words checked at pauses"
        lines.append(
            f"| {s['engine']} | {s['vad']}, {turn} | {s['answers']} | {f(s['reply_p50_ms'])} / "
            f"{f(s['reply_p95_ms'])} | {f(s['complete_p50_ms'])} | {f(s['intent_accuracy'], '{:.0%}')} |"
        )
    return "\n".join(lines)


def misses(results: Sequence[EngineResult]) -> list[str]:
    return [
        f"{r.engine}: {o.item} heard {' / '.join(map(repr, o.heard)) or 'nothing'} -> {o.answer} "
        f"(expected {o.expect})"
        for r in results
        for o in r.outcomes
        if not o.correct
    ]
