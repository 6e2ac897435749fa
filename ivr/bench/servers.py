"""The servers under test, each started as its own process for one measured run.

Three shapes, all reached over loopback AudioSocket by the same generator:

* ``ref``: the C single-clock reference server (:mod:`ivr.bench.reference`), the floor of this machine;
* ``dialplan``: ``ivr run --no-ari`` with the bench flow, the generator dialling its AudioSocket port as
  the dialplan's ``AudioSocket()`` / ``Dial(AudioSocket/...)`` would;
* ``ari``: ``ivr run`` in ARI mode against a :class:`~ivr.sim.ari_server.SimAsterisk` hosted by the
  generator's process (never the server's): a call arrives by ``StasisStart``, the app answers, bridges
  and asks for ``externalMedia``, and the simulator dials the app's AudioSocket port with a generator leg;
* ``ari-ws``: the same with WebSocket media (``IVR_MEDIA=websocket``): the app connects to the simulator's
  ``/media/<id>``, and the generator plays chan_websocket, pacing the audio (:mod:`ivr.bench.ws_shape`).

``ivr run`` gets a clean environment (no ``ivr.toml``, no ``OPENAI_API_KEY``, none of the operator's
``IVR_*``), the sim-text engines, the bench flow's fixed prompts prerendered into a prompt cache, call
records in a temporary SQLite file and metrics on a free port: what a deployment runs, minus a speech
provider. ``--workers N`` is passed when the installed ``ivr run`` has it (:func:`workers_supported`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ivr.bench.procfs import free_port, free_port_range
from ivr.bench.reference import build_reference
from ivr.bench.ws_shape import WS_LABEL, WS_SHAPE
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.media_leg import MediaConnector
from ivr.sim.ws_media import LegFactory

FLOWS_DIR = Path(__file__).parent / "flows"
FLOW_NAME = "bench"
ARI_APP = "ivr-bench"
ARI_USER = "bench"
SHAPES = ("ref", "dialplan", "ari", WS_SHAPE)
SHAPE_LABELS = {
    "ref": "C reference (one clock, 1 ms phase slots)",
    "dialplan": "ivr run --no-ari (dialplan-only)",
    "ari": "ivr run (ARI, externalMedia)",
    WS_SHAPE: WS_LABEL,
}
ARI_SHAPES = ("ari", WS_SHAPE)
"""Shapes whose calls arrive through the simulated ARI."""


class BenchError(Exception):
    """The run could not be measured (a server did not start, no call was set up...)."""


@dataclass(frozen=True)
class Shape:
    """One server under test: ``kind`` in :data:`SHAPES`, and how many ``ivr run`` workers."""

    kind: str
    workers: int = 1

    @property
    def key(self) -> str:
        return "ref" if self.kind == "ref" else f"{self.kind}-w{self.workers}"

    @property
    def label(self) -> str:
        base = SHAPE_LABELS[self.kind]
        return (
            base if self.kind == "ref" else f"{base}, {self.workers} worker{'s' if self.workers > 1 else ''}"
        )


@dataclass
class BenchContext:
    """What every run of one bench shares: the built reference, the prompt cache, what ``ivr run`` has."""

    work_dir: Path
    python: str = sys.executable
    reference: Path | None = None
    prompt_cache: Path | None = None
    workers_flag: bool = False
    app_loop: str = "asyncio"
    pacer: str = "auto"
    """``IVR_PACER`` for the ``ivr run`` shapes (auto, native or loop)."""
    app_pacer: str = "loop"
    """Who paced them: ``native`` when asked for (or auto) and the native pacer is built, else ``loop``."""
    pacer_realtime: int = 0
    """``IVR_PACER_REALTIME``: the native thread's SCHED_FIFO priority (0: the usual scheduling)."""


def workers_supported(python: str = sys.executable) -> bool:
    """Whether this ``ivr run`` takes ``--workers N`` (read from its ``--help``)."""
    try:
        done = subprocess.run(
            [python, "-m", "ivr", "run", "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"--workers\b", done.stdout) is not None


def clean_env(work_dir: Path) -> dict[str, str]:
    """The environment without the operator's ivr settings or an OpenAI key (never a real provider)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_") and k != "OPENAI_API_KEY"}
    env["IVR_CONFIG"] = str(work_dir / "no-ivr.toml")  # no ./ivr.toml either
    return env


def prerender(python: str, cache: Path, work_dir: Path) -> None:
    """The bench flow's fixed prompts into ``cache`` at both rates, as a deployment does before serving."""
    argv = [python, "-m", "ivr", "prerender", str(FLOWS_DIR / f"{FLOW_NAME}.yaml")]
    done = subprocess.run(
        [*argv, "--rates", "8000,16000", "--tts", "sim-text", "--cache", str(cache)],
        env={**clean_env(work_dir), "IVR_STT": "sim-text", "IVR_TTS": "sim-text"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"ivr prerender failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")


def prepare(
    shapes: list[Shape],
    work_dir: Path,
    python: str = sys.executable,
    pacer: str = "auto",
    pacer_realtime: int = 0,
) -> BenchContext:
    """Build what the shapes need once: the C reference, the prompt cache, the ``--workers`` check."""
    ctx = BenchContext(work_dir=work_dir, python=python, pacer=pacer, pacer_realtime=pacer_realtime)
    if any(s.kind == "ref" for s in shapes):
        ctx.reference = build_reference()
    if any(s.kind != "ref" for s in shapes):
        ctx.prompt_cache = work_dir / "prompts"
        prerender(python, ctx.prompt_cache, work_dir)
        ctx.workers_flag = workers_supported(python)
        ctx.app_loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
        built = importlib.util.find_spec("ivr.audiosocket._pacer") is not None
        if pacer == "native" and not built:
            raise BenchError("--pacer native: the native pacer is not built (reinstall with gcc)")
        ctx.app_pacer = "native" if pacer != "loop" and built else "loop"
    return ctx


class BenchAsterisk(SimAsterisk):
    """SimAsterisk on a port chosen up front, so it also starts on uvloop.

    ``SimAsterisk.start`` asserts that the listening server is an ``asyncio.base_events.Server`` to read
    its ephemeral port, which a uvloop server is not; the generator picks a free port itself instead.
    """

    async def start(self) -> SimAsterisk:
        if self.port == 0:
            self.port = free_port()
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        return self

    def caller_of(self, media_channel_id: str) -> str | None:
        """The caller channel bridged with a media channel (where a key press starts, in ARI mode)."""
        media = self.channels.get(media_channel_id)
        if media is None or media.bridge_id is None or media.bridge_id not in self.bridges:
            return None
        for other in self.bridges[media.bridge_id].channels:
            if other != media_channel_id and other in self.channels:
                return other
        return None


@dataclass
class ServerProcess:
    """A started server under test: where it listens, its process, its log."""

    shape: Shape
    proc: asyncio.subprocess.Process
    log_path: Path
    audiosocket_port: int
    metrics_port: int | None = None
    sim: BenchAsterisk | None = None
    final_stats: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        """The log's first error with its traceback if it has one, else its last lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for i, line in enumerate(text):
            if " ERROR " in line or line.startswith("Traceback"):
                return "\n".join(text[i : i + lines])
        return "\n".join(text[-lines:])

    async def stop(self) -> None:
        """SIGTERM, then the reference's counters (its last stdout line); SIGKILL after 10 s."""
        proc = self.proc
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            with contextlib.suppress(ValueError, OSError):
                for line in (await proc.stdout.read()).decode(errors="replace").splitlines():
                    if line.startswith("{"):
                        self.final_stats = json.loads(line)
        if self.sim is not None:
            await self.sim.stop()


def ivr_env(
    ctx: BenchContext, shape: Shape, rate: int, calls: int, port: int, metrics: int
) -> dict[str, str]:
    assert ctx.prompt_cache is not None
    env = clean_env(ctx.work_dir)
    env.update(
        {
            "IVR_AUDIOSOCKET_LISTEN": f"127.0.0.1:{port}",
            "IVR_FLOWS": str(FLOWS_DIR),
            "IVR_DEFAULT_FLOW": FLOW_NAME,
            "IVR_STT": "sim-text",
            "IVR_TTS": "sim-text",
            "IVR_PROMPT_CACHE": str(ctx.prompt_cache),
            "IVR_MAX_CALLS": str(max(1000, 2 * calls)),
            # every call holds one media connection; the cap must not refuse what IVR_MAX_CALLS allows
            "IVR_AUDIOSOCKET_MAX_CONNECTIONS": str(max(2000, 4 * calls)),
            "IVR_METRICS_LISTEN": f"127.0.0.1:{metrics}",
            "IVR_RECORDS_PATH": str(ctx.work_dir / f"calls-{uuid.uuid4().hex[:8]}.sqlite3"),
            "IVR_SHUTDOWN_GRACE_SECONDS": "2",
            "IVR_PACER": ctx.pacer,
            "IVR_PACER_REALTIME": str(ctx.pacer_realtime),
        }
    )
    if shape.kind in ARI_SHAPES:
        env["IVR_FORMAT"] = "slin16" if rate == 16000 else "slin"
    if shape.kind == WS_SHAPE:
        env["IVR_MEDIA"] = "websocket"
    return env


async def start_server(
    ctx: BenchContext,
    shape: Shape,
    rate: int,
    calls: int,
    log_path: Path,
    connector: MediaConnector,
    websocket_legs: LegFactory | None = None,
) -> ServerProcess:
    """Start the server of ``shape`` (its own process) and return once it takes calls."""
    if shape.kind == "ref":
        assert ctx.reference is not None
        port = free_port()
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                str(ctx.reference), str(port), str(rate), "127.0.0.1",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log_file,
            )  # fmt: skip
        server = ServerProcess(shape, proc, log_path, port)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
        except TimeoutError:
            line = b""
        if not line.startswith(b"ready"):
            await server.stop()
            raise BenchError(f"the C reference server did not start: {server.tail() or line!r}")
        return server

    metrics = free_port()
    port = free_port_range(max(1, shape.workers))
    while port <= metrics < port + max(1, shape.workers):
        port = free_port_range(max(1, shape.workers))
    env = ivr_env(ctx, shape, rate, calls, port, metrics)
    sim: BenchAsterisk | None = None
    if shape.kind in ARI_SHAPES:
        sim = BenchAsterisk(
            username=ARI_USER,
            password=uuid.uuid4().hex,
            media_connector=connector,
            websocket_legs=websocket_legs,
        )
        await sim.start()
        env.update(
            {
                "IVR_ARI_URL": sim.base_url,
                "IVR_ARI_USER": ARI_USER,
                "IVR_ARI_PASSWORD": sim.password,
                "IVR_ARI_APP": ARI_APP,
            }
        )
    argv = [ctx.python, "-m", "ivr", "run"]
    if shape.kind == "dialplan":
        argv.append("--no-ari")
    if ctx.workers_flag:
        argv += ["--workers", str(shape.workers)]
    elif shape.workers != 1:
        raise BenchError("this ivr run has no --workers")
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file
        )
    server = ServerProcess(shape, proc, log_path, port, metrics, sim)
    try:
        await _wait_ready(server, startup_timeout=60.0)
    except BaseException:
        await server.stop()
        raise
    return server


async def _wait_ready(server: ServerProcess, startup_timeout: float) -> None:
    """Until ``/readyz`` answers 200 and the app logged "ready" (ARI mode: its events socket is up)."""
    deadline = time.monotonic() + startup_timeout
    url = f"http://127.0.0.1:{server.metrics_port}/readyz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        while True:
            if server.proc.returncode is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"{server.shape.label} did not start (exit {server.proc.returncode}):\n{server.tail()}"
                )
            ready = False
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with http.get(url) as resp:
                    ready = resp.status == 200
            logged = ready and " ready: " in server.log_path.read_text(errors="replace")
            if logged and (server.sim is None or ARI_APP in server.sim.connected_apps):
                return
            await asyncio.sleep(0.1)


_METRIC_LINE = re.compile(
    r'^ivr_frames_dropped_total\{direction="(inbound|outbound)"\}\s+([0-9.eE+-]+)$', re.M
)


_PREROLL_LINE = re.compile(r"^ivr_preroll_frames_discarded_total\s+([0-9.eE+-]+)$", re.M)
_ACTIVE_LINE = re.compile(r"^ivr_active_calls\s+([0-9.eE+-]+)$", re.M)


async def _metrics_text(port: int) -> str | None:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            if resp.status != 200:
                return None
            return await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def wait_calls_ended(port: int | None, timeout: float) -> bool:
    """Until the app's ``ivr_active_calls`` is 0 (every call it had has ended, records included), for at
    most ``timeout`` seconds; True if it got there (a server without the gauge: True at once)."""
    if port is None:
        return True
    deadline = time.monotonic() + timeout
    while True:
        text = await _metrics_text(port)
        found = _ACTIVE_LINE.search(text) if text is not None else None
        if text is not None and (found is None or float(found.group(1)) == 0):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def scrape_drops(port: int | None) -> dict[str, int] | None:
    """The app's dropped-frame counters from its /metrics, or None if it exposes none; ``preroll``: caller
    frames from before a call listened that it let go (not drops: the generator talks from the connect,
    where a real Asterisk sends nothing to a media channel until it is bridged)."""
    if port is None:
        return None
    text = await _metrics_text(port)
    if text is None:
        return None
    if "ivr_frames_dropped_total" not in text:
        return None
    found = {m.group(1): int(float(m.group(2))) for m in _METRIC_LINE.finditer(text)}
    preroll = _PREROLL_LINE.search(text)
    return {
        "inbound": found.get("inbound", 0),
        "outbound": found.get("outbound", 0),
        "preroll": int(float(preroll.group(1))) if preroll is not None else 0,
    }
