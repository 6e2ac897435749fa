"""``ivr bench``: ramp concurrent calls through a separate ``ivr run`` and find how many stay clean."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ivr.bench.generator import BenchError
from ivr.bench.report import BenchPlan, plot, run_bench, table, write_json


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("call counts must be positive")
    return values


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="load test: N concurrent simulated calls through a separate `ivr run` (simulation engines)",
        description=(
            "Starts `ivr run` as a separate process against a simulated Asterisk hosted here, ramps the "
            "number of concurrent full-duplex calls and reports, per N, the app's CPU and RSS per call, "
            "outbound frame lateness and drift measured at the caller, drops and response latency. "
            "Speech uses the instant sim-text benchmark engines: the numbers are the framework's own "
            "overhead."
        ),
    )
    p.add_argument("--calls", type=_int_list, default=[10, 50, 100, 200, 300, 500], help="N per step")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window per run (default 10)")
    p.add_argument("--repeat", type=int, default=3, help="runs per step; medians are reported (default 3)")
    p.add_argument(
        "--rate", type=int, choices=[8000, 16000], default=16000, help="audio rate (default 16000)"
    )
    p.add_argument("--out", type=Path, default=Path("bench.json"), help="JSON result (default bench.json)")
    p.add_argument("--plot", type=Path, default=Path("bench.png"), help="PNG plot, needs matplotlib")
    p.add_argument("--setup-rate", type=float, default=100.0, help="calls placed per second (default 100)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after set-up before measuring")
    p.add_argument("--no-pin", action="store_true", help="do not pin the app and generator to CPUs")
    p.add_argument("--app-uvloop", action="store_true", help="run the app on uvloop (ivr run uses asyncio)")
    p.add_argument(
        "--app-gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in the app after its imports (not what ivr run does today)",
    )
    p.add_argument("--keep-going", action="store_true", help="keep ramping after a step fails")
    p.add_argument("--log-dir", type=Path, help="keep the app's logs here (default: discarded)")
    p.add_argument(
        "--turns",
        action="store_true",
        help="instead: the turn benchmark (VAD, end of turn, offline STT, intents) on the generated corpus",
    )
    from ivr.bench.turns import add_arguments as add_turn_arguments

    add_turn_arguments(p)
    p.set_defaults(func=cmd_bench)


def _runner() -> tuple[Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]], str]:
    """The generator's event loop: uvloop when installed (a lean generator), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"

    def run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)

    return run, "uvloop"


def cmd_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.turns:
        from ivr.bench.turns import cmd_turns

        return cmd_turns(args)
    if args.repeat < 1 or args.seconds <= 0:
        print("ivr bench: --repeat must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    if args.app_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print(
                "ivr bench: --app-uvloop needs uvloop (pip install 'asterisk-ivr[uvloop]')", file=sys.stderr
            )
            return 2
    plan = BenchPlan(
        calls=args.calls,
        seconds=args.seconds,
        repeat=args.repeat,
        rate=args.rate,
        setup_rate=args.setup_rate,
        settle=args.settle,
        pin=not args.no_pin,
        app_uvloop=args.app_uvloop,
        app_gc_freeze=args.app_gc_freeze,
        keep_going=args.keep_going,
        log_dir=args.log_dir,
    )
    run, loop_name = _runner()
    print(
        "ivr bench: sim-text benchmark engines (instant, deterministic simulation speech): the numbers "
        f"are the framework's own overhead; generator on {loop_name}",
        file=sys.stderr,
    )
    try:
        result = run(run_bench(plan, lambda line: print(line, file=sys.stderr), generator_loop=loop_name))
    except BenchError as exc:
        print(f"ivr bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    write_json(result, args.out)
    print(table(result), end="")
    best = result["max_calls_ok"]
    print(f"largest N with p99 lateness <= 5 ms and no drops: {best if best is not None else 'none'}")
    if result["passed_above_first_failure"]:
        above = ", ".join(str(n) for n in result["passed_above_first_failure"])
        print(f"(also passed above the first failing step, not counted: {above})")
    if any(step["generator_saturated"] for step in result["steps"]):
        print("warning: the load generator itself used >= 90% of its CPU: those steps measure it, not ivr")
    if plot(result, args.plot):
        print(f"wrote {args.out} and {args.plot}")
    else:
        print(f"wrote {args.out} (no plot: matplotlib is not installed)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ivr.cli.bench_commands ...``: the same command before it is registered in ``ivr``."""
    parser = argparse.ArgumentParser(prog="ivr")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
