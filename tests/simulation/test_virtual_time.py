"""The virtual-time loop: idle waits are skipped, socket traffic and timers keep their order, and an
executor job is never overtaken by a timer it would have beaten in real time."""

from __future__ import annotations

import asyncio
import time

from ivr.simulation.virtual_time import VirtualTimeLoop


def run(coro_factory):
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro_factory()), runner.get_loop()


def test_a_long_sleep_is_skipped_but_takes_its_time_on_the_loop_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(30)
        return loop.time() - start

    real = time.monotonic()
    elapsed, loop = run(main)
    assert elapsed >= 30
    assert isinstance(loop, VirtualTimeLoop)
    assert loop.skipped >= 29
    assert time.monotonic() - real < 30  # what the loop skipped was not waited for


def test_paced_socket_traffic_keeps_its_cadence_in_virtual_time() -> None:
    """A sender pacing 20 ms frames over TCP and a receiver stamping arrivals, as a call does."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        arrivals: list[float] = []
        got_all = asyncio.Event()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while len(arrivals) < 100:
                await reader.readexactly(320)
                arrivals.append(loop.time())
            got_all.set()
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        start = loop.time()
        for n in range(100):
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
            writer.write(bytes(320))
        await got_all.wait()
        writer.close()
        server.close()
        return [t - start for t in arrivals]

    arrivals, _ = run(main)
    assert len(arrivals) == 100
    # No frame arrives before its deadline: the jumps never let the sender run ahead of its clock.
    # (A loaded machine can make frames late in real time, which the virtual clock also counts.)
    early = [n for n, t in enumerate(arrivals) if t < n * 0.02 - 1e-6]
    assert early == []
    assert arrivals[-1] >= 99 * 0.02 - 1e-6


def test_time_waits_for_an_executor_job() -> None:
    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        timer_fired: asyncio.Future[float] = loop.create_future()

        def fire() -> None:
            if not timer_fired.done():
                timer_fired.set_result(loop.time())

        start = loop.time()  # before the timer is set: it fires 5 s after its own reading of the clock
        loop.call_later(5.0, fire)
        await asyncio.to_thread(time.sleep, 0.05)  # real work, 50 ms
        beaten = not timer_fired.done()
        await timer_fired
        return beaten, loop.time() - start

    (beaten, elapsed), _ = run(main)
    assert beaten  # the 5 s timer did not jump ahead of a 50 ms job
    assert elapsed >= 5


def test_a_no_input_call_runs_its_timeouts_in_virtual_time() -> None:
    """pizza.no_input waits out two no-input timeouts (~20 s of call time) without waiting for them."""
    from pathlib import Path

    from ivr.simulation.runner import simulate
    from ivr.simulation.script import load_script

    root = Path(__file__).parents[2]
    script = load_script(root / "flows" / "callers" / "pizza.no_input.caller.yaml")
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        result = runner.run(simulate(root / "flows" / "pizza.yaml", script, mode="text", out=None))
        skipped = runner.get_loop().skipped  # type: ignore[attr-defined]
    assert result.passed, result.transcript
    assert skipped >= 15


def test_ivr_test_runs_scripts_in_parallel_jobs(capsys) -> None:
    from pathlib import Path

    from ivr.cli import main

    root = Path(__file__).parents[2]
    scripts = [str(root / "flows" / "callers" / f"bank.{case}.caller.yaml") for case in ("happy", "no_match")]
    code = main(["test", "-j", "2", str(root / "flows" / "bank.yaml"), *scripts])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 passed, 0 failed" in out
    assert out.index("bank.happy") < out.index("bank.no_match")  # reported in the order given
