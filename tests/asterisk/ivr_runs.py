"""``ivr run`` for the real-Asterisk suite: in this process through the real ``serve()`` (its reports and
metrics at hand), or as its own process where the process itself is the point (signals, exit code)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ivr.call.report import CallReport
from ivr.config import Settings, load_settings
from ivr.workers.process import serve
from tests.real_asterisk import RealAsterisk
from tests.services import scratch_dir

DATA = Path(__file__).parent / "data"


@dataclass
class IvrRun:
    """``ivr run`` serving in this process (the real ``serve()``), and what it reported."""

    settings: Settings
    info: dict[str, Any]
    reports: list[CallReport] = field(default_factory=list)
    task: asyncio.Task[int] | None = None

    @property
    def app(self) -> str:
        return self.settings.ari_app

    @property
    def audiosocket_port(self) -> int:
        return int(self.info["audiosocket"][1])

    async def wait_reports(self, count: int, timeout: float = 20.0) -> list[CallReport]:
        async with asyncio.timeout(timeout):
            while len(self.reports) < count:
                if self.task is not None and self.task.done():
                    raise AssertionError(f"ivr run stopped: {self.task.result()}")
                await asyncio.sleep(0.05)
        return self.reports

    async def metric(self, name: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(f"{self.info['metrics']}/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name} not exported")


def ivr_settings(asterisk: RealAsterisk, **env: str) -> Settings:
    """Settings for ``serve()`` against this Asterisk (see :func:`ivr_env`), metrics on a free port."""
    values = ivr_env(
        asterisk, IVR_DEFAULT_FLOW="menu", IVR_METRICS_LISTEN="127.0.0.1:0", IVR_SHUTDOWN_GRACE_SECONDS="2"
    )
    return load_settings(environ={**values, **env}, toml_path=None)


@contextlib.asynccontextmanager
async def ivr_run(settings: Settings, *, no_ari: bool = False) -> AsyncIterator[IvrRun]:
    """Run ``serve()`` until the block ends; fails the test if it did not exit 0."""
    run = IvrRun(settings, {})
    stop = asyncio.Event()
    ready = asyncio.Event()

    def on_ready(info: dict[str, Any]) -> None:
        run.info.update(info)
        ready.set()

    run.task = asyncio.ensure_future(
        serve(settings, no_ari=no_ari, stop=stop, ready=on_ready, on_report=run.reports.append)
    )
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({run.task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if run.task.done():
        run.task.result()
        raise AssertionError("ivr run returned before it was ready")
    if not ready.is_set():
        run.task.cancel()
        raise AssertionError("ivr run was not ready within 30 s")
    try:
        yield run
    finally:
        stop.set()
        # bounded even if the shutdown ignores its cancellation: a failure naming it, never a hung suite
        done, _ = await asyncio.wait({run.task}, timeout=60)
        if not done:
            run.task.cancel()
            done, _ = await asyncio.wait({run.task}, timeout=10)
            raise AssertionError(
                "ivr run did not stop within 60 s of being told to"
                + ("" if done else ", nor within 10 s of being cancelled")
            )
    code = run.task.result()
    assert code == 0, f"ivr run exited {code}"


@dataclass
class IvrProcess:
    """``ivr run`` as its own process (the real CLI, signals and exit), its stderr collected."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait_line(self, text: str, timeout: float = 30.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.proc.returncode is not None:
                    raise AssertionError(f"ivr run exited {self.proc.returncode}: {self.lines[-20:]}")
                await asyncio.sleep(0.05)

    async def wait_ready(self, timeout: float = 30.0) -> str:
        """Until the instance says it is ready: the supervisor's line (or the one process's), never a
        worker's. A worker is ready before the supervisor has registered the Stasis app with Asterisk:
        calls placed then found no app and were gone (the two-worker test's flaky "no first prompt")."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines:
                    if "ready:" in line and "[worker " not in line:
                        return line
                if self.proc.returncode is not None:
                    raise AssertionError(f"ivr run exited {self.proc.returncode}: {self.lines[-20:]}")
                await asyncio.sleep(0.05)

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stops a container; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code


@contextlib.asynccontextmanager
async def ivr_process(env: Mapping[str, str], *, no_ari: bool = False) -> AsyncIterator[IvrProcess]:
    """Start ``python -m ivr run`` with ``env`` (IVR_* settings), wait until it is ready; always ends it."""
    args = [sys.executable, "-m", "ivr", "run", *(["--no-ari"] if no_ari else [])]
    proc = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
    )
    run = IvrProcess(proc)
    run._reader = asyncio.ensure_future(run._read())
    try:
        await run.wait_ready()
        yield run
    except BaseException:
        # what ivr run said, in the failure's captured output: a flaky failure is diagnosable from CI's log
        print("ivr run's last log lines:", *run.lines[-60:], sep="\n", file=sys.stderr)
        raise
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        run._reader.cancel()
        await asyncio.gather(run._reader, return_exceptions=True)


def ivr_env(asterisk: RealAsterisk | None, **env: str) -> dict[str, str]:
    """``IVR_*`` settings of an ``ivr run`` for tests: this Asterisk (none: dialplan-only mode), a free
    AudioSocket port, the suite's flows, the instant simulation voice, fresh call records, no cache."""
    values = {
        "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
        "IVR_FLOWS": str(DATA),
        "IVR_DEFAULT_FLOW": "patient",
        "IVR_STT": "sim-text",
        "IVR_TTS": "sim-text",
        "IVR_PROMPT_CACHE": "",
        "IVR_RECORDS_PATH": str(scratch_dir("ivr-records-") / "calls.sqlite3"),
        "IVR_METRICS_LISTEN": "",
        "IVR_SHUTDOWN_GRACE_SECONDS": "0.5",
        # one supervised worker: the port the test picks is the port Asterisk reaches (more workers
        # listen on port + N, which the suite's relays do not forward)
        "IVR_WORKERS": "1",
    }
    if asterisk is not None:
        values.update(
            {
                "IVR_ARI_URL": asterisk.http_url,
                "IVR_ARI_USER": asterisk.user,
                "IVR_ARI_PASSWORD": asterisk.password,
                "IVR_ARI_APP": f"ivr-{uuid.uuid4().hex[:8]}",
            }
        )
    values.update(env)
    return values
