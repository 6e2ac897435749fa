"""``ivr run``: serve calls until SIGTERM, in ARI mode (default) or dialplan-only mode (``--no-ari``).

The flags and the exit code live here; assembling the process is :mod:`ivr.workers.process`. Startup
checks everything it can before taking a call and fails with one line, never a traceback: bad
settings, flow errors (file:line), a port in use, an unreachable Asterisk, a wrong ARI password.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ivr.config import ConfigError, load_settings
from ivr.logs import setup_logging
from ivr.workers.process import StartupError, serve
from ivr.workers.supervisor import Supervisor

log = logging.getLogger("ivr.run")

FLAG_SETTINGS = (
    ("--flows", "flows", "a flow file or a directory of flows (IVR_FLOWS)"),
    ("--default-flow", "default_flow", "flow for calls that name none (IVR_DEFAULT_FLOW)"),
    ("--ari-url", "ari_url", "Asterisk HTTP base URL without /ari (IVR_ARI_URL)"),
    (
        "--ari-user",
        "ari_user",
        "ARI user (IVR_ARI_USER); the password only from IVR_ARI_PASSWORD or ivr.toml",
    ),
    ("--ari-app", "ari_app", "Stasis application name (IVR_ARI_APP)"),
    ("--listen", "audiosocket_listen", "AudioSocket host:port (IVR_AUDIOSOCKET_LISTEN)"),
    (
        "--advertise",
        "audiosocket_advertise",
        "host:port Asterisk dials for media (IVR_AUDIOSOCKET_ADVERTISE)",
    ),
    ("--format", "format", "force slin16 or slin (IVR_FORMAT)"),
    ("--stt", "stt", "default speech-to-text engine (IVR_STT)"),
    ("--tts", "tts", "default text-to-speech engine (IVR_TTS)"),
    ("--max-calls", "max_calls", "concurrent calls (IVR_MAX_CALLS)"),
    ("--workers", "workers", "call worker processes (IVR_WORKERS; default: one per core; 0: one process)"),
)
INT_FLAGS = {"max_calls", "workers"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="serve calls until SIGTERM (ARI app + AudioSocket server)")
    p.add_argument("--config", type=Path, help="settings file (default: ./ivr.toml if present)")
    for flag, dest, text in FLAG_SETTINGS:
        p.add_argument(flag, dest=dest, help=text, type=int if dest in INT_FLAGS else str)
    p.add_argument("--no-ari", action="store_true", help="dialplan-only mode: accept AudioSocket() calls")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line (with call_id)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    limiter = setup_logging(args.log_level, json_lines=args.log_json)
    overrides = {dest: getattr(args, dest) for _, dest, _ in FLAG_SETTINGS}
    try:
        settings = load_settings(overrides, toml_path=args.config)
        workers = settings.workers if settings.workers is not None else (os.cpu_count() or 1)
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            if workers == 0:
                return runner.run(serve(settings, no_ari=args.no_ari))
            supervisor = Supervisor(
                settings,
                workers=workers,
                no_ari=args.no_ari,
                log_level=args.log_level,
                log_json=args.log_json,
            )
            return runner.run(supervisor.run())
    except (ConfigError, StartupError) as exc:
        print(f"ivr run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        limiter.flush()  # say how many log lines were suppressed before the process goes


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (``pip install 'asterisk-ivr[uvloop]'``): about half the CPU per call."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
