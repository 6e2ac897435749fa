"""Both sides of a simulated call's conversation: the IVR's, followed from the call's trace (printed,
and waited on), and the caller's, played from the script's steps or typed at the terminal.

Apart from :mod:`ivr.simulation.runner`, which sets the call up and hands it to these.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ivr.call.report import TraceEvent
from ivr.sim.ari_server import SimAsterisk
from ivr.simulation import script as sc
from ivr.simulation.result import SimulationError, SimulationResult


class _Tracker:
    """Follows the call's trace: prints it, and lets script steps wait for what the IVR does."""

    def __init__(self, out: TextIO | None, result: SimulationResult) -> None:
        self.out = out
        self.result = result
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()  # the loop's clock: virtual time in ``ivr test``
        self.listening = False
        self.prompt_seq = 0
        self.changed = asyncio.Event()
        self.ended = False

    def line(self, who: str, text: str) -> None:
        entry = f"[{self.loop.time() - self.t0:6.2f}] {who:<6} {text}"
        self.result.transcript.append(entry)
        if self.out is not None:
            print(entry, file=self.out, flush=True)

    def __call__(self, event: TraceEvent) -> None:
        if event.kind == "prompt":
            self.result.prompts.append((event.step, event.text))
            self.prompt_seq += 1
            self.listening = False
            self.line("ivr", f'{event.step}: "{event.text}"')
        elif event.kind == "listen":
            self.listening = True
        elif event.kind == "record":
            self.listening = True
            self.line("ivr", f"{event.step}: (beep) recording the caller")
        elif event.kind == "heard":
            self.listening = False
            self.line("stt", f'{event.step}: heard "{event.text}"')
        elif event.kind == "dtmf":
            self.line("dtmf", event.text)
        elif event.kind == "barge_in":
            self.result.barge_ins.append(event.step or "")
            self.line("barge", f"{event.step}: the caller interrupted the prompt")
        elif event.kind == "step":
            self.line("step", f"{event.step}" + (f" ({event.text})" if event.text else ""))
        elif event.kind == "end":
            self.ended = True
            self.line("end", event.text)
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.ended:
                        raise SimulationError(f"{what}: the call ended first")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise SimulationError(f"{what}: not within {timeout:g} s") from None


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - app state without an event
                await asyncio.sleep(0.05)


async def _run_steps(
    script: sc.CallerScript,
    sim: SimAsterisk,
    caller_id: str,
    tracker: _Tracker,
    speak: Callable[[str], Any],
    timeout: float,
) -> None:
    cursor = 0
    for number, step in enumerate(script.steps, 1):
        label = f"step {number}"
        if isinstance(step, sc.WaitFor):
            wanted = step.wait_for.lower()
            start = cursor

            def found(start: int = start, wanted: str = wanted) -> bool:
                return any(wanted in text.lower() for _, text in tracker.result.prompts[start:])

            await tracker.wait(found, step.timeout_s, f"{label} wait_for {step.wait_for!r}")
            cursor = next(
                i + 1
                for i in range(start, len(tracker.result.prompts))
                if wanted in tracker.result.prompts[i][1].lower()
            )
        elif isinstance(step, sc.Say):
            await tracker.wait(lambda: tracker.listening, timeout, f"{label} say: the IVR never listened")
            await speak(step.say)
        elif isinstance(step, sc.BargeIn):
            seq = tracker.prompt_seq

            def new_prompt(seq: int = seq) -> bool:
                return tracker.prompt_seq > seq

            if tracker.listening or seq == 0:
                await tracker.wait(new_prompt, timeout, f"{label} barge_in: no prompt played")
            await asyncio.sleep(0.4)
            await speak(step.barge_in)
        elif isinstance(step, sc.Press):
            await tracker.wait(lambda: tracker.listening, timeout, f"{label} press: the IVR never listened")
            for key in step.press:
                await sim.press_dtmf(caller_id, key)
                await asyncio.sleep(0.15)
        elif isinstance(step, sc.Silence):
            tracker.line("caller", f"(silent {step.silence} ms)")
            await _until(lambda: tracker.ended, timeout=step.silence / 1000)  # no point once it ended
        elif isinstance(step, sc.HangupStep):
            tracker.line("caller", "(hangs up)")
            if caller_id in sim.channels:
                await sim.hangup(caller_id)
            return


async def _interactive(
    sim: SimAsterisk, caller_id: str, tracker: _Tracker, speak: Callable[[str], Any]
) -> None:
    """Type what the caller says; digits like ``1#`` are pressed; ``/hangup`` or EOF hangs up.

    Lines are read by a daemon thread of its own: a read blocked on the terminal cannot be cancelled,
    so when the IVR ends the call the simulation returns at once instead of waiting for one more Enter
    (a thread of the loop's executor would be joined at exit, which is exactly that wait).
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in iter(sys.stdin.readline, ""):
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")  # EOF

    threading.Thread(target=read, name="ivr-simulate-stdin", daemon=True).start()
    print("type what the caller says; 1# presses keys; /hangup or Ctrl-D ends", file=sys.stderr)
    while not tracker.ended:
        getter = asyncio.ensure_future(lines.get())
        ended = asyncio.ensure_future(tracker.wait(lambda: tracker.ended, 1e9, "the call"))
        done, _ = await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (getter, ended):
            if task not in done:
                task.cancel()
        await asyncio.gather(getter, ended, return_exceptions=True)
        if getter not in done or getter.cancelled():
            return  # the IVR ended the call first
        line = getter.result()
        text = line.strip()
        if not line or text == "/hangup":
            if caller_id in sim.channels:
                await sim.hangup(caller_id)
            return
        if text and not set(text) - sc.DTMF_KEYS:
            for key in text:
                await sim.press_dtmf(caller_id, key)
                await asyncio.sleep(0.15)
        elif text:
            await speak(text)
