"""``ivr bench --turns``: the command (its options, the VAD cost measurement, the report tables) over the
decision harness of :mod:`ivr.bench.turn_harness` and, with ``--end-to-end``, the whole calls of
:mod:`ivr.bench.turn_calls`.

The harness and the questions (:mod:`ivr.bench.turn_questions`) live apart so that ``turn_calls`` needs
nothing from this module; the names tests and callers use from here are re-exported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ivr.bench.turn_harness import (
    CONFIGS,
    DIGITS_INCOMPLETE_MS,
    DIGITS_SILENCE_MS,
    Config,
    ConfigResult,
    Outcome,
    run,
    run_item,
)
from ivr.bench.turn_questions import flow_yaml, hints_for, words_finished
from ivr.media.framing import frame_bytes
from ivr.media.vad import EnergyVad

__all__ = [
    "CONFIGS",
    "DIGITS_INCOMPLETE_MS",
    "DIGITS_SILENCE_MS",
    "Config",
    "ConfigResult",
    "Outcome",
    "add_arguments",
    "cmd_turns",
    "flow_yaml",
    "hints_for",
    "run",
    "run_item",
    "table",
    "words_finished",
]


def vad_cost(calls: int = 64, seconds: float = 2.0) -> dict[str, float]:
    """CPU per 20 ms frame and call (us) while the caller talks: the energy VAD; Silero scoring inline;
    and batched over ``calls`` calls, split into the inbound path (``update``) and the worker's share."""
    from ivr.media.silero import SileroModel, SileroVad, VadBatcher

    rng = np.random.default_rng(0)
    model = SileroModel()
    out: dict[str, float] = {}
    for rate in (8000, 16000):
        n = frame_bytes(rate) // 2
        count = int(seconds * 50)
        speechy = [(rng.normal(0, 3000, n)).astype("<i2").tobytes() for _ in range(count)]
        energy = EnergyVad(rate)
        t = time.perf_counter()
        for f in speechy:
            energy.update(f)
        out[f"energy_{rate}"] = (time.perf_counter() - t) / count * 1e6
        inline = SileroVad(rate, model, _gate_off())
        t = time.perf_counter()
        for f in speechy:
            inline.update(f)
        out[f"silero_inline_{rate}"] = (time.perf_counter() - t) / count * 1e6
        batcher = VadBatcher(model)
        vads = [SileroVad(rate, model, _gate_off(), batcher=batcher) for _ in range(calls)]
        inbound = worker = 0.0
        for f in speechy:
            t = time.perf_counter()
            for v in vads:
                v.update(f)
            t1 = time.perf_counter()
            batcher.run_pending()
            inbound += t1 - t
            worker += time.perf_counter() - t1
        out[f"silero_batched_update_{rate}"] = inbound / (count * calls) * 1e6
        out[f"silero_batched_worker_{rate}"] = worker / (count * calls) * 1e6
    return out


def _gate_off() -> Any:
    from ivr.media.silero import SileroSettings

    return SileroSettings(gate_dbfs=-200.0)  # score every window: the cost while the caller talks


def table(results: Sequence[ConfigResult]) -> str:
    rows = [r.summary() for r in results]

    def f(v: Any, fmt: str = "{:.0f}") -> str:
        return "-" if v is None else fmt.format(v)

    lines = [
        "| configuration | end of turn after speech, p50 / p95 (ms) | complete answers p50 | cut at a pause "
        "| intent accuracy | echo only: prompt stopped (paused) | backchannels: prompt stopped (paused) "
        "| noise: heard as speech / taken as an answer | model checks, p50 ms | words checks, p50 ms "
        "| VAD us/frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {f(r['eot_p50_ms'])} / {f(r['eot_p95_ms'])} | {f(r['eot_complete_p50_ms'])} "
            f"| {r['cut_early']}/{r['answers']} | {f(r['intent_accuracy'], '{:.0%}')} "
            f"| {r['false_barge_ins_echo']} ({r['echo_pauses']}) of {r['echo_items']} "
            f"| {r['backchannel_stops']} ({r['backchannel_pauses']}) of {r['backchannel_items']} "
            f"| {r['noise_taken']} / {r['noise_answers']} of {r['noise_items']} "
            f"| {r['model_checks']}, {f(r['model_ms_p50'])} | {r['words_checks']}, {f(r['words_ms_p50'])} "
            f"| {r['vad_us_per_frame']} |"
        )
    replies = [r["reply_p50_ms"] for r in rows]
    if all(v is None for v in replies):
        lines.append("")
        lines.append(
            "speech end -> first reply frame: not measured by these decision runs (see --end-to-end, whole calls)"
        )
    return "\n".join(lines)


def misses(results: Sequence[ConfigResult]) -> list[str]:
    """Items answered wrongly or cut, per configuration (for the report's detail)."""
    out = []
    for r in results:
        for o in r.outcomes:
            if (o.correct is False and o.kind in ("complete", "number_pause", "uhm")) or o.cut_early:
                cut = " (cut at the pause)" if o.cut_early else ""
                out.append(f"{r.config.label}: {o.item} heard {o.transcript!r} -> {o.answer}{cut}")
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ivr bench --turns`` options (registered by ivr/cli/bench_commands.py)."""
    p.add_argument(
        "--turns-cache",
        type=Path,
        default=Path("benchmarks/turns_cache"),
        help="turn corpus directory, generated on first use (default benchmarks/turns_cache)",
    )
    p.add_argument(
        "--turns-config",
        choices=["all", "today", "best"],
        default="all",
        help="configurations: all, today's (energy, 800 ms, static guard) or the best two (default all)",
    )
    p.add_argument(
        "--hint-style",
        choices=["both", "prompt", "hotwords", "none"],
        default="both",
        help="how the step's phrases bias faster-whisper (default both)",
    )
    p.add_argument("--turns-out", type=Path, help="also write the figures as JSON here")
    p.add_argument("--vad-cost", action="store_true", help="also measure VAD CPU per frame (energy/Silero)")
    p.add_argument(
        "--end-to-end",
        choices=["both", "stand-in", "offline", "none"],
        default="both",
        help="also run every answer as a whole call through the runtime, measuring speech end -> first "
        "reply frame at the caller: with a local OpenAI stand-in, offline engines, both (default) or none",
    )


def cmd_turns(args: argparse.Namespace) -> int:
    from ivr.media.models import ModelUnavailable

    configs: Sequence[Config] = CONFIGS
    if args.turns_config == "today":
        configs = CONFIGS[:1]
    elif args.turns_config == "best":
        configs = CONFIGS[-2:]
    print(f"ivr bench --turns: corpus in {args.turns_cache} (made with piper on first use)", file=sys.stderr)
    try:
        results = run(
            args.turns_cache,
            configs,
            hint_style=args.hint_style,
            progress=lambda line: print(line, file=sys.stderr),
        )
        cost = vad_cost() if args.vad_cost else None
        calls = end_to_end(args) if args.end_to_end != "none" else []
    except ModelUnavailable as exc:
        print(f"ivr bench --turns: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    if calls:
        from ivr.bench import turn_calls

        print()
        print(turn_calls.table(calls))
        for line in turn_calls.misses(calls):
            print("  miss (end to end): " + line)
    if cost is not None:
        print("VAD CPU per 20 ms frame and call (us): " + ", ".join(f"{k} {v:.1f}" for k, v in cost.items()))
    for line in misses(results):
        print("  miss: " + line)
    if args.turns_out is not None:
        data = {
            "hint_style": args.hint_style,
            "results": [r.summary() for r in results],
            "vad_cost": cost,
            "end_to_end": [c.summary() for c in calls],
        }
        args.turns_out.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 0


def end_to_end(args: argparse.Namespace) -> list[Any]:
    """Whole calls per answer (``ivr.bench.turn_calls``), for the engines ``--end-to-end`` names."""
    from ivr.bench import turn_calls

    engines = turn_calls.ENGINES if args.end_to_end == "both" else (args.end_to_end,)
    return list(turn_calls.run(args.turns_cache, engines, progress=lambda line: print(line, file=sys.stderr)))
