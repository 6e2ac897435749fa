"""The one log rate limiter (``ivr.logs.RateLimitFilter``), in virtual time."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from ivr.logs import RateLimitFilter, setup_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sink:
    """A handler with the filter installed, as ``setup_logging`` does; keeps the lines it writes."""

    def __init__(self, clock: Clock, **kw: float) -> None:
        self.lines: list[str] = []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.lines.append(record.getMessage())  # type: ignore[method-assign]
        self.limiter = RateLimitFilter(self.handler.handle, clock=clock, **kw)  # type: ignore[arg-type]
        self.handler.addFilter(self.limiter)
        self.logger = logging.getLogger(f"test.ratelimit.{id(self)}")
        self.logger.propagate = False
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_burst_passes_then_a_summary_when_the_template_comes_back(clock: Clock) -> None:
    sink = Sink(clock, burst=3, period=10.0)
    for i in range(50):
        sink.logger.warning("bad request from %s: %s", f"10.0.0.{i}", "junk")
    assert sink.lines == [f"bad request from 10.0.0.{i}: junk" for i in range(3)]
    clock.now += 10.0
    sink.logger.warning("bad request from %s: %s", "10.9.9.9", "junk")
    assert sink.lines[3:] == [
        "47 similar lines suppressed within 10 s: 'bad request from %s: %s'",
        "bad request from 10.9.9.9: junk",
    ]


def test_templates_and_loggers_are_limited_separately(clock: Clock) -> None:
    sink = Sink(clock, burst=2, period=10.0)
    other = logging.getLogger(sink.logger.name + ".child")
    for _ in range(5):
        sink.logger.warning("one %s", "x")
        sink.logger.warning("two %s", "x")
        other.warning("one %s", "x")  # propagates to the same handler, own key
    assert sink.lines.count("one x") == 4
    assert sink.lines.count("two x") == 2


def test_info_and_debug_are_never_limited_but_report_an_ended_flood(clock: Clock) -> None:
    sink = Sink(clock, burst=1, period=10.0)
    for _ in range(5):
        sink.logger.error("peer %s sent junk", "p")
    for i in range(100):
        sink.logger.info("call %s: ended", i)
    assert sink.lines == ["peer p sent junk"] + [f"call {i}: ended" for i in range(100)]
    clock.now += 11.0
    sink.logger.info("call %s: started", "next")  # any line after the period reports the flood
    assert sink.lines[-2:] == [
        "4 similar lines suppressed within 10 s: 'peer %s sent junk'",
        "call next: started",
    ]


def test_the_summary_keeps_the_level_and_logger(clock: Clock) -> None:
    sink = Sink(clock, burst=1, period=5.0)
    records: list[logging.LogRecord] = []
    sink.handler.emit = records.append  # type: ignore[method-assign,assignment]
    for _ in range(3):
        sink.logger.error("refused %s", "x")
    sink.limiter.flush()
    summary = records[-1]
    assert (summary.levelno, summary.name) == (logging.ERROR, sink.logger.name)
    assert summary.getMessage() == "2 similar lines suppressed within 5 s: 'refused %s'"


def test_flush_reports_only_what_was_suppressed(clock: Clock) -> None:
    sink = Sink(clock, burst=2, period=10.0)
    sink.logger.warning("quiet %s", 1)
    for _ in range(4):
        sink.logger.warning("loud %s", 1)
    sink.limiter.flush()
    assert sink.lines == ["quiet 1", "loud 1", "loud 1", "2 similar lines suppressed within 10 s: 'loud %s'"]
    sink.limiter.flush()
    assert len(sink.lines) == 4, "a flush reports each suppression once"


def test_a_steady_trickle_under_the_burst_is_never_suppressed(clock: Clock) -> None:
    sink = Sink(clock, burst=2, period=10.0)
    for i in range(30):
        sink.logger.warning("slow %s", i)
        clock.now += 5.0
    assert len(sink.lines) == 30


def test_many_templates_stay_bounded(clock: Clock) -> None:
    sink = Sink(clock, burst=1, period=10.0)
    for i in range(5000):
        sink.logger.warning(f"unique {i}")  # an f-string: every line its own template
    assert len(sink.limiter._windows) <= 1000
    assert len(sink.lines) == 5000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimitFilter(lambda r: None, burst=0)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_setup_logging_installs_the_limiter_for_every_module(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    limiter = setup_logging("INFO", burst=2)
    for name in ("ivr.ops.health", "ivr.audiosocket.server", "aiohttp.server"):
        for _ in range(5):
            logging.getLogger(name).warning("junk from %s", "peer")
    limiter.flush()
    lines = err.getvalue().splitlines()
    assert sum("junk from peer" in line for line in lines) == 6
    assert sum("3 similar lines suppressed" in line for line in lines) == 3
