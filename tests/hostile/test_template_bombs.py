"""Hostile templates: every bomb is refused after bounded work and memory, as one template error on the
flow's error path, while other calls keep their frame cadence; ``ivr validate`` reports what it can see
without building it.

Work is counted, not timed: a trace hook counts the Python lines and calls a bomb runs (and stops a
runaway one, so a regression fails instead of hanging), tracemalloc measures its peak memory, and the budget
reports its own units. ``python -m tests.hostile.test_template_bombs`` prints the CPU time of each bomb
on this machine (the numbers README quotes).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _typeshed import TraceFunction

from ivr.flow.actions import End, HttpRequest, Log, Play
from ivr.flow.engine import FlowEngine
from ivr.flow.events import CallStarted, PromptFinished, WebhookResult
from ivr.flow.model import Flow
from ivr.flow.template_budget import ERROR_PATH_RESERVE, MAX_WORK, Budget
from ivr.flow.templates import TemplateError, evaluate, render, template_budget
from ivr.flow.validate import validate_source
from tests.flow.helpers import flow_from_yaml

MAX_STEPS = 600_000
"""Python lines run plus functions called (trace events) by a refused bomb: the heaviest bombs here
reach about 520,000, for about 5 ms of work untraced (see ``__main__`` below)."""
RUNAWAY_STEPS = 5_000_000
MAX_PEAK_BYTES = 4_000_000
SECONDS_PER_UNIT = 25e-9
"""The budget's calibration (ivr.flow.template_budget): what one unit of work costs on one core."""

TEMPLATE_FLOWS = Path(__file__).parent / "template_flows"
BIG = list(range(100_000))
GRID = [list(range(300)) for _ in range(300)]
CONTEXT: dict[str, Any] = {
    "name": "Ana",
    "reply": {"slots": BIG, "grid": GRID, "table": {str(i): i for i in range(50_000)}},
    "text": "x" * 10_000,
}
WORK = "too much work"
LONG = "characters long"
WIDE = "would make a text longer"

# (id, template, what the error says)
BOMBS: list[tuple[str, str, str]] = [
    ("nested ranges", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", WORK),
    (
        "nested webhook lists",
        "{% for i in reply.slots %}{% for j in reply.slots %}{% endfor %}{% endfor %}",
        WORK,
    ),
    (
        "loop filter",
        "{% for i in range(10000) %}{% for j in reply.slots if j == i %}{% endfor %}{% endfor %}",
        WORK,
    ),
    ("printf width", "{{ '%999999999s' % name }}", WIDE),
    ("printf precision", "{{ '%.999999999f' % 1.5 }}", "precision of 999,999,999"),
    ("format filter", "{{ '%999999999s' | format(name) }}", WIDE),
    ("str.format width", "{{ '{:>999999999}'.format(name) }}", WIDE),
    ("str.format fields", "{{ ('{0:>9999}' * 1000).format(name) }}", LONG),
    ("str.format via attr", "{{ ('{:>999999999}' | attr('format'))(name) }}", WIDE),
    ("center", "{{ name | center(999999999) }}", WIDE),
    ("ljust", "{{ name.ljust(999999999) }}", WIDE),
    ("zfill", "{{ '1'.zfill(999999999) }}", WIDE),
    ("indent", "{{ text | indent(9999) }}", LONG),
    ("wordwrap", "{{ text | wordwrap(1, wrapstring=text) }}", WORK),
    ("replace filter", "{{ text | replace('x', text) }}", LONG),
    ("str.replace", "{{ text.replace('', text) }}", LONG),
    ("expandtabs", "{{ ('\t' * 9000).expandtabs(9000) }}", LONG),
    ("join", "{{ reply.slots | join(text) }}", LONG),
    ("repeat", "{{ 'x' * 10**9 }}", LONG),
    ("power tower", "{{ ((10**100)**100)**100 }}", "bits"),
    (
        "squaring",
        "{% set ns = namespace(x=10) %}{% for i in range(100) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
        "bits",
    ),
    (
        "~ doubling",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        LONG,
    ),
    (
        "+ doubling",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        LONG,
    ),
    (
        "list doubling",
        "{% set ns = namespace(s=[1]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "items",
    ),
    ("macro recursion", "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", "deeper than 20"),
    (
        "macro fan-out",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(18) }}",
        WORK,
    ),
    (
        "macro doubling",
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n-1) }}{% endif %}{% endmacro %}{{ d('a', 30) }}",
        LONG,
    ),
    ("recursive loop", "{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}", "deeper than 20"),
    ("output loop", "{% for i in range(10000) %}{{ text }}{% endfor %}", "longer than 10,000"),
    (
        "macro buffer",
        "{% macro m() %}{% for i in range(10000) %}{{ text }}{% endfor %}{% endmacro %}{{ m() | length }}",
        WORK,
    ),
    (
        "set block",
        "{% set x %}{% for i in range(10000) %}{{ text }}{% endfor %}{% endset %}{{ x | length }}",
        WORK,
    ),
    ("print a webhook list", "{{ reply.slots }}", LONG),
    ("print a grid", "{{ reply.grid }}", LONG),
    ("concat a list", "{{ name ~ reply.slots }}", LONG),
    ("in, in a loop", "{% for i in range(10000) %}{{ i in reply.slots }}{% endfor %}", WORK),
    ("compare, in a loop", "{% for i in range(10000) %}{{ reply.grid == reply.grid }}{% endfor %}", WORK),
    ("is in, in a loop", "{% for i in range(10000) %}{{ i is in reply.slots }}{% endfor %}", WORK),
    ("slice copies", "{% for i in range(10000) %}{{ reply.slots[:] | length }}{% endfor %}", "items"),
    ("sort in a loop", "{% for i in range(10000) %}{{ reply.slots | sort | first }}{% endfor %}", WORK),
    (
        "map in a loop",
        "{% for i in range(100) %}{{ reply.slots | map('string') | list | length }}{% endfor %}",
        WORK,
    ),
    ("sum of lists", "{{ ([[1] * 1000] * 1000) | sum(start=[]) | length }}", "items"),
    ("batch fill", "{{ [1] | batch(999999999, 'x') | list }}", "batch"),
    ("slice fill", "{{ [1] | slice(999999999, 'x') | list }}", "slice"),
    ("round", "{{ 5 | round(-10**7) }}", "precision"),
    ("tojson indent", "{{ reply.grid | tojson(indent=100000) }}", "indent"),
    ("lipsum", "{{ lipsum(10**6) }}", "lipsum"),
    ("range", "{{ range(10**18) | list }}", "range()"),
    ("dict copies", "{% for i in range(10000) %}{{ dict(reply.table) | length }}{% endfor %}", WORK),
    ("loop.changed", "{% for i in range(10000) %}{{ loop.changed(reply.grid) }}{% endfor %}", WORK),
    ("to_bytes", "{{ (1).to_bytes(999999999, 'big') }}", "not allowed"),
    ("translate", "{{ text.translate({120: text}) }}", "not allowed"),
    ("xmlattr", "{{ {'a': reply.slots} | xmlattr }}", LONG),
    ("urlencode", "{{ {'a': reply.slots} | urlencode }}", LONG),
    ("pprint", "{{ reply.grid | pprint }}", LONG),
    ("format !r", "{{ '{0!r:>9999}'.format(reply.grid) }}", LONG),
    ("dict view", "{{ reply.table.items() }}", LONG),
    ("namespace", "{% set ns = namespace(a=reply.slots) %}{{ ns }}", LONG),
    ("upper grows", "{{ ('\ufb03' * 9000) | upper }}", LONG),
    ("escape grows", "{{ ('<' * 9000) | escape }}", LONG),
    ("divisibleby %", "{{ '%999999999s' is divisibleby 3 }}", WIDE),
    ("huge int text", "{{ ('9' * 4000) | int * 2 }}", "bits"),
    ("cycler args", "{{ cycler(*reply.slots).next() }}", WORK),
    (
        "deep nesting",
        "{% set ns = namespace(x=1) %}{% for i in range(200) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}",
        "nested deeper",
    ),
    ("escape the sandbox", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
]
COMPILE_BOMBS: list[tuple[str, str, str]] = [
    ("parentheses", "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
    ("not chain", "{{ " + "not " * 3000 + "1 }}", "nested too deeply"),
    ("if tower", "{% if 1 %}" * 500 + "x" + "{% endif %}" * 500, "nested too deeply"),
    ("plus chain", "{{ " + " + ".join(["1"] * 3000) + " }}", "nested too deeply"),
    ("huge source", "{{ name }}" * 3000, "limit is 20,000"),
    ("include", "{% include 'x' %}", "not supported"),
]


class Runaway(BaseException):
    """A bomb ran more steps than any bounded one could (a regression): stop it, fail the test."""


@dataclass
class Meter:
    steps: int = 0
    peak: int = 0


@contextmanager
def metered(runaway: int = RUNAWAY_STEPS, *, lines: bool = True) -> Iterator[Meter]:
    """Count the Python lines run and functions called (stopping a runaway) and the peak of traced
    memory inside the block. Lines count loop iterations even when a loop body calls nothing; with
    ``lines=False`` only calls are counted (cheaper, for code that calls a function per character)."""
    meter = Meter()

    def trace(frame: FrameType, event: str, arg: object) -> TraceFunction:
        meter.steps += 1
        if meter.steps > runaway:
            raise Runaway(f"{meter.steps:,} steps")
        return trace

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event in ("call", "c_call"):
            trace(frame, event, arg)

    tracemalloc.start()
    if lines:
        sys.settrace(trace)
    else:
        sys.setprofile(profile)
    try:
        yield meter
    finally:
        sys.settrace(None)
        sys.setprofile(None)
        meter.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@contextmanager
def runaway_guard() -> Iterator[None]:
    """Only the step count's stop (no memory tracing), for wrapping many events."""
    steps = 0

    def trace(frame: FrameType, event: str, arg: object) -> TraceFunction:
        nonlocal steps
        steps += 1
        if steps > RUNAWAY_STEPS:
            raise Runaway(f"{steps} steps")
        return trace

    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(None)


@pytest.mark.parametrize(("source", "fragment"), [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_template_bomb_is_refused_after_bounded_work_and_memory(source: str, fragment: str) -> None:
    with template_budget() as budget, metered() as meter, pytest.raises(TemplateError) as caught:
        render(source, CONTEXT)
    assert fragment in str(caught.value), str(caught.value)
    assert meter.steps <= MAX_STEPS, f"{meter.steps:,} steps"
    assert meter.peak <= MAX_PEAK_BYTES, f"{meter.peak:,} bytes"
    assert budget.spent > 0


@pytest.mark.parametrize(
    ("source", "fragment"), [b[1:] for b in COMPILE_BOMBS], ids=[b[0] for b in COMPILE_BOMBS]
)
def test_template_too_deep_or_too_long_is_refused_before_it_runs(source: str, fragment: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=fragment):
            render(source, CONTEXT)  # compiled once, when the flow is loaded: never run
        assert tracemalloc.get_traced_memory()[1] <= MAX_PEAK_BYTES
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "condition",
    [
        "'x' * 10**9 == 'y'",
        "reply.grid == reply.grid and reply.grid == reply.grid and reply.grid == reply.grid",
        "(reply.slots | sort | list) == reply.slots",
        "'%999999999s' % name == name",
        "name.__class__",
    ],
)
def test_branch_conditions_are_bounded_too(condition: str) -> None:
    with metered() as meter, pytest.raises(TemplateError):
        evaluate(condition, CONTEXT)
    assert meter.steps <= MAX_STEPS
    assert meter.peak <= MAX_PEAK_BYTES


def test_ordinary_templates_cost_a_small_part_of_the_budget() -> None:
    reply = {"slots": [{"day": f"day {i}", "time": f"{9 + i % 8}:00"} for i in range(20)]}
    source = (
        "{% for slot in reply.slots %}{{ loop.index }}: {{ slot.day }} at {{ slot.time }}"
        "{{ ', ' if not loop.last }}{% endfor %}. Total {{ reply.slots | length }}; "
        "{{ reply.slots | map(attribute='day') | join(', ') | upper }} {{ '%05.1f' % 3.14159 }} {{ '{:>6}'.format(name) }}"
    )
    with template_budget() as budget:
        text = render(source, {"reply": reply, "name": "Ana"})
    assert text.startswith("1: day 0 at 9:00, 2: day 1 at 10:00")
    assert budget.spent < MAX_WORK // 20, budget.spent


# ---------------------------------------------------------------- the flow's error path, one log line

BOMB = "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"  # n from vars: 10,000
BASE = """
name: t
start: {start}
on_error: sorry
vars: {{name: Ana, n: 10000, reply: {{}}}}
steps:
{steps}
  sorry:
    say: "Sorry {{{{ name }}}}, something went wrong."
    next: bye
  bye:
    hangup:
"""
SITES = {
    "say": "  s:\n    say: '" + BOMB + "'\n    next: bye\n",
    "ask": "  s:\n    ask: '" + BOMB + "'\n    capture: {type: text, slot: note}\n    next: bye\n",
    "branch": "  s:\n    branch:\n      - if: \"'x' * n * n == name\"\n        next: bye\n    else: bye\n",
    "set": "  s:\n    set: {note: \"{{ reply.slots | sort | join(', ') }}\"}\n    next: bye\n",
    "webhook url": "  s:\n    webhook: {url: 'https://example.com/{{ reply.slots | join }}'}\n    next: bye\n",
    "webhook json": "  s:\n    webhook: {url: 'https://example.com/', json: {a: '"
    + BOMB
    + "'}}\n    next: bye\n",
}


@cache
def _flow(site: str) -> Flow:
    return flow_from_yaml(BASE.format(start="s", steps=SITES[site]))


def _engine(site: str) -> FlowEngine:
    return FlowEngine(_flow(site))


@pytest.mark.parametrize("site", sorted(SITES))
def test_a_template_bomb_takes_the_error_path_with_one_log_line(site: str) -> None:
    engine = _engine(site)
    big = {"slots": [f"slot {i}" for i in range(5_000)] * 20}
    with metered() as meter:
        actions = engine.handle(CallStarted(call_id="c1", vars={"reply": big}))
    assert meter.steps <= MAX_STEPS + 20_000
    errors = [a for a in actions if isinstance(a, Log) and a.level == "error"]
    assert len(errors) == 1, errors
    assert errors[0].message.startswith("template error in step s: "), errors[0].message
    assert [a.text for a in actions if isinstance(a, Play)] == ["Sorry Ana, something went wrong."]
    assert not any(isinstance(a, HttpRequest) for a in actions)
    assert engine.current_step == "sorry"
    assert engine.handle(PromptFinished())[-1] == End("hangup", "normal")


def test_without_an_error_path_the_call_hangs_up_with_one_log_line() -> None:
    text = BASE.format(start="s", steps=SITES["say"]).replace("on_error: sorry\n", "")
    engine = FlowEngine(flow_from_yaml(text))
    actions = engine.handle(CallStarted(call_id="c1"))
    assert len([a for a in actions if isinstance(a, Log) and a.level == "error"]) == 1
    assert isinstance(actions[-1], End)
    assert actions[-1].outcome == "error"


def test_one_budget_per_event_and_the_error_path_still_speaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two expensive steps in one event share one budget; after it runs out the error step gets a
    small reserve, so the caller hears the apology and the event's total work stays bounded."""
    budgets: list[Budget] = []
    real = template_budget

    @contextmanager
    def recorded() -> Iterator[Budget]:
        with real() as budget:
            budgets.append(budget)
            yield budget

    monkeypatch.setattr("ivr.flow.engine.template_budget", recorded)
    heavy = "{% for i in range(1750) %}{{ i % 7 }}{% endfor %}"  # about a third of the budget each
    steps = (
        f'  s:\n    set: {{a: "{heavy}"}}\n    next: t\n'
        f'  t:\n    set: {{b: "{heavy}"}}\n    next: u\n'
        f'  u:\n    set: {{c: "{heavy}"}}\n    next: v\n'
        f'  v:\n    set: {{d: "{heavy}"}}\n    next: bye\n'
    )
    engine = FlowEngine(flow_from_yaml(BASE.format(start="s", steps=steps)))
    actions = engine.handle(CallStarted(call_id="c1"))
    assert [a.text for a in actions if isinstance(a, Play)] == ["Sorry Ana, something went wrong."]
    [budget] = budgets
    assert budget.spent <= MAX_WORK + ERROR_PATH_RESERVE


def test_a_webhook_reply_cannot_turn_a_loop_into_a_bomb() -> None:
    steps = (
        "  s:\n    webhook: {url: 'https://example.com/slots'}\n    save: reply\n    next: read\n"
        "  read:\n    say: '{% for a in reply.slots %}{% for b in reply.slots %}{% endfor %}{% endfor %}Done'\n"
        "    next: bye\n"
    )
    engine = FlowEngine(flow_from_yaml(BASE.format(start="s", steps=steps)))
    engine.handle(CallStarted(call_id="c1"))
    with metered() as meter:
        actions = engine.handle(WebhookResult(200, {"slots": list(range(100_000))}))
    assert meter.steps <= MAX_STEPS + 20_000
    assert [a.text for a in actions if isinstance(a, Play)] == ["Sorry Ana, something went wrong."]


# ---------------------------------------------------------------- other calls keep their cadence


async def test_other_calls_keep_their_frame_cadence_while_bombs_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In virtual time: call B plays on the shared frame clock while call A's engine handles a template
    bomb every 100 ms. Each event holds the loop for as long as its counted work takes at the budget's
    calibration, and B's frames must still leave on time (no catch-up burst, no skipped period)."""
    from ivr.audiosocket.clock import FrameClock, ManualClock
    from ivr.audiosocket.player import Player

    class BusyClock(ManualClock):
        def stall(self, seconds: float) -> None:
            """The loop was busy for ``seconds``: time passed and no callback could run."""
            self._now += seconds

    spent: list[int] = []
    real = template_budget

    @contextmanager
    def recorded() -> Iterator[Budget]:
        with real() as budget:
            yield budget
        spent.append(budget.spent)

    monkeypatch.setattr("ivr.flow.engine.template_budget", recorded)
    clock = BusyClock()
    frames = FrameClock(clock)
    written: list[float] = []
    player = Player(lambda message: written.append(clock.now()), 8000, clock)
    frames.add(player)
    for _ in range(10):  # one virtual second, a bomb every 100 ms
        clock.advance(0.1)
        with runaway_guard():
            _engine("say").handle(CallStarted(call_id="a"))
        clock.stall(spent[-1] * SECONDS_PER_UNIT)
    clock.advance(0.05)
    assert max(spent) <= MAX_WORK + ERROR_PATH_RESERVE
    assert frames.skipped_periods == 0
    first = player.first_deadline
    assert first is not None
    late = [t - (first + i * 0.020) for i, t in enumerate(written)]
    assert len(written) == pytest.approx((clock.now() - first) / 0.020, abs=2)
    assert max(late) < 0.020, "a refused bomb holds the loop for less than one frame"


async def test_a_whole_call_with_a_template_bomb_beside_an_ordinary_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The simulated stack (ARI, AudioSocket, app): the bomb's caller hears the flow's apology, the other
    caller hears their whole call, the process logs one line about the template, and nothing is left."""
    from tests.call.conftest import close_stack, make_stack

    stack = await make_stack(TEMPLATE_FLOWS, "calm")
    try:
        bomb = await stack.sim.place_call(args=["flow=bomb"])
        calm = await stack.sim.place_call(args=["flow=calm"])
        bomb_leg, calm_leg = await stack.leg(bomb.id), await stack.leg(calm.id)
        await bomb_leg.wait_heard("Sorry, this line is not working.")
        await calm_leg.wait_heard("Goodbye.")
        await stack.wait_ended(2)
        assert sorted((r.flow, r.outcome) for r in stack.app.reports) == [
            ("bomb", "hangup"),
            ("calm", "hangup"),
        ]
        assert bomb_leg.heard_texts() == ["Sorry, this line is not working."]
        assert calm_leg.heard_texts() == ["Hello from the calm line.", "Goodbye."]
        lines = [r.getMessage() for r in caplog.records if "template" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "too much work" in lines[0], lines
        stack.assert_clean()
    finally:
        await close_stack(stack)


# ---------------------------------------------------------------- ivr validate, without running anything


VALIDATE_BOMBS = [
    ("{{ 'x' * 10**9 }}", "1,000,000,000 characters"),
    ("{{ 'a' | center(999999999) }}", "width of 999,999,999"),
    ("{{ name | center(10**9) }}", "whatever the value"),
    ("{{ '%999999999s' % name }}", "whatever the value"),
    ("{{ '{:>999999999}'.format(name) }}", "whatever the value"),
    ("{{ name.ljust(10**9) }}", "whatever the value"),
    ("{{ ((10**100)**100)**100 }}", "bits"),
    ("{% for i in range(10**8) %}{% endfor %}", "range() of 100,000,000"),
    (
        "{% for i in range(1000) %}{% for j in range(1000) %}{{ name }}{% endfor %}{% endfor %}",
        "1,000,000 times",
    ),
    ("{{ ''.__class__.__mro__ }}", "'__class__' is not allowed"),
    ("{{ lipsum.__globals__['os'] }}", "'__globals__' is not allowed"),
    ("{{ name['__class__'] }}", "'__class__' is not allowed"),
    ("{{ name | attr('__class__') }}", "'__class__' is not allowed"),
    ("{{ '{0.__class__}'.format(name) }}", "'__class__' is not allowed"),
    ("{{ (1).to_bytes(10**9, 'big') }}", "not allowed"),
    ("{% include 'other.txt' %}", "not supported"),
]


@pytest.mark.parametrize(("template", "fragment"), VALIDATE_BOMBS)
def test_validate_reports_template_bombs_without_building_them(template: str, fragment: str) -> None:
    text = f'name: t\nstart: a\nvars: {{name: Ana}}\nsteps:\n  a:\n    say: "{template}"\n    next: b\n  b:\n    hangup:\n'
    with metered() as meter:
        report = validate_source(text, "bomb.yaml")
    assert not report.ok
    assert any(fragment in i.message and (i.line, i.column) == (6, 10) for i in report.errors), [
        str(i) for i in report.issues
    ]
    assert meter.peak <= MAX_PEAK_BYTES, f"{meter.peak:,} bytes"
    assert meter.steps <= MAX_STEPS


def test_validate_reports_a_condition_bomb_at_its_line() -> None:
    text = (
        "name: t\nstart: a\nsteps:\n  a:\n    branch:\n      - if: \"'x' * 10**9 == 'y'\"\n"
        "        next: b\n    else: b\n  b:\n    hangup:\n"
    )
    with metered() as meter:
        report = validate_source(text, "bomb.yaml")
    [issue] = report.errors
    assert (issue.line, issue.path) == (6, ("steps", "a", "branch", 0, "if"))
    assert meter.peak <= MAX_PEAK_BYTES


# ---------------------------------------------------------------- the numbers README quotes


def _cpu_ms(action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        with suppress(TemplateError):
            action()
        best = min(best, time.thread_time() - start)
    return best * 1000


def main() -> None:  # pragma: no cover - a measurement, run by hand
    print(f"{'bomb':24} {'CPU ms':>8} {'units':>9} {'peak MB':>8}")
    for name, source, _ in BOMBS:

        def once(source: str = source) -> None:
            with template_budget():
                render(source, CONTEXT)

        with template_budget() as budget, suppress(TemplateError):
            render(source, CONTEXT)
        with metered() as meter, suppress(TemplateError):
            once()
        print(f"{name:24} {_cpu_ms(once):8.2f} {budget.spent:9,} {meter.peak / 1e6:8.2f}")


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
