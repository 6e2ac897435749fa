"""The scale-out topology without Docker: what docker-compose.yml runs, as processes on free ports.

* a real Asterisk 22.10.1 (the kit) with the shipped per-call configuration and the project's dialplan
  (``asterisk_setup``), its per-call connection pointing at HAProxy;
* HAProxy running the shipped ``deploy/haproxy/haproxy.cfg`` (``tests/real_haproxy.py``);
* PostgreSQL holding the call records and checkpoints of both instances (``tests/real_postgres.py``);
* two ``ivr run`` instances (``python -m ivr run``, one supervised worker each, as a container runs it),
  each with its own per-call, metrics and AudioSocket ports, instance id and local records spool.

An instance is its own process group, so "SIGKILL the instance" kills the supervisor and its worker at
once, as a container runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.real_asterisk import RealAsterisk
from tests.real_haproxy import Backend, RealHAProxy
from tests.real_postgres import RealPostgres
from tests.services import free_tcp_port, scratch_dir

from .asterisk_setup import APP, PERCALL_USER

DATA = Path(__file__).parent / "data"
PASSWORD = "topology-lb-percall-pw-9e27"


@dataclass
class Instance:
    """One ``ivr run`` behind the balancer."""

    name: str
    records_url: str
    percall_port: int = field(default_factory=free_tcp_port)
    metrics_port: int = field(default_factory=free_tcp_port)
    root: Path = field(default_factory=lambda: scratch_dir("ivr-topo-"))
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def backend(self) -> Backend:
        return Backend(self.name, self.percall_port, self.metrics_port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def env(self) -> dict[str, str]:
        return {
            "IVR_ARI_MODE": "per_call",
            "IVR_ARI_APP": APP,
            "IVR_ARI_PERCALL_LISTEN": f"127.0.0.1:{self.percall_port}",
            "IVR_ARI_PERCALL_USER": PERCALL_USER,
            "IVR_ARI_PERCALL_PASSWORD": PASSWORD,
            "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
            "IVR_METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
            "IVR_INSTANCE_ID": self.name,
            "IVR_RECORDS_URL": self.records_url,
            "IVR_RECORDS_PATH": str(self.root / "calls.sqlite3"),
            "IVR_RECORDS_SPOOL": str(self.root / "records-spool.sqlite3"),
            "IVR_FLOWS": str(DATA),
            "IVR_DEFAULT_FLOW": "steps",
            "IVR_STT": "sim-text",
            "IVR_TTS": "sim-text",
            "IVR_PROMPT_CACHE": "",
            "IVR_WORKERS": "1",
            "IVR_SHUTDOWN_GRACE_SECONDS": "30",
            "IVR_FLOWS_WATCH": "false",
        }

    async def start(self, timeout: float = 60.0) -> None:
        self.lines.clear()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ivr",
            "run",
            env={**os.environ, **self.env()},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: SIGKILL reaches supervisor and worker
        )
        self._reader = asyncio.ensure_future(self._read(self.proc))
        await self.wait_line("workers (pids", timeout=timeout)
        await self.wait_ready(timeout=timeout)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def wait_line(self, text: str, *, after: int = 0, timeout: float = 30.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.lines[after:]:
                    if text in line:
                        return line
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.lines[-15:]}")
                await asyncio.sleep(0.05)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def readyz(self) -> int:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp,
            ):
                return resp.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def wait_ready(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while await self.readyz() != 200:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.1)

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp,
        ):
            return await resp.text()

    def kill(self) -> None:
        """SIGKILL the whole instance (supervisor and worker), as a container runtime does."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops a container."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


@dataclass
class Topology:
    asterisk: RealAsterisk
    postgres: RealPostgres
    database: str
    haproxy: RealHAProxy
    instances: list[Instance]

    def by_name(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def sql(self, query: str) -> list[list[str]]:
        """Rows of one query on the records database (psql, unaligned)."""
        out = self.postgres.psql(query, database=self.database.rsplit("/", 1)[1])
        return [line.split("|") for line in out.splitlines() if line]
