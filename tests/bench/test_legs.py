"""The bench's callers take turns like a caller (speech, or a key after a "Press 1" prompt), driven by hand.

No sockets and no clock: frames the server "sends" are fed to ``buffer_updated`` and ticks are called
directly, so what the caller does next depends only on what it heard.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr.audiosocket.protocol import encode_audio, frame_bytes
from ivr.bench import generator
from ivr.bench.legs import PROMPT_END_FRAMES, CallerLeg, LoadGenerator
from ivr.bench.procfs import pin_tree, process_tree, tree_cpu_seconds, tree_rss_kib
from ivr.bench.servers import workers_supported
from ivr.speech.simulated import encode_text_speech

RATE = 8000


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _leg(keys: list[tuple[str, str]]) -> tuple[CallerLeg, _Transport]:
    gen = LoadGenerator(RATE, send_key=lambda leg, digit: keys.append((leg.channel_id, digit)))
    leg = CallerLeg(gen, "chan-1")
    transport = _Transport()
    leg.connection_made(transport)  # type: ignore[arg-type]
    return leg, transport


def _hear(leg: CallerLeg, pcm: bytes) -> None:
    size = frame_bytes(RATE)
    pcm += bytes(-len(pcm) % size)
    for i in range(0, len(pcm), size):
        message = encode_audio(pcm[i : i + size], RATE)
        leg._view[: len(message)] = message
        leg.buffer_updated(len(message))


def _prompt_then_silence(leg: CallerLeg, text: str) -> None:
    _hear(leg, encode_text_speech(text, RATE, ms_per_char=10, min_ms=200))
    _hear(leg, bytes(frame_bytes(RATE) * PROMPT_END_FRAMES))


async def test_a_menu_prompt_gets_keys_in_turn_and_a_question_gets_speech() -> None:
    keys: list[tuple[str, str]] = []
    leg, transport = _leg(keys)
    leg.tick(0.0)
    assert transport.written[-1] in leg.gen.noise, "comfort noise while listening"

    _prompt_then_silence(leg, "Press 1 to hear what you said, or press 2 for the news.")
    leg.tick(0.02)
    assert keys == [("chan-1", "1")]
    _hear(leg, encode_text_speech("You said hello.", RATE, min_ms=200))  # the reply ends the wait
    assert len(leg.key_latencies) == 0, "latencies are kept only inside a measurement window"

    _prompt_then_silence(leg, "Sorry, I didn't understand. Press 1 to hear what you said.")
    leg.tick(0.04)
    assert keys[-1] == ("chan-1", "2")

    _hear(leg, encode_text_speech("You said hello.", RATE, min_ms=200))
    _prompt_then_silence(leg, "This is the benchmark question. Please say something.")
    sent = len(transport.written)
    for i in range(len(leg.gen.utterance)):
        leg.tick(0.06 + i * 0.02)
    assert transport.written[sent:] == leg.gen.utterance, "the caller speaks its whole utterance"
    assert len(keys) == 2


async def test_the_server_hanging_up_closes_the_leg() -> None:
    leg, _ = _leg([])
    leg._view[:3] = b"\x00\x00\x00"
    leg.buffer_updated(3)
    assert leg.closed
    assert leg.closed_by_server


def test_placement_gives_the_generator_its_own_cpu_while_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    one = generator.placement(1)
    assert one.server == frozenset({0})
    assert one.generator == 1
    assert one.exclusive
    two = generator.placement(2)
    assert two.server == frozenset({0, 1})
    assert not two.exclusive
    assert "shared" in two.note
    assert generator.placement(1, enabled=False).server is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert generator.placement(1).server is None


def test_workers_flag_is_read_from_ivr_run_help(tmp_path: Path) -> None:
    assert workers_supported(sys.executable) == ("--workers" in _run_help())
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'usage: ivr run [--workers N] [--no-ari]'\n")
    fake.chmod(0o755)
    assert workers_supported(str(fake))


def _run_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ivr", "run", "--help"], capture_output=True, text=True, check=True
    )
    return done.stdout


async def test_cpu_and_rss_cover_the_whole_process_tree() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import subprocess, sys; subprocess.run(['sleep', '30'])",
    )  # fmt: skip
    try:
        for _ in range(1500):  # up to 30 s on a loaded machine
            tree = process_tree(proc.pid)
            if len(tree) == 2:
                break
            await asyncio.sleep(0.02)
        assert tree[0] == proc.pid
        assert len(tree) == 2, "the child and its grandchild"
        assert tree_rss_kib(proc.pid) > 0
        assert tree_cpu_seconds(proc.pid) >= 0.0
    finally:
        for pid in reversed(process_tree(proc.pid)):
            os.kill(pid, 9)
        await proc.wait()


async def test_a_run_waits_for_the_machine_to_be_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([(0, 0), (80, 100), (80, 100), (90, 200)])  # 80 % busy, then 10 %
    monkeypatch.setattr(generator, "cpu_times", lambda: {0: next(readings)})
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    waited, busy = await generator.wait_for_quiet(25.0, 100.0, sample=1.0)
    assert busy == 10.0
    assert slept == [1.0, 4.0, 1.0], "one sample, a pause, a second sample"
    assert waited >= 0.0


async def test_pinning_covers_every_thread_of_the_tree() -> None:
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    try:
        for _ in range(1500):  # until the second thread runs (up to 30 s on a loaded machine)
            if len(os.listdir(f"/proc/{proc.pid}/task")) >= 2:
                break
            await asyncio.sleep(0.02)
        cpu = min(os.sched_getaffinity(0))
        assert pin_tree(proc.pid, {cpu})
        for tid in os.listdir(f"/proc/{proc.pid}/task"):
            assert os.sched_getaffinity(int(tid)) == {cpu}, tid
    finally:
        proc.kill()
        await proc.wait()
