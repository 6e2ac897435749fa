"""One measured run: start a server under test, set up N calls, measure a window, tear everything down.

This process is the load generator (Asterisk's side: the caller legs of :mod:`ivr.bench.legs` and, in
ARI mode, the simulated ARI); the server under test is always another process
(:mod:`ivr.bench.servers`). With two or more CPUs the server is pinned to its own core(s) and the
generator to another one; where the server's workers need every core, they share and the result says
so. CPU time and RSS are read from /proc over the server's whole process tree; RSS is read idle (before
any call), at load (end of the window) and after every call has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.bench.legs import PERIOD, CallerLeg, LoadGenerator
from ivr.bench.procfs import (
    busy_percent,
    cpu_seconds,
    cpu_times,
    free_port,
    pin,
    pin_tree,
    process_tree,
    raise_open_files,
    rss_kib,
    tree_cpu_seconds,
    tree_rss_kib,
)
from ivr.bench.servers import (
    ARI_APP,
    BenchContext,
    BenchError,
    ServerProcess,
    Shape,
    scrape_drops,
    start_server,
    wait_calls_ended,
)
from ivr.bench.stats import frame_stats, pcts
from ivr.bench.ws_shape import WS_SHAPE, BenchWsLeg, WsLoadGenerator

__all__ = [
    "BenchConfig",
    "BenchError",
    "CallerLeg",
    "LoadGenerator",
    "Placement",
    "cpu_seconds",
    "free_port",
    "placement",
    "rss_kib",
    "run_once",
]


@dataclass
class BenchConfig:
    """One measured run: ``calls`` concurrent calls to ``shape`` held for ``seconds`` once all are set up."""

    shape: Shape
    calls: int
    seconds: float = 10.0
    rate: int = 16000
    setup_rate: float = 200.0
    """Calls placed per second while ramping up."""
    settle: float = 1.0
    """Seconds between the last call being set up and the measurement window."""
    after: float = 3.0
    """Seconds after the last call ended before the "after" RSS is read: a server gives memory back once
    the wave of endings has settled (a second with no call coming or going, checked each second), so up to
    2 s after the last one."""
    pin: bool = True
    """Pin the server and the generator to different CPUs (when at least two are available)."""
    boost: int = 10
    """Lower the generator thread's nice value by this much while it has a CPU of its own (when allowed)."""
    log_dir: Path | None = None
    """Where the servers' logs go; a temporary directory (removed afterwards) if None."""
    quiet_below: float = 25.0
    """Before starting, wait until the machine's CPUs are less busy than this (% of all of them)..."""
    quiet_wait: float = 0.0
    """...for at most this many seconds (0: start at once). Other people's work makes figures noise."""
    waves: int = 1
    """Waves of the same N calls on the one server; the figures are the first's, later ones add RSS only."""


@dataclass(frozen=True)
class Placement:
    """Which CPUs the server and the generator run on, and whether the generator has its own."""

    server: frozenset[int] | None
    generator: int | None
    exclusive: bool
    note: str


def placement(workers: int, enabled: bool = True) -> Placement:
    """Server on the first ``workers`` CPUs, generator on the last; shared when there are not enough."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled:
        return Placement(None, None, False, "not pinned (--no-pin)")
    if len(cpus) < 2:
        return Placement(None, None, False, "not pinned: one CPU, server and generator share it")
    gen = cpus[-1]
    if workers < len(cpus):
        server = frozenset(cpus[:workers])
        return Placement(server, gen, True, f"server on CPU {_cpus(server)}, generator on CPU {gen}")
    server = frozenset(cpus)
    return Placement(
        server,
        gen,
        False,
        f"server on CPU {_cpus(server)} ({workers} workers need every CPU), generator on CPU {gen}: shared",
    )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


async def run_once(cfg: BenchConfig, ctx: BenchContext, index: int = 0) -> dict[str, Any]:
    """Start a fresh server of ``cfg.shape``, set up ``cfg.calls`` calls, measure, tear everything down."""
    with contextlib.ExitStack() as exits:
        if cfg.log_dir is None:
            tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="ivr-bench-")))
        else:
            tmp = cfg.log_dir
            tmp.mkdir(parents=True, exist_ok=True)
        return await _run(cfg, ctx, index, tmp)


async def wait_for_quiet(below: float, max_wait: float, sample: float = 1.0) -> tuple[float, float]:
    """Wait until every CPU together is less than ``below`` % busy (nothing of ours runs yet), for at most
    ``max_wait`` seconds; (seconds waited, busy % of the last sample)."""
    t0 = time.monotonic()
    while True:
        before = cpu_times()
        await asyncio.sleep(sample)
        cores = busy_percent(before, cpu_times())
        busy = sum(cores.values()) / max(len(cores), 1)
        waited = time.monotonic() - t0
        if busy < below or waited >= max_wait:
            return round(waited, 1), round(busy, 1)
        await asyncio.sleep(min(4.0, max(0.0, max_wait - waited)))


async def _run(cfg: BenchConfig, ctx: BenchContext, index: int, tmp: Path) -> dict[str, Any]:
    raise_open_files()
    waited, busy_before = (
        (0.0, None) if cfg.quiet_wait <= 0 else await wait_for_quiet(cfg.quiet_below, cfg.quiet_wait)
    )
    shape = cfg.shape
    sim_ref: list[ServerProcess] = []
    key_tasks: set[asyncio.Task[None]] = set()

    def send_key(leg: CallerLeg | BenchWsLeg, digit: str) -> None:
        """ARI mode: the caller presses a key (ChannelDtmfReceived, and 0x03 through the bridge)."""
        sim = sim_ref[0].sim if sim_ref else None
        caller = sim.caller_of(leg.channel_id) if sim is not None else None
        if sim is None or caller is None:
            leg.write_key(digit)
            return
        task = asyncio.get_running_loop().create_task(sim.press_dtmf(caller, digit))
        key_tasks.add(task)
        task.add_done_callback(key_tasks.discard)

    gen: LoadGenerator | WsLoadGenerator
    if shape.kind == WS_SHAPE:
        gen = WsLoadGenerator(cfg.rate, send_key=send_key)
    else:
        gen = LoadGenerator(cfg.rate, send_key=send_key if shape.kind == "ari" else None)
    where = placement(shape.workers, cfg.pin)
    restore = os.sched_getaffinity(0)
    nice_before = os.getpriority(os.PRIO_PROCESS, 0)
    nice = nice_before
    log_path = tmp / f"{shape.key}-{cfg.rate // 1000}k-{cfg.calls}-{index}.log"
    ws_legs = gen.leg if isinstance(gen, WsLoadGenerator) else None
    server = await start_server(ctx, shape, cfg.rate, cfg.calls, log_path, gen.connect, ws_legs)
    sim_ref.append(server)
    try:
        if where.server is not None:
            pin_tree(server.pid, set(where.server))
        if where.generator is not None:
            pin(0, {where.generator})
        if where.exclusive and cfg.boost > 0:
            nice = _boost(cfg.boost)
        await asyncio.sleep(0.3)
        rss_idle = tree_rss_kib(server.pid)

        # ramp up: place the calls, then wait until every leg hears the server
        t_setup = time.monotonic()
        callers = await _place_calls(cfg, server, gen)
        calls_setup = await _wait_set_up(cfg, server, gen)
        if calls_setup == 0:
            raise BenchError(
                f"{shape.label}: no call was set up ({gen.connect_failures} failed connections):\n{server.tail()}"
            )
        setup_s = time.monotonic() - t_setup
        if where.server is not None:
            pin_tree(server.pid, set(where.server))  # workers started late inherit it; this is for sure
        processes = len(process_tree(server.pid))
        # The generator's collector stays out of the window: it allocates next to nothing per frame, and a
        # full collection (tens of ms with hundreds of calls' state) would delay its reads and show up as
        # the server's lateness. Collect once now, before the settle time absorbs the pause.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            await asyncio.sleep(cfg.settle)
            cpu0, gen_cpu0, cores0 = tree_cpu_seconds(server.pid), cpu_seconds(), cpu_times()
            closed_before = sum(1 for leg in gen.legs.values() if leg.closed)
            gen.start_window()
            t0 = time.monotonic()
            await asyncio.sleep(cfg.seconds)
            gen.stop_window()
            paced = gen.asterisk_figures() if isinstance(gen, WsLoadGenerator) else None
            wall = time.monotonic() - t0
            cpu1, gen_cpu1, cores1 = tree_cpu_seconds(server.pid), cpu_seconds(), cpu_times()
            rss_load = tree_rss_kib(server.pid)
        finally:
            gc.enable()
            gc.unfreeze()
        closed_in_window = sum(1 for leg in gen.legs.values() if leg.closed) - closed_before
        server_cpu = (cpu1 - cpu0) / wall * 100.0
        gen_cpu = (gen_cpu1 - gen_cpu0) / wall * 100.0
        cores = busy_percent(cores0, cores1)
        loadavg = os.getloadavg()[0]
        live: list[CallerLeg | BenchWsLeg] = list(gen.live())
        frames = frame_stats(np.asarray(leg.arrivals, dtype=np.float64) for leg in live)
        latencies = _joined([leg.latencies for leg in live])
        key_latencies = _joined([leg.key_latencies for leg in live])
        tick = gen.clock.wakeup_lateness.summary()
        keys_sent = sum(leg.keys_sent for leg in live)
        frames_sent = sum(leg.frames_sent for leg in live)

        # tear down: the callers hang up, the server ends every call, the memory settles, the counters
        calls_ended, teardown_s, rss_after = await _end_wave(cfg, server, gen, callers)
        drops = await scrape_drops(server.metrics_port)
        rss_waves = [rss_after]
        for _ in range(cfg.waves - 1):
            rss_waves.append(await _another_wave(cfg, server, gen))
    finally:
        await server.stop()
        gen.close()
        for task in list(key_tasks):
            task.cancel()
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, restore)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice_before)  # the next server starts at the usual priority

    preroll = 0
    if server.final_stats is not None:  # the C reference counts what it could not send
        inbound, outbound = 0, int(server.final_stats.get("write_drops", 0))
        drops_source = "reference server counters"
    elif drops is not None:
        inbound, outbound, preroll = drops["inbound"], drops["outbound"], drops.get("preroll", 0)
        drops_source = "ivr /metrics (ivr_frames_dropped_total)"
    else:
        inbound = outbound = 0
        drops_source = "unavailable"
    failed = gen.connect_failures + closed_in_window + (cfg.calls - calls_setup)
    per_call = max(calls_setup, 1)
    return {
        "shape": shape.key,
        "workers": shape.workers,
        "calls": cfg.calls,
        "rate": cfg.rate,
        "calls_setup": calls_setup,
        "failed_connections": failed,
        "setup_seconds": round(setup_s, 3),
        "window_seconds": round(wall, 3),
        "frames_sent": frames_sent,
        "frames_expected": int(cfg.seconds / PERIOD) * len(live),
        **frames,
        "drops": {"inbound": inbound, "outbound": outbound, "source": drops_source},
        "preroll_discarded": preroll,
        **({"asterisk_paced": paced} if paced is not None else {}),
        "response_latency_ms": pcts(latencies * 1000.0),
        "responses": int(latencies.size),
        "key_response_latency_ms": pcts(key_latencies * 1000.0),
        "keys_sent": keys_sent,
        "server": {
            "pid": server.pid,
            "processes": processes,
            "exit_code": server.proc.returncode,
            "cpu_percent": round(server_cpu, 1),
            "cpu_percent_per_call": round(server_cpu / per_call, 4),
            "rss_idle_kib": rss_idle,
            "rss_load_kib": rss_load,
            "rss_after_kib": rss_after,
            "rss_per_call_kib": round((rss_load - rss_idle) / per_call, 1),
            "rss_after_minus_idle_kib": rss_after - rss_idle,
            "rss_after_waves_kib": rss_waves,
            "rss_after_last_wave_minus_idle_kib": rss_waves[-1] - rss_idle,
            "calls_ended_before_after": calls_ended,
            "teardown_seconds": round(teardown_s, 2),
            "reference_stats": server.final_stats,
            "log": str(log_path) if cfg.log_dir is not None else None,
        },
        "pinning": {
            "server_cpus": sorted(where.server) if where.server is not None else None,
            "generator_cpu": where.generator,
            "generator_nice": nice,
            "exclusive": where.exclusive,
            "note": where.note,
        },
        "machine_load": {
            "loadavg_1m": round(loadavg, 2),
            "busy_before_percent": busy_before,
            "waited_for_quiet_seconds": waited,
            "cpu_busy_percent": {str(cpu): pct for cpu, pct in cores.items()},
            "other_on_server_cpus_percent": _other_load(cores, where, server_cpu),
            "other_on_generator_cpu_percent": (
                round(max(0.0, cores.get(where.generator, 0.0) - gen_cpu), 1)
                if where.generator is not None and where.exclusive
                else None
            ),
        },
        "generator": {
            "cpu_percent": round(gen_cpu, 1),
            "tick_lateness_ms": {"p50": tick.p50_ms, "p99": tick.p99_ms, "max": tick.max_ms},
            "skipped_periods": gen.clock.skipped_periods,
            "write_pauses": sum(leg.paused for leg in live),
            "connect_failures": gen.connect_failures,
        },
    }


def _boost(by: int) -> int:
    """Raise this thread's priority (Linux nice is per thread: the event loop's, not the servers' later).

    The generator is the measuring instrument: on a shared machine, another process taking its CPU for a
    scheduler slice delays its timestamps and shows up as the server's lateness. The server under test
    keeps the usual priority, as in a deployment. Without permission (not root) nothing changes.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, current - by)
    return os.getpriority(os.PRIO_PROCESS, 0)


async def _place_calls(
    cfg: BenchConfig, server: ServerProcess, gen: LoadGenerator | WsLoadGenerator
) -> list[str]:
    """ARI: callers enter Stasis (the app does the rest); direct: connect as the dialplan would."""
    batch = max(1, round(cfg.setup_rate / 20))
    callers: list[str] = []
    fmt = "slin16" if cfg.rate == 16000 else "ulaw"
    for start in range(0, cfg.calls, batch):
        count = min(batch, cfg.calls - start)
        if server.sim is not None:
            for i in range(start, start + count):
                chan = await server.sim.place_call(
                    app=ARI_APP, native_format=fmt, caller=("Bench", f"{5550000 + i}"), answered=True
                )
                callers.append(chan.id)
        else:
            assert isinstance(gen, LoadGenerator)
            await asyncio.gather(*(gen.dial("127.0.0.1", server.audiosocket_port) for _ in range(count)))
        await asyncio.sleep(count / cfg.setup_rate)
    return callers


async def _wait_set_up(cfg: BenchConfig, server: ServerProcess, gen: LoadGenerator | WsLoadGenerator) -> int:
    """Until every placed call hears the server (or the server died, or the set-up took far too long)."""
    setup_deadline = time.monotonic() + 15.0 + cfg.calls / max(cfg.setup_rate, 1.0)
    while sum(1 for leg in gen.live() if leg.first_rx is not None) < cfg.calls:
        if server.proc.returncode is not None or time.monotonic() > setup_deadline:
            break
        await asyncio.sleep(0.05)
    return sum(1 for leg in gen.live() if leg.first_rx is not None)


async def _another_wave(cfg: BenchConfig, server: ServerProcess, gen: LoadGenerator | WsLoadGenerator) -> int:
    """The same N calls again on the same server, held as long as the measured wave; its RSS once they
    ended. What a second wave adds tells memory the allocator keeps for reuse (flat) from a leak (grows)."""
    callers = await _place_calls(cfg, server, gen)
    if await _wait_set_up(cfg, server, gen) < cfg.calls:
        raise BenchError(f"{cfg.shape.label}: a later wave was not all set up:\n{server.tail()}")
    await asyncio.sleep(cfg.settle + cfg.seconds)
    return (await _end_wave(cfg, server, gen, callers))[2]


async def _end_wave(
    cfg: BenchConfig, server: ServerProcess, gen: LoadGenerator | WsLoadGenerator, callers: list[str]
) -> tuple[bool, float, int]:
    """The callers hang up, the server ends every call, the memory settles: whether every call ended in
    time, how long that took, and the RSS ``cfg.after`` seconds later."""
    await _hang_up(server, gen, callers)
    t_end = time.monotonic()
    calls_ended = await wait_calls_ended(server.metrics_port, timeout=15.0)
    teardown_s = time.monotonic() - t_end
    await asyncio.sleep(cfg.after)
    return calls_ended, teardown_s, tree_rss_kib(server.pid)


async def _hang_up(server: ServerProcess, gen: LoadGenerator | WsLoadGenerator, callers: list[str]) -> None:
    if server.sim is not None:
        for cid in callers:
            if cid in server.sim.channels:
                with contextlib.suppress(Exception):
                    await server.sim.hangup(cid)
    else:
        legs: list[CallerLeg | BenchWsLeg] = list(gen.live())
        for leg in legs:
            await leg.close()  # FIN, as Asterisk hangs up an AudioSocket session
    closing = [asyncio.ensure_future(leg.wait_closed()) for leg in gen.live()]
    if closing:
        await asyncio.wait(closing, timeout=10)
        for waiter in closing:
            waiter.cancel()


def _joined(parts: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    arrays = [np.frombuffer(p, dtype=np.float64) for p in parts if len(p)]
    return np.concatenate(arrays) if arrays else np.empty(0)


def _other_load(cores: dict[int, float], where: Placement, server_cpu: float) -> float | None:
    """How much of the server's CPUs other processes took (a noisy machine shows here)."""
    if where.server is None:
        return None
    busy = sum(cores.get(c, 0.0) for c in where.server)
    if not where.exclusive:
        return None
    return round(max(0.0, busy - server_cpu), 1)
