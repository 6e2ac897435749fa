"""The harness of ``ivr bench --turns``: the media and speech path on the turn corpus, for each VAD and
end-of-turn setup.

For every corpus item (``ivr.bench.turn_corpus``) and configuration (energy or Silero VAD, with or
without the Smart Turn model) the caller's line is fed frame by frame, in virtual time, through the VAD,
the endpointer and the turn detector, listening with the echo guard while the prompt plays (barge-in).
Each ended utterance goes to offline STT (faster-whisper with the step's hints) and the intent matcher.
The end-of-turn model runs for real and its measured time is added to the decision (in frames), so the
delays are what a call on this machine would see. Reported per configuration: end-of-turn decision
delay after the true speech end (p50/p95), answers cut at a pause, intent accuracy, barge-ins on
echo-only and backchannel items (with the static guard, and with ``EchoCheck`` added), and the VAD's CPU
cost per 20 ms frame.

Speech end -> first reply frame needs the call runtime (and an OpenAI stand-in): it is not measured
here. ``run(..., reply_latency=...)`` is the hook for it: given the item and the ended turn it returns
the measured milliseconds, which are then reported next to the decision delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.bench.turn_corpus import LEAD_MS, RATE, Item, build, load_pcm
from ivr.bench.turn_questions import hints_for, interpret, words_finished
from ivr.flow.model import FlowSettings
from ivr.media.bargein import BackchannelFilter, EchoGate
from ivr.media.endpoint import Endpointer, ListenSettings, MaxLengthReached, SpeechEnded, SpeechStarted
from ivr.media.framing import frame_bytes
from ivr.media.turn import CheckTurn, TurnDetector, TurnSettings
from ivr.media.vad import EnergyVad, FrameVad

FRAME_MS = 20
BASELINE_SILENCE_MS = 800
"""Trailing silence without a turn model: the flows' default ``endpointing_silence_ms``."""
DIGITS_SILENCE_MS = FlowSettings().digits_silence_ms
"""A digit capture's trailing silence: the flows' default ``digits_silence_ms``."""
DIGITS_INCOMPLETE_MS = FlowSettings().digits_incomplete_ms
"""Silence that ends a digit string still shorter than the capture's ``min_length`` (words checked): the
flows' default ``digits_incomplete_ms``."""
ReplyLatency = Callable[[Item, SpeechEnded], float]


@dataclass(frozen=True, slots=True)
class Config:
    vad: str
    """"energy" or "silero"."""
    turn: bool
    """Smart Turn decides at pauses (else: BASELINE_SILENCE_MS of silence)."""
    echo_gate: bool
    """Barge-in through ``EchoGate`` (+ ``note_playback``) and ``BackchannelFilter``; else today's static guard."""
    digits_by_silence: bool = False
    """Digit captures skip the model and wait DIGITS_SILENCE_MS (the per-step setting README suggests)."""
    words_check: bool = False
    """At each pause the words so far are transcribed too: the turn ends early only when they already
    make a whole answer for the step (``words_finished``); a digit string shorter than the capture's
    ``min_length`` waits up to DIGITS_INCOMPLETE_MS."""

    @property
    def label(self) -> str:
        turn = "Smart Turn" if self.turn else f"{BASELINE_SILENCE_MS} ms silence"
        if self.digits_by_silence:
            turn += f" (digits: {DIGITS_SILENCE_MS} ms silence)"
        guard = "EchoGate + backchannel filter" if self.echo_gate else "static echo guard"
        words = ", words checked at pauses" if self.words_check else ""
        return f"{self.vad} VAD, {turn}, {guard}{words}"


CONFIGS = (
    Config("energy", False, False),
    Config("silero", False, False),
    Config("energy", False, True),
    Config("energy", True, True),
    Config("silero", False, True),
    Config("silero", True, True),
    Config("energy", True, True, digits_by_silence=True),
    Config("silero", True, True, digits_by_silence=True),
    Config("energy", True, True, digits_by_silence=True, words_check=True),
    Config("silero", True, True, digits_by_silence=True, words_check=True),
)


@dataclass(slots=True)
class Outcome:
    item: str
    kind: str
    delay_ms: float | None = None
    cut_early: bool = False
    answer: str | None = None
    correct: bool | None = None
    barge_in: bool = False
    """Speech was detected while the prompt played (the prompt paused or stopped)."""
    resumed: int = 0
    """Times the backchannel filter resumed the prompt."""
    prompt_stopped: bool = False
    """The prompt was stopped for good by the caller's side."""
    transcript: str = ""
    reply_ms: float | None = None


@dataclass(slots=True)
class ConfigResult:
    config: Config
    outcomes: list[Outcome] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    words_ms: list[float] = field(default_factory=list)
    """STT time of each words check at a pause (``Config.words_check``)."""
    vad_us_per_frame: float = 0.0

    def delays(self) -> list[float]:
        return [o.delay_ms for o in self.outcomes if o.delay_ms is not None and not o.cut_early]

    def summary(self) -> dict[str, Any]:
        answers = [o for o in self.outcomes if o.kind in ("complete", "number_pause", "uhm")]
        complete = [o.delay_ms for o in answers if o.kind == "complete" and o.delay_ms is not None]
        d = self.delays()
        quiet = [o for o in self.outcomes if o.kind == "echo_only"]
        noise = [o for o in self.outcomes if o.kind == "noise_only"]
        back = [o for o in self.outcomes if o.kind == "backchannel"]
        replies = [o.reply_ms for o in self.outcomes if o.reply_ms is not None]
        return {
            "config": self.config.label,
            "eot_p50_ms": _pct(d, 50),
            "eot_p95_ms": _pct(d, 95),
            "eot_complete_p50_ms": _pct(complete, 50),
            "cut_early": sum(o.cut_early for o in answers),
            "answers": len(answers),
            "intent_accuracy": sum(bool(o.correct) for o in answers) / len(answers) if answers else None,
            "false_barge_ins_echo": sum(o.prompt_stopped for o in quiet),
            "echo_pauses": sum(o.barge_in for o in quiet),
            "echo_items": len(quiet),
            "backchannel_stops": sum(o.prompt_stopped for o in back),
            "backchannel_pauses": sum(o.barge_in for o in back),
            "backchannel_items": len(back),
            "noise_taken": sum(o.transcript != "" for o in noise),
            "noise_answers": sum(o.answer is not None for o in noise),
            "noise_items": len(noise),
            "model_checks": len(self.model_ms),
            "model_ms_p50": _pct(self.model_ms, 50),
            "words_checks": len(self.words_ms),
            "words_ms_p50": _pct(self.words_ms, 50),
            "vad_us_per_frame": round(self.vad_us_per_frame, 1),
            "reply_p50_ms": _pct(replies, 50),
        }


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="nearest"))


class _Stt:
    """faster-whisper with a per-run cache: the same utterance (same cut) is transcribed once.
    ``last_ms``, ``last_confidence``: the last utterance's time to transcribe (measured once) and confidence."""

    def __init__(self, hint_style: str) -> None:
        from ivr.speech.offline import WhisperTranscriber

        self.engine = WhisperTranscriber(hint_style=hint_style)  # type: ignore[arg-type]
        self.cache: dict[tuple[str, tuple[str, ...]], tuple[str, float | None, float]] = {}
        self.loop = asyncio.new_event_loop()
        self.last_ms = 0.0
        self.last_confidence: float | None = None

    def text(self, pcm: bytes, hints: list[str]) -> str:
        key = (hashlib.sha256(pcm).hexdigest(), tuple(hints))
        if key not in self.cache:
            t0 = time.perf_counter()
            t = self.loop.run_until_complete(
                self.engine.transcribe(pcm, rate=RATE, hints=hints, language="en")
            )
            self.cache[key] = (t.text, t.confidence, (time.perf_counter() - t0) * 1000)
        text, self.last_confidence, self.last_ms = self.cache[key]
        return text

    def close(self) -> None:
        self.loop.close()


def _vad(kind: str, silero_model: Any) -> FrameVad:
    if kind == "energy":
        return EnergyVad(RATE)
    from ivr.media.silero import SileroVad

    return SileroVad(RATE, silero_model)


def _samples(cache: Path, name: str) -> npt.NDArray[np.float64]:
    return np.frombuffer(load_pcm(cache, name), dtype="<i2").astype(np.float64)


def _pcm16(x: npt.NDArray[np.float64]) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def run_item(
    item: Item,
    cache: Path,
    config: Config,
    *,
    stt: _Stt,
    silero_model: Any = None,
    turn_model: Any = None,
    turn: TurnSettings,
    result: ConfigResult,
    reply_latency: ReplyLatency | None = None,
) -> Outcome:
    """One question: play the prompt (barge-in-able), mix its echo from what is actually sent, listen."""
    n = frame_bytes(RATE) // 2
    caller = _samples(cache, item.caller)
    prompt = _samples(cache, item.prompt)
    frames_total = caller.size // n
    sent = np.zeros(caller.size + n)
    gain = 10 ** (item.spec.echo_db / 20)
    delay = RATE * item.spec.echo_delay_ms // 1000
    inner = _vad(config.vad, silero_model)
    gate = EchoGate(inner) if config.echo_gate else None
    ep = Endpointer(RATE, detector=gate if gate is not None else inner)
    filt = BackchannelFilter() if config.echo_gate else None
    listen = ListenSettings(trailing_silence_ms=BASELINE_SILENCE_MS, no_input_ms=None)
    step_model = config.turn and turn_model is not None
    turn_settings = turn if step_model else None
    if config.digits_by_silence and item.spec.capture == "digits":
        listen = ListenSettings(trailing_silence_ms=DIGITS_SILENCE_MS, no_input_ms=None)
        step_model = False  # the words alone judge a pause of DIGITS_SILENCE_MS (if checked)
        turn_settings = TurnSettings(DIGITS_SILENCE_MS, DIGITS_INCOMPLETE_MS) if config.words_check else None
    td = TurnDetector(ep, model=turn_settings is not None)
    hints = hints_for(item)
    td.listen(listen, turn=turn_settings, echo_guard=True)
    lead = LEAD_MS // FRAME_MS
    state, src = "waiting", 0
    out = Outcome(item.spec.name, item.spec.kind)
    due: dict[int, list[tuple[int, float | None]]] = {}
    ended: SpeechEnded | None = None
    vad_time = 0.0
    for i in range(frames_total):
        a, b = i * n, (i + 1) * n
        if i >= lead and state in ("waiting", "playing"):
            state = "playing"
            chunk = prompt[src : src + n]
            sent[a : a + chunk.size] = chunk
            src += chunk.size
        echo = np.zeros(n)
        if b - delay > 0:
            seg = sent[max(0, a - delay) : b - delay]
            echo[n - seg.size :] = seg * gain
        heard = _pcm16(caller[a:b] + echo)
        if gate is not None:
            ep.note_playback(_pcm16(sent[a:b]))
        t0 = time.perf_counter()
        ev = td.feed(heard)
        vad_time += time.perf_counter() - t0
        if state == "playing" and src >= prompt.size:
            state = "done"
            ep.end_echo_guard()
        if isinstance(ev, SpeechStarted) and state == "playing":
            out.barge_in = True
            ep.end_echo_guard()
            if filt is not None:
                filt.start(voiced_ms=ListenSettings().echo_min_voiced_ms)
                state = "paused"
            else:
                state = "stopped"
        elif filt is not None and gate is not None and filt.active:
            decision = filt.frame(gate.last)
            if decision == "resume":
                out.resumed += 1
                state = "playing"
                ended = None
                due.clear()
                td.listen(listen, turn=turn_settings, echo_guard=True)
                continue
            if decision == "interrupt":
                state = "stopped"
        if isinstance(ev, CheckTurn):
            p: float | None = 1.0
            ms = 0.0
            if step_model:
                t1 = time.perf_counter()
                p = turn_model.probability(ev.pcm, ev.rate)
                ms = (time.perf_counter() - t1) * 1000
                result.model_ms.append(ms)
            if config.words_check:  # transcribed beside the model (another thread): the later one decides
                if not words_finished(item, stt.text(ev.pcm, hints), stt.last_confidence):
                    p = 0.0
                result.words_ms.append(stt.last_ms)
                ms = max(ms, stt.last_ms)
            due.setdefault(i + max(1, math.ceil(ms / FRAME_MS)), []).append((ev.request, p))
        elif isinstance(ev, SpeechEnded):
            ended = ev
        elif isinstance(ev, MaxLengthReached):
            ended = SpeechEnded(ev.pcm, ev.duration_ms, ev.started_at_ms, i * FRAME_MS)
        for request, prob in due.pop(i, []):
            got = td.verdict(request, prob)
            if got is not None:
                ended = got
        if ended is not None and not (filt is not None and filt.active):
            decided_ms = (i + 1) * FRAME_MS
            if item.speech_end_ms is not None:
                out.delay_ms = decided_ms - item.speech_end_ms
                out.cut_early = decided_ms < item.speech_end_ms - 100
            break
    out.prompt_stopped = state in ("stopped", "paused")
    result.vad_us_per_frame += vad_time / max(1, frames_total) * 1e6
    if ended is not None and len(ended.pcm) >= 2 * RATE // 10:
        out.transcript = stt.text(ended.pcm, hints)
        out.answer = interpret(item, out.transcript)
        if reply_latency is not None:
            out.reply_ms = reply_latency(item, ended)
    out.correct = out.answer == item.spec.expect
    return out


def run(
    cache: Path,
    configs: Sequence[Config] = CONFIGS,
    *,
    hint_style: str = "both",
    turn: TurnSettings | None = None,
    reply_latency: ReplyLatency | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[ConfigResult]:
    """Run every configuration over the corpus (built into ``cache`` if missing)."""
    items = build(cache)
    turn = turn or TurnSettings(min_silence_ms=200, max_silence_ms=1500)
    silero_model = turn_model = None
    if any(c.vad == "silero" for c in configs):
        from ivr.media.silero import SileroModel

        silero_model = SileroModel()
    if any(c.turn for c in configs):
        from ivr.media.smart_turn import SmartTurnModel

        turn_model = SmartTurnModel()
    stt = _Stt(hint_style)
    results = []
    try:
        for config in configs:
            res = ConfigResult(config)
            for item in items:
                res.outcomes.append(
                    run_item(
                        item,
                        cache,
                        config,
                        stt=stt,
                        silero_model=silero_model,
                        turn_model=turn_model,
                        turn=turn,
                        result=res,
                        reply_latency=reply_latency,
                    )
                )
            res.vad_us_per_frame /= len(items)
            results.append(res)
            if progress is not None:
                progress(f"{config.label}: done")
    finally:
        stt.close()
    return results
