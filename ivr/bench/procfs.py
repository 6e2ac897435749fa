"""What the bench reads from /proc: CPU time and RSS of a process tree, how busy each core was; pinning.

A server under test may be several processes (``ivr run --workers N``), so CPU and memory are summed over
the process and its descendants. Linux only, like the deployments the figures are for.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
from pathlib import Path


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a whole process (all threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of one process in KiB (0 if it has none or is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (``/proc/PID/task/TID/children``)."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in seen or not Path(f"/proc/{current}").exists():
            continue
        seen.append(current)
        todo.extend(_children(current))
    return seen


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process tree; a process that exits between listing and reading counts 0."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(p)
    return total


def tree_rss_kib(pid: int) -> int:
    """Summed VmRSS of a process tree (each worker's own pages; shared libraries count once per process)."""
    return sum(rss_kib(p) for p in process_tree(pid))


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


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin one process (0: this one) to ``cpus``; False when the kernel refuses."""
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:
        return False
    return True


def _threads(pid: int) -> list[int]:
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except (OSError, ValueError):
        return [pid]


def pin_tree(pid: int, cpus: set[int]) -> bool:
    """Pin every thread of a process and of every descendant it has now (Linux affinity is per thread;
    threads and workers started later inherit the mask of the thread that starts them)."""
    return all([pin(tid, cpus) for p in process_tree(pid) for tid in _threads(p)])


def raise_open_files() -> int:
    """Raise this process's open-file limit to its hard limit (thousands of sockets); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_port_range(count: int, attempts: int = 50) -> int:
    """A port P with P .. P + count - 1 all free now: ``ivr run --workers N`` in ARI mode listens for
    AudioSocket on the base port + the worker's index (one free base port is not enough)."""
    for _ in range(attempts):
        base = free_port()
        if base + count > 65536:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no {count} consecutive free ports on 127.0.0.1")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""
