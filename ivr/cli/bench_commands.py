"""``ivr bench``: the most calls each server shape holds with clean audio, next to a C reference server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ivr.bench.reference import ReferenceBuildError
from ivr.bench.report import describe_machine, document, plot, points_table, table, write_json
from ivr.bench.search import SearchPlan, run_search
from ivr.bench.servers import SHAPES, BenchError, Shape, prepare

RESULTS_DIR = Path("benchmarks") / "results"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def _waves(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected one positive number of waves, not {text!r}")
    return value


def _rates(text: str) -> list[int]:
    values = _int_list(text)
    if any(v not in (8000, 16000) for v in values):
        raise argparse.ArgumentTypeError("rates are 8000 and/or 16000")
    return values


def _shapes(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"shapes are {', '.join(SHAPES)}, not {', '.join(unknown) or text!r}"
        )
    return names


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="load test: most calls per server shape with clean audio, next to a C reference (sim engines)",
        description=(
            "Plays Asterisk's side of N calls (own process) against each server under test (own process): "
            "a C single-clock AudioSocket reference built here with gcc, `ivr run --no-ari` and `ivr run` "
            "in ARI mode with a flow that keeps talking. Per rate and shape it searches the most calls with "
            "p99 frame lateness <= 5 ms, no drops and drift <= one frame, and reports CPU and RSS per call "
            "and ratios to the reference. Speech uses the instant sim-text engines: the numbers are the "
            "framework's own overhead."
        ),
    )
    add_search_arguments(p)
    p.add_argument(
        "--turns",
        action="store_true",
        help="instead: the turn benchmark (VAD, end of turn, offline STT, intents) on the generated corpus",
    )
    from ivr.bench.turns import add_arguments as add_turn_arguments

    add_turn_arguments(p)
    p.set_defaults(func=cmd_bench)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a few seconds, 5 calls, one run per shape (CI)")
    p.add_argument(
        "--shapes", type=_shapes, default=list(SHAPES), help="servers: ref,dialplan,ari (default: all)"
    )
    p.add_argument("--rates", type=_rates, help="8000,16000 (default: both; --quick: 16000)")
    p.add_argument(
        "--workers",
        type=_int_list,
        help="ivr run worker counts, e.g. 1,2 (default: 1 and this machine's CPUs, when ivr run has --workers)",
    )
    p.add_argument("--calls", type=_int_list, help="measure exactly these N instead of searching")
    p.add_argument("--start", type=int, default=100, help="first N of the search (default 100)")
    p.add_argument("--max-calls", type=int, default=1600, help="largest N tried (default 1600)")
    p.add_argument("--resolution", type=int, default=50, help="bisection stops within this many calls")
    p.add_argument("--seconds", type=float, help="measurement window per run (default 10)")
    p.add_argument("--repeat", type=int, help="runs per point, medians reported (default 3)")
    p.add_argument("--setup-rate", type=float, default=200.0, help="calls placed per second (default 200)")
    p.add_argument("--settle", type=float, help="seconds between set-up and the window (default 1)")
    p.add_argument(
        "--waves",
        type=_waves,
        default=1,
        help="waves of the N calls on each server; RSS after the last one tells kept memory from a leak (default 1)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers and the generator to CPUs")
    p.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for the machine to be quiet (default 120; --quick 0)",
    )
    p.add_argument(
        "--quiet-below",
        type=float,
        default=25.0,
        help="quiet: all CPUs together below this %% busy (default 25)",
    )
    p.add_argument(
        "--pacer",
        choices=("auto", "native", "loop"),
        default="auto",
        help="who paces AudioSocket frames in the ivr run shapes (IVR_PACER; default auto: native where built)",
    )
    p.add_argument(
        "--pacer-realtime",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="run the native pacing thread at this SCHED_FIFO priority (IVR_PACER_REALTIME; needs "
        "CAP_SYS_NICE; default 0: the usual scheduling)",
    )
    p.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/bench-DATE.json)")
    p.add_argument("--plot", type=Path, help="PNG plot, needs matplotlib (default: beside --out)")
    p.add_argument("--log-dir", type=Path, help="keep the servers' logs here (default: discarded)")


def search_plan(args: argparse.Namespace) -> tuple[SearchPlan, list[str]]:
    """The plan from the flags (``--quick`` fills in small defaults), and what is skipped and why."""
    quick = args.quick
    cpus = len(os.sched_getaffinity(0))
    workers = args.workers or sorted({1, cpus})
    shapes: list[Shape] = []
    for kind in args.shapes:
        if kind == "ref":
            shapes.append(Shape("ref"))
        else:
            shapes.extend(Shape(kind, w) for w in ([1] if quick and not args.workers else workers))
    plan = SearchPlan(
        shapes=shapes,
        rates=args.rates or ([16000] if quick else [8000, 16000]),
        calls=args.calls or ([5] if quick else None),
        start=args.start,
        max_calls=args.max_calls,
        resolution=args.resolution,
        repeat=args.repeat or (1 if quick else 3),
        seconds=args.seconds or (1.5 if quick else 10.0),
        setup_rate=args.setup_rate,
        settle=args.settle if args.settle is not None else (0.3 if quick else 1.0),
        after=0.5 if quick else 3.0,
        pin=not args.no_pin,
        log_dir=args.log_dir,
        quiet_below=args.quiet_below,
        quiet_wait=args.quiet_wait if args.quiet_wait is not None else (0.0 if quick else 120.0),
        waves=args.waves,
    )
    return plan, []


def _runner() -> tuple[Callable[[Coroutine[Any, Any, Any]], Any], str]:
    """The generator's event loop: uvloop when installed (a lean generator), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)

    return run, "uvloop"


async def _stopped_by_sigterm(coro: Coroutine[Any, Any, Any]) -> Any:
    """SIGTERM cancels the bench like Ctrl-C does, so every server under test is stopped, never orphaned."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def cmd_bench(args: argparse.Namespace) -> int:
    return run_search_command(args)


def run_search_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.turns:
        from ivr.bench.turns import cmd_turns

        return cmd_turns(args)
    if (args.repeat is not None and args.repeat < 1) or (args.seconds is not None and args.seconds <= 0):
        print("ivr bench: --repeat must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    plan, skipped = search_plan(args)
    started = time.time()
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)  # noqa: E731
    run, loop_name = _runner()
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as work:
        try:
            ctx = prepare(plan.shapes, Path(work), pacer=args.pacer, pacer_realtime=args.pacer_realtime)
        except ReferenceBuildError as exc:
            print(f"ivr bench: {exc} (or leave it out: --shapes dialplan,ari)", file=sys.stderr)
            return 1
        except BenchError as exc:
            print(f"ivr bench: {exc}", file=sys.stderr)
            return 1
        if not ctx.workers_flag:
            multi = sorted({s.workers for s in plan.shapes if s.workers > 1})
            if multi:
                skipped.append(
                    f"--workers {','.join(map(str, multi))}: this ivr run has no --workers option (one process)"
                )
            plan.shapes = [s for s in plan.shapes if s.workers == 1]
        for line in skipped:
            say(f"ivr bench: skipped {line}")
        say(
            "ivr bench: sim-text benchmark engines (instant, deterministic simulation speech): the numbers "
            f"are the framework's own overhead; shapes {', '.join(s.key for s in plan.shapes)}"
        )
        try:
            results = run(_stopped_by_sigterm(run_search(plan, ctx, say)))
        except BenchError as exc:
            print(f"ivr bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except asyncio.CancelledError:
            print("ivr bench: stopped (SIGTERM); the servers under test were stopped", file=sys.stderr)
            return 143
        doc = document(plan, ctx, results, generator_loop=loop_name, skipped=skipped, started=started)
    out = args.out or RESULTS_DIR / f"bench-{doc['date']}.json"
    write_json(doc, out)
    print(describe_machine(doc))
    print(f"pinning: {_pinning(doc)}")
    print(table(doc), end="")
    print()
    print(points_table(doc), end="")
    for line in skipped:
        print(f"skipped: {line}")
    png = args.plot or out.with_suffix(".png")
    if plot(doc, png):
        print(f"wrote {out} and {png}")
    else:
        print(f"wrote {out} (no plot: matplotlib is not installed)")
    return 0


def _pinning(doc: dict[str, Any]) -> str:
    notes = sorted(
        {
            f"{e['shape']}: {run['pinning']['note']} (generator nice {run['pinning']['generator_nice']})"
            for e in doc["results"]
            for p in e["points"]
            for run in p["runs"][:1]
        }
    )
    return "; ".join(notes) if notes else "none"


def main(argv: list[str] | None = None) -> int:
    """``python -m ivr.cli.bench_commands ...``: the same command before it is registered in ``ivr``."""
    parser = argparse.ArgumentParser(prog="ivr")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
