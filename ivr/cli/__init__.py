"""The `ivr` command line: one sub-command module per area, each exposing ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ivr import __version__

# Each module defines ``register(subparsers) -> None`` and sets ``func`` on its parsers.
# Listed by name so a broken optional area never hides the others' commands.
COMMAND_MODULES: tuple[str, ...] = (
    "ivr.cli.flow_commands",
    "ivr.cli.run_commands",
    "ivr.cli.simulate_commands",
    "ivr.cli.originate_commands",
    "ivr.cli.prerender_commands",
    "ivr.cli.calls_commands",
    "ivr.cli.bench_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Voice IVRs on Asterisk (ARI + AudioSocket).")
    parser.add_argument("--version", action="version", version=f"ivr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
