"""``ivr simulate`` (one call, printed as it happens) and ``ivr test`` (caller scripts as tests)."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import multiprocessing
import sys
from pathlib import Path

from ivr.flow.errors import FlowError
from ivr.simulation.runner import SimulationError, SimulationResult, simulate
from ivr.simulation.script import CallerScript, ScriptError, load_script
from ivr.simulation.virtual_time import VirtualTimeLoop


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="run one call of a flow against a simulated Asterisk and caller")
    p.add_argument("flow", type=Path, help="flow file, e.g. flows/pizza.yaml")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--caller", type=Path, help="caller script (YAML); default: hang up after the greeting")
    who.add_argument("--interactive", action="store_true", help="type what the caller says")
    p.add_argument("--record", type=Path, help="write a stereo WAV: caller left, IVR right")
    p.add_argument("--format", choices=["slin16", "slin"], help="caller media format (default slin16)")
    p.add_argument(
        "--media",
        choices=["audiosocket", "websocket"],
        help="the call's media transport (default: the script's media:, else audiosocket)",
    )
    p.add_argument("--text", action="store_true", help="skip speech: sim-text engines (fast, for tests)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds each script step may wait")
    p.add_argument("-v", "--verbose", action="store_true", help="log the app's own lines too")
    p.set_defaults(func=cmd_simulate)

    t = sub.add_parser(
        "test",
        help="run caller scripts against a flow as tests (text mode, in virtual time, by default)",
        description="Run caller scripts against a flow. Text mode (the default) runs on a virtual clock: "
        "every wait of the call is skipped, so a 30 s call takes a fraction of a second. --offline uses "
        "real speech and the real clock.",
    )
    t.add_argument("flow", type=Path, help="the flow file the scripts call, e.g. flows/pizza.yaml")
    t.add_argument("scripts", type=Path, nargs="+", help="caller scripts (*.caller.yaml)")
    t.add_argument(
        "--offline", action="store_true", help="real speech (piper + faster-whisper) on the real clock"
    )
    t.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each script step may wait (default 30)"
    )
    t.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        help="run this many scripts at once, one process each (default 1)",
    )
    t.set_defaults(func=cmd_test)


def _default_script() -> CallerScript:
    return CallerScript.model_validate({"steps": [{"silence": 8000}, {"hangup": None}]})


def cmd_simulate(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        script = load_script(args.caller) if args.caller else _default_script()
        result = asyncio.run(
            simulate(
                args.flow,
                script,
                mode="text" if args.text else "offline",
                fmt=args.format,
                media=args.media,
                record=args.record,
                step_timeout=args.timeout,
                interactive=args.interactive,
            )
        )
    except (SimulationError, ScriptError, FlowError) as exc:
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    return 0 if result.passed else 1


def cmd_test(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    jobs = [(args.flow, path, bool(args.offline), float(args.timeout)) for path in args.scripts]
    if args.jobs > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(args.jobs, len(jobs)), mp_context=context) as pool:
            outcomes = list(pool.map(_run_script, *zip(*jobs, strict=True)))
    else:
        outcomes = [_run_script(*job) for job in jobs]
    failed = 0
    for passed, lines in outcomes:
        failed += 0 if passed else 1
        for line in lines:
            print(line)
    total = len(args.scripts)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def _run_script(flow: Path, path: Path, offline: bool, timeout: float) -> tuple[bool, list[str]]:
    """One caller script; returns (passed, the lines to print). Text mode runs in virtual time."""
    try:
        script = load_script(path)
        factory = None if offline else VirtualTimeLoop
        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(
                simulate(flow, script, mode="offline" if offline else "text", out=None, step_timeout=timeout)
            )
    except ScriptError as exc:
        return False, [f"ERROR {exc}"]  # the message starts with the script's path
    except (SimulationError, FlowError) as exc:
        return False, [f"ERROR {path}: {exc}"]
    return result.passed, _result_lines(path, result)


def _result_lines(path: Path, result: SimulationResult) -> list[str]:
    lines = [
        f"{'PASS' if result.passed else 'FAIL'} {path} ({len(result.checks)} checks, {result.mode} mode)"
    ]
    lines += [f"    error: {error}" for error in result.errors]
    lines += [f"    FAIL {c.what}: {c.detail}" for c in result.checks if not c.passed]
    if not result.passed:
        lines.append("    transcript:")
        lines += [f"      {line}" for line in result.transcript]
    return lines
