"""``ivr simulate`` (one call, printed as it happens) and ``ivr test`` (caller scripts as tests)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ivr.flow.errors import FlowError
from ivr.simulation.runner import SimulationError, SimulationResult, simulate
from ivr.simulation.script import CallerScript, ScriptError, load_script


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="run one call of a flow against a simulated Asterisk and caller")
    p.add_argument("flow", type=Path, help="flow file, e.g. flows/pizza.yaml")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--caller", type=Path, help="caller script (YAML); default: hang up after the greeting")
    who.add_argument("--interactive", action="store_true", help="type what the caller says")
    p.add_argument("--record", type=Path, help="write a stereo WAV: caller left, IVR right")
    p.add_argument("--format", choices=["slin16", "slin"], help="caller media format (default slin16)")
    p.add_argument("--text", action="store_true", help="skip speech: sim-text engines (fast, for tests)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds each script step may wait")
    p.add_argument("-v", "--verbose", action="store_true", help="log the app's own lines too")
    p.set_defaults(func=cmd_simulate)

    t = sub.add_parser("test", help="run caller scripts against a flow as tests (text mode by default)")
    t.add_argument("flow", type=Path)
    t.add_argument("scripts", type=Path, nargs="+")
    t.add_argument(
        "--offline", action="store_true", help="use the offline speech engines instead of sim-text"
    )
    t.add_argument("--timeout", type=float, default=30.0)
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
    failed = 0
    for path in args.scripts:
        try:
            script = load_script(path)
            result = asyncio.run(
                simulate(
                    args.flow,
                    script,
                    mode="offline" if args.offline else "text",
                    out=None,
                    step_timeout=args.timeout,
                )
            )
        except ScriptError as exc:
            print(f"ERROR {exc}")  # the message starts with the script's path
            failed += 1
            continue
        except (SimulationError, FlowError) as exc:
            print(f"ERROR {path}: {exc}")
            failed += 1
            continue
        failed += 0 if result.passed else 1
        _print_result(path, result)
    total = len(args.scripts)
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


def _print_result(path: Path, result: SimulationResult) -> None:
    print(f"{'PASS' if result.passed else 'FAIL'} {path} ({len(result.checks)} checks, {result.mode} mode)")
    for error in result.errors:
        print(f"    error: {error}")
    for check in result.checks:
        if not check.passed:
            print(f"    FAIL {check.what}: {check.detail}")
    if not result.passed:
        print("    transcript:")
        for line in result.transcript:
            print(f"      {line}")
