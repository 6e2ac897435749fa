"""The ``ivr bench`` load generator: the Asterisk side of N concurrent calls, in its own process.

It hosts a :class:`~ivr.sim.ari_server.SimAsterisk` (ARI REST + events) whose ``externalMedia`` dials a
lean caller leg for every call, and runs the app under test as a separate ``python -m ivr run`` process
on loopback. Every caller leg shares one deadline clock (the project's :class:`FrameClock` timer wheel:
absolute deadlines, each leg keeps its own phase inside the 20 ms period, one timer per 1 ms slot for all
the legs in it) and speaks the AudioSocket wire protocol through an :class:`asyncio.BufferedProtocol`
(no streams, no per-call tasks). Each leg:

* sends one 20 ms frame per period: silence, or the caller's "speech" made with
  :func:`ivr.speech.simulated.encode_text_speech` (the instant ``sim-text`` STT reads the words back), so
  the app's VAD, endpointing, STT and flow path run for real;
* answers the IVR like a polite caller: it waits until a prompt has ended (400 ms of silence), speaks, and
  measures the latency from the end of its utterance to the first non-silent frame the IVR sends back;
* timestamps every frame the app sends (only while a measurement window is open) so frame lateness
  against an ideal 20 ms cadence and cumulative drift are measured at the receiving side.

The numbers come from the instant, deterministic benchmark engines (``IVR_STT=sim-text``,
``IVR_TTS=sim-text``), never a default: they are the framework's own overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import numpy as np
from aiohttp import web

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.audiosocket.protocol import encode_audio, encode_uuid, frame_bytes
from ivr.audiosocket.stats import LatencyHistogram
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.media_leg import CONNECT_TIMEOUT
from ivr.speech.simulated import encode_text_speech

log = logging.getLogger("ivr.bench")

PERIOD = 0.020
FLOWS_DIR = Path(__file__).parent / "flows"
FLOW_NAME = "bench"
ARI_APP = "ivr-bench"
ARI_USER = "bench"
CALLER_TEXT = "hello from the benchmark caller"
PROMPT_END_FRAMES = 20
"""Consecutive silent frames (400 ms) after IVR audio that mean "the prompt ended, my turn"."""
LISTEN_FALLBACK_S = 12.0
"""A caller that heard no prompt end for this long speaks anyway (keeps speech flowing if a flow stalls)."""

_LISTEN, _SPEAK, _AWAIT = 0, 1, 2
_monotonic = time.monotonic


@dataclass
class BenchConfig:
    """One bench step: ``calls`` concurrent calls held for ``seconds`` after they are all set up."""

    calls: int
    seconds: float = 10.0
    rate: int = 16000
    setup_rate: float = 100.0
    """Calls placed per second while ramping up (the app answers each with a few ARI requests)."""
    settle: float = 1.0
    """Seconds between the last call being set up and the measurement window."""
    pin: bool = True
    """Pin the app to one CPU and the generator to another (when at least two are available)."""
    app_uvloop: bool = False
    """Run the app with uvloop installed as the event loop policy (``ivr run`` itself uses asyncio's)."""
    app_gc_freeze: bool = False
    """Experiment: ``gc.freeze()`` in the app after its imports (``ivr run`` does not do this today)."""
    python: str = sys.executable
    log_dir: Path | None = None
    """Where the app's log goes (``app-N.log``); a temporary directory (removed afterwards) if None."""
    startup_timeout: float = 30.0


# ---------------------------------------------------------------------------------------------------- legs


class CallerLeg(asyncio.BufferedProtocol):
    """Asterisk's side of one AudioSocket session: paced caller frames out, timestamped IVR frames in."""

    def __init__(self, gen: LoadGenerator, channel_id: str) -> None:
        self.gen = gen
        self.channel_id = channel_id
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._acc = bytearray()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None
        # what went out
        self.frames_sent = 0
        self._utt: list[bytes] | None = None
        self._utt_i = 0
        # what came in
        self.frames_received = 0
        self.first_rx: float | None = None
        self.recording = False
        self.arrivals = array("d")
        # the caller's turn taking
        self._state = _LISTEN
        self._state_since = _monotonic()
        self._heard_voice = False
        self._silent_run = 0
        self._utt_end = 0.0
        self._overlap = False
        self.latencies = array("d")
        self.overlapped = 0
        self.paused = 0

    # -- asyncio protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        now = _monotonic()
        acc = self._acc
        acc += self._view[:nbytes]
        end = len(acc)
        pos = 0
        while end - pos >= 3:
            length = (acc[pos + 1] << 8) | acc[pos + 2]
            stop = pos + 3 + length
            if stop > end:
                break
            kind = acc[pos]
            if 0x10 <= kind <= 0x18 and length:
                self.frames_received += 1
                if self.recording:
                    self.arrivals.append(now)
                self._heard(acc.count(0, pos + 3, stop) != length, now)
            elif kind == 0x00:
                self._finish(None)
                return
            else:  # what Asterisk answers with a hangup and a reset
                self.error = f"application sent kind 0x{kind:02x} length {length}"
                self._finish(self.error)
                return
            pos = stop
        if pos:
            del acc[:pos]
        if self.first_rx is None and self.frames_received:
            self.first_rx = now

    def eof_received(self) -> bool:
        return False  # close our side at once (no CLOSE-WAIT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(None)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        pass

    # -- caller behaviour ------------------------------------------------------------------------------

    def _heard(self, voiced: bool, now: float) -> None:
        state = self._state
        if state == _LISTEN:
            if voiced:
                self._heard_voice = True
                self._silent_run = 0
            else:
                self._silent_run += 1
        elif state == _AWAIT:
            if voiced:
                if self.recording:
                    self.latencies.append(now - self._utt_end)
                self._state, self._state_since = _LISTEN, now
                self._heard_voice, self._silent_run = True, 0
        elif voiced:  # _SPEAK: the IVR talked over us; that answer's latency means nothing
            self._overlap = True

    def tick(self, deadline: float) -> None:
        """One frame, at this leg's phase of the shared clock."""
        transport = self.transport
        if transport is None or self._closed.done():
            return
        utt = self._utt
        if (
            utt is None
            and self._state == _LISTEN
            and (
                (self._heard_voice and self._silent_run >= PROMPT_END_FRAMES)
                or deadline - self._state_since > LISTEN_FALLBACK_S
            )
        ):
            utt = self._utt = self.gen.utterance
            self._utt_i = 0
            self._overlap = False
            self._state = _SPEAK
        if utt is None:
            transport.write(self.gen.silence)
        else:
            i = self._utt_i
            transport.write(utt[i])
            i += 1
            if i == len(utt):
                self._utt = None
                now = _monotonic()
                if self._overlap:
                    if self.recording:
                        self.overlapped += 1
                    self._state = _LISTEN
                    self._heard_voice, self._silent_run = False, 0
                else:
                    self._state = _AWAIT
                    self._utt_end = now
                self._state_since = now
            else:
                self._utt_i = i
        self.frames_sent += 1

    # -- MediaLeg (what SimAsterisk needs) -------------------------------------------------------------

    def _finish(self, error: str | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
            self.gen.clock.remove(self)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if error is not None:
                transport.abort()
            else:
                transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def send_dtmf(self, digit: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\x03\x00\x01" + digit.encode("ascii"))

    async def close(self) -> None:
        self._finish(None)


# ---------------------------------------------------------------------------------------------------- generator


class LoadGenerator:
    """All caller legs of one run, their shared clock, and the ``media_connector`` for SimAsterisk."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.clock = FrameClock(LoopClock())
        size = frame_bytes(rate)
        self.silence = encode_audio(bytes(size), rate)
        pcm = encode_text_speech(CALLER_TEXT, rate, ms_per_char=20, min_ms=600)
        pcm += bytes(-len(pcm) % size)
        self.utterance = [encode_audio(pcm[i : i + size], rate) for i in range(0, len(pcm), size)]
        self.utterance_ms = len(self.utterance) * PERIOD * 1000
        self.legs: dict[str, CallerLeg] = {}
        self.connect_failures = 0

    async def connect(self, host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str) -> CallerLeg:
        loop = asyncio.get_running_loop()
        try:
            transport, leg = await asyncio.wait_for(
                loop.create_connection(lambda: CallerLeg(self, channel_id), host, port),
                timeout=CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError):
            self.connect_failures += 1
            raise
        if leg.transport is None:  # uvloop may call connection_made a moment later
            leg.connection_made(transport)
        if transport.is_closing():
            self.connect_failures += 1
            raise ConnectionResetError(f"{host}:{port} closed the media connection at once")
        transport.write(encode_uuid(session))
        self.legs[channel_id] = leg
        self.clock.add(leg)  # silence from the first moment, at this leg's own phase
        return leg

    def live(self) -> Iterator[CallerLeg]:
        return (leg for leg in self.legs.values() if not leg._closed.done())

    def start_window(self) -> None:
        self.clock.wakeup_lateness = LatencyHistogram()
        for leg in self.legs.values():
            leg.arrivals = array("d")
            leg.latencies = array("d")
            leg.overlapped = 0
            leg.frames_sent = 0
            leg.recording = True

    def stop_window(self) -> None:
        for leg in self.legs.values():
            leg.recording = False

    def close(self) -> None:
        for leg in list(self.legs.values()):
            leg._finish(None)
        self.clock.close()


# ---------------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a whole process (all threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in rest.split()]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            out[int(name[3:])] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
    return out


def busy_percent(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """How busy each CPU was between two :func:`cpu_times` readings (every process, not just ours)."""
    result: dict[int, float] = {}
    for cpu, (busy1, total1) in after.items():
        busy0, total0 = before.get(cpu, (busy1, total1))
        result[cpu] = round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1)
    return result


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------------------- stats


def _pcts(values: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(values.max()), 3)}


def frame_stats(legs: list[CallerLeg], k: int = 50) -> dict[str, Any]:
    """Lateness of every received frame against each leg's ideal 20 ms cadence, and cumulative drift.

    A leg's ideal cadence is ``anchor + n * 20 ms`` with the anchor at its least-delayed frame in the
    window, so lateness is never negative and a skipped period shows as 20 ms of lateness for every
    later frame. Drift is how much later the stream runs at the end of the window than at its start
    (the least-delayed frame of the last second against that of the first). A stream that fell whole
    periods behind lost frames (the app's clock skips periods after a stall longer than its catch-up):
    ``frames_skipped`` counts them, summed over the legs, from each leg's drift in whole periods.
    """
    lateness: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    drifts: list[float] = []
    skipped = 0
    received = 0
    for leg in legs:
        t = np.frombuffer(leg.arrivals, dtype=np.float64)
        if t.size < 2:
            continue
        received += int(t.size)
        offsets = t - np.arange(t.size) * PERIOD
        lateness.append((offsets - offsets.min()) * 1000.0)
        k_eff = min(k, t.size)
        leg_drift = float(offsets[-k_eff:].min() - offsets[:k_eff].min())
        drifts.append(leg_drift * 1000.0)
        skipped += max(0, round(leg_drift / PERIOD))
    all_late = np.concatenate(lateness) if lateness else np.empty(0)
    drift = np.abs(np.array(drifts)) if drifts else np.empty(0)
    return {
        "frames_received": received,
        "frames_skipped": skipped,
        "lateness_ms": _pcts(all_late),
        "drift_ms": {
            "median": round(float(np.median(drift)), 3) if drift.size else None,
            "max": round(float(drift.max()), 3) if drift.size else None,
        },
    }


# ---------------------------------------------------------------------------------------------------- app


def app_env(
    sim: SimAsterisk, cfg: BenchConfig, listen_port: int, metrics_port: int, tmp: Path
) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)  # the benchmark never reaches a real provider
    for key in list(env):
        if key.startswith("IVR_"):
            del env[key]  # the operator's own settings must not leak into the benchmark
    env.update(
        {
            "IVR_CONFIG": str(tmp / "no-ivr.toml"),  # no ./ivr.toml either
            "IVR_ARI_URL": sim.base_url,
            "IVR_ARI_USER": ARI_USER,
            "IVR_ARI_PASSWORD": sim.password,
            "IVR_ARI_APP": ARI_APP,
            "IVR_AUDIOSOCKET_LISTEN": f"127.0.0.1:{listen_port}",
            "IVR_FLOWS": str(FLOWS_DIR),
            "IVR_DEFAULT_FLOW": FLOW_NAME,
            "IVR_STT": "sim-text",
            "IVR_TTS": "sim-text",
            "IVR_PROMPT_CACHE": "",
            "IVR_FORMAT": "slin16" if cfg.rate == 16000 else "slin",
            "IVR_MAX_CALLS": str(max(1000, 2 * cfg.calls)),
            "IVR_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "IVR_RECORDS_PATH": str(tmp / "calls.sqlite3"),
            "IVR_SHUTDOWN_GRACE_SECONDS": "2",
        }
    )
    return env


def app_command(cfg: BenchConfig) -> list[str]:
    """``python -m ivr run``, or the same command behind a small wrapper for the loop/GC experiments."""
    if not (cfg.app_uvloop or cfg.app_gc_freeze):
        return [cfg.python, "-m", "ivr", "run"]
    lines = ["import gc, sys", "from ivr.cli import build_parser, main"]
    if cfg.app_uvloop:
        lines.append("import uvloop; uvloop.install()")
    if cfg.app_gc_freeze:
        # what serve() could do once started: keep the import-time heap out of every full collection
        lines.append("build_parser(); gc.collect(); gc.freeze()")
    lines.append("sys.exit(main(sys.argv[1:]))")
    return [cfg.python, "-c", "\n".join(lines), "run"]


_METRIC_LINE = re.compile(
    r'^ivr_frames_dropped_total\{direction="(inbound|outbound)"\}\s+([0-9.eE+-]+)$', re.M
)


async def scrape_drops(port: int) -> dict[str, int] | None:
    """The app's dropped-frame counters from its /metrics, or None if it exposes none."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            if resp.status != 200:
                return None
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    found = {m.group(1): int(float(m.group(2))) for m in _METRIC_LINE.finditer(text)}
    return found if found else None


def _pin(pid: int, cpu: int) -> bool:
    try:
        os.sched_setaffinity(pid, {cpu})
    except OSError:
        return False
    return True


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    """The app log's first error with its traceback if it has one, else its last lines."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(text):
        if " ERROR " in line or line.startswith("Traceback"):
            return "\n".join(text[i : i + lines])
    return "\n".join(text[-lines:])


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


class BenchError(Exception):
    """The run could not be measured (the app did not start, calls were not set up...)."""


# ---------------------------------------------------------------------------------------------------- one run


@dataclass
class _Pins:
    app: int | None = None
    generator: int | None = None
    restore: set[int] = field(default_factory=set)


async def run_once(cfg: BenchConfig, index: int = 0) -> dict[str, Any]:
    """Start a fresh ``ivr run``, set up ``cfg.calls`` calls, measure a window, tear everything down."""
    with contextlib.ExitStack() as exits:
        if cfg.log_dir is None:
            tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="ivr-bench-")))
        else:
            tmp = cfg.log_dir
            tmp.mkdir(parents=True, exist_ok=True)
        return await _run(cfg, index, tmp)


async def _run(cfg: BenchConfig, index: int, tmp: Path) -> dict[str, Any]:
    gen = LoadGenerator(cfg.rate)
    sim = BenchAsterisk(username=ARI_USER, password=uuid.uuid4().hex, media_connector=gen.connect)
    pins = _Pins()
    log_path = tmp / f"app-{cfg.calls}-{index}.log"
    proc: asyncio.subprocess.Process | None = None
    await sim.start()
    try:
        listen_port, metrics_port = free_port(), free_port()
        with log_path.open("wb") as app_log:
            proc = await asyncio.create_subprocess_exec(
                *app_command(cfg),
                env=app_env(sim, cfg, listen_port, metrics_port, tmp),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=app_log,
                stderr=app_log,
            )
        if cfg.pin:
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) >= 2:
                pins.restore = set(cpus)
                if _pin(proc.pid, cpus[0]):
                    pins.app = cpus[0]
                if _pin(0, cpus[1]):
                    pins.generator = cpus[1]
        # ready: the app's events WebSocket is connected
        deadline = time.monotonic() + cfg.startup_timeout
        while ARI_APP not in sim.connected_apps:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise BenchError(f"ivr run did not start (exit {proc.returncode}):\n{_tail(log_path)}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        rss_base = rss_kib(proc.pid)

        # ramp up: place the calls, then wait until every leg hears the app
        t_setup = time.monotonic()
        fmt = "slin16" if cfg.rate == 16000 else "ulaw"
        callers: list[str] = []
        batch = max(1, round(cfg.setup_rate / 20))
        for i in range(cfg.calls):
            chan = await sim.place_call(
                app=ARI_APP, native_format=fmt, caller=("Bench", f"{5550000 + i}"), answered=True
            )
            callers.append(chan.id)
            if (i + 1) % batch == 0:
                await asyncio.sleep(batch / cfg.setup_rate)
        setup_deadline = time.monotonic() + 15.0 + cfg.calls / max(cfg.setup_rate, 1.0)
        while sum(1 for leg in gen.live() if leg.first_rx is not None) < cfg.calls:
            if proc.returncode is not None or time.monotonic() > setup_deadline:
                break
            await asyncio.sleep(0.05)
        calls_setup = sum(1 for leg in gen.live() if leg.first_rx is not None)
        if calls_setup == 0:
            raise BenchError(
                f"no call was set up ({gen.connect_failures} media connect failures):\n{_tail(log_path)}"
            )
        setup_s = time.monotonic() - t_setup
        # The generator's own collector stays out of the window: it allocates next to nothing per frame,
        # and a full collection (tens of ms with hundreds of calls' ARI state) would delay its reads and
        # show up as the app's lateness. Collect once now, before the settle time absorbs the pause.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            await asyncio.sleep(cfg.settle)
            app_cpu0, gen_cpu0, cores0 = cpu_seconds(proc.pid), cpu_seconds(), cpu_times()
            gen.start_window()
            t0 = time.monotonic()
            await asyncio.sleep(cfg.seconds)
            gen.stop_window()
            wall = time.monotonic() - t0
        finally:
            gc.enable()
            gc.unfreeze()
        app_cpu = (cpu_seconds(proc.pid) - app_cpu0) / wall * 100.0
        gen_cpu = (cpu_seconds() - gen_cpu0) / wall * 100.0
        cores = busy_percent(cores0, cpu_times())
        loadavg = os.getloadavg()[0]
        rss = rss_kib(proc.pid)
        live = list(gen.live())
        frames = frame_stats(live)
        latencies = np.concatenate(
            [np.frombuffer(leg.latencies, dtype=np.float64) for leg in live] or [np.empty(0)]
        )
        tick = gen.clock.wakeup_lateness.summary()

        # tear down: callers hang up, then the app's counters, then the app stops
        for cid in callers:
            if cid in sim.channels:
                with contextlib.suppress(Exception):
                    await sim.hangup(cid)
        closing = [leg._closed for leg in gen.live()]
        if closing:
            await asyncio.wait(closing, timeout=10)
        await asyncio.sleep(0.2)
        drops = await scrape_drops(metrics_port)
    finally:
        if proc is not None:
            await _stop_process(proc)
        gen.close()
        await sim.stop()
        if pins.restore:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, pins.restore)

    expected = int(cfg.seconds / PERIOD) * len(live)
    return {
        "calls": cfg.calls,
        "calls_setup": calls_setup,
        "setup_seconds": round(setup_s, 3),
        "window_seconds": round(wall, 3),
        "frames_sent": sum(leg.frames_sent for leg in live),
        "frames_expected": expected,
        **frames,
        "response_latency_ms": _pcts(latencies * 1000.0),
        "responses": int(latencies.size),
        "responses_overlapped": sum(leg.overlapped for leg in live),
        "app": {
            "pinned_cpu": pins.app,
            "cpu_percent": round(app_cpu, 1),
            "rss_baseline_kib": rss_base,
            "rss_kib": rss,
            "rss_per_call_kib": round((rss - rss_base) / max(calls_setup, 1), 1),
            "inbound_dropped": drops.get("inbound") if drops else None,
            "outbound_dropped": drops.get("outbound") if drops else None,
            "drops_source": "app /metrics (ivr_frames_dropped_total)" if drops else "unavailable",
            "pid": proc.pid if proc is not None else None,
            "exit_code": proc.returncode if proc is not None else None,
        },
        "machine_load": {
            "loadavg_1m": loadavg,
            "cpu_busy_percent": {str(cpu): pct for cpu, pct in cores.items()},
            "other_on_app_cpu_percent": (
                round(max(0.0, cores.get(pins.app, 0.0) - app_cpu), 1) if pins.app is not None else None
            ),
            "note": "busy % of each CPU by every process; other_on_app_cpu: what else ran on the app's core",
        },
        "generator": {
            "pinned_cpu": pins.generator,
            "cpu_percent": round(gen_cpu, 1),
            "tick_lateness_ms": {"p50": tick.p50_ms, "p99": tick.p99_ms, "max": tick.max_ms},
            "write_pauses": sum(leg.paused for leg in live),
            "connect_failures": gen.connect_failures,
        },
    }
