"""Log output for ``ivr run``: one line per event, plain text or JSON (``--log-json``), rate-limited.

Log messages already carry the call id where there is one ("call <id>: ..."); JSON lines add it as a
field so log pipelines can group a call's lines without parsing text.

Whatever a peer can trigger at will (a junk HTTP request, a refused connection, a bad frame) must not
become a log flood. Rather than each module counting its own lines, :func:`setup_logging` installs one
:class:`RateLimitFilter` on the output: per logger and message *template* (the ``%s`` string, before
its arguments), the first ``burst`` lines of a ``period`` pass, the rest are counted, and one line
"N similar lines suppressed" follows when the period is over. Modules just log normally, with
``%``-style arguments (an f-string makes every line its own template). INFO and DEBUG are not limited.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_CALL_ID = re.compile(r"\bcall ([\w.:-]+)")

LOG_BURST = 10
"""Lines of one template that pass in each period."""
LOG_PERIOD_SECONDS = 10.0
_MAX_TEMPLATES = 1000
"""Templates tracked at once; the oldest is summarised and forgotten first."""


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if (found := _CALL_ID.search(message)) is not None:
            entry["call_id"] = found.group(1).rstrip(":")
        if self.process is not None:
            entry["process"] = self.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


Key = tuple[str, str]
"""(logger name, message template)."""


@dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    level: int = logging.WARNING


class RateLimitFilter(logging.Filter):
    """Lets ``burst`` records per (logger, template) through each ``period`` seconds and summarises
    the rest. Summaries go to ``emit`` (the handler's ``handle``): when the template is logged again
    after its period, when any record arrives after a period in which others were suppressed, and on
    :meth:`flush`. ``clock`` is injectable for tests (virtual time)."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        burst: int = LOG_BURST,
        period: float = LOG_PERIOD_SECONDS,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if burst < 1 or period <= 0:
            raise ValueError("burst must be >= 1 and period > 0")
        self._emit = emit
        self.burst = burst
        self.period = period
        self.min_level = min_level
        self._clock = clock
        self._windows: OrderedDict[Key, _Window] = OrderedDict()
        self._next_sweep = clock() + period
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "ivr_summary", False):
            return True
        now = self._clock()
        allow = True
        due: list[tuple[Key, _Window]] = []
        with self._lock:
            if record.levelno >= self.min_level:
                allow = self._count((record.name, str(record.msg)), record.levelno, now, due)
            if now >= self._next_sweep:  # any line is a chance to report a flood that has ended
                self._next_sweep = now + self.period
                expired = [(k, w) for k, w in self._windows.items() if now - w.start >= self.period]
                for key, window in expired:
                    del self._windows[key]
                    if window.suppressed:
                        due.append((key, window))
        for key, window in due:
            self._summarise(key, window)
        return allow

    def _count(self, key: Key, level: int, now: float, due: list[tuple[Key, _Window]]) -> bool:
        window = self._windows.get(key)
        if window is None or now - window.start >= self.period:
            if window is not None and window.suppressed:
                due.append((key, window))
            window = self._windows[key] = _Window(now)
        self._windows.move_to_end(key)
        while len(self._windows) > _MAX_TEMPLATES:
            old_key, old = self._windows.popitem(last=False)
            if old.suppressed:
                due.append((old_key, old))
        window.level = max(window.level, level)
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        return False

    def flush(self) -> None:
        """Summarise every period with suppressed lines now (at exit, or in tests)."""
        with self._lock:
            due = [(k, w) for k, w in self._windows.items() if w.suppressed]
            for key, _ in due:
                del self._windows[key]
        for key, window in due:
            self._summarise(key, window)

    def _summarise(self, key: Key, window: _Window) -> None:
        name, template = key
        summary = logging.LogRecord(
            name,
            window.level,
            __file__,
            0,
            "%d similar lines suppressed within %g s: %r",
            (window.suppressed, self.period, template),
            None,
        )
        summary.__dict__["ivr_summary"] = True
        self._emit(summary)


def setup_logging(
    level: str,
    *,
    json_lines: bool = False,
    burst: int = LOG_BURST,
    period: float = LOG_PERIOD_SECONDS,
    process: str | None = None,
) -> RateLimitFilter:
    """One stderr handler for the process; ``process`` names it in every line (``worker 2``)."""
    handler = logging.StreamHandler(sys.stderr)
    where = f" [{process}]" if process else ""
    handler.setFormatter(
        JsonFormatter(process)
        if json_lines
        else logging.Formatter(f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")
    )
    limiter = RateLimitFilter(handler.handle, burst=burst, period=period)
    handler.addFilter(limiter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level))
    return limiter
