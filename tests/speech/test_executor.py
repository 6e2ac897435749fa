"""Speech inference in worker processes: same answers as in-process, streamed, cancellable, and a
worker that dies fails only its own requests and is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from ivr.speech.errors import ProviderError
from ivr.speech.executor import EngineSpec, RemoteSynthesizer, RemoteTranscriber, SpeechPool
from ivr.speech.simulated import ToneSynthesizer, decode_text_speech, encode_text_speech

STT = EngineSpec("stt", "sim-text")
TTS = EngineSpec("tts", "sim-text")


@pytest.fixture
async def pool():
    p = SpeechPool([STT, TTS], processes=2)
    await p.start()
    yield p
    await p.aclose()


async def test_remote_engines_answer_like_local_ones(pool: SpeechPool) -> None:
    local = ToneSynthesizer()
    remote = RemoteSynthesizer(pool, TTS, local)
    assert remote.identity() == local.identity()
    frames = [f async for f in remote.synthesize("Welcome to the pizza line", rate=16000)]
    expected = [f async for f in local.synthesize("Welcome to the pizza line", rate=16000)]
    assert b"".join(frames) == b"".join(expected)
    assert all(len(f) == 640 for f in frames[:-1])
    assert decode_text_speech(b"".join(frames)) == ["Welcome to the pizza line"]

    transcriber = RemoteTranscriber(pool, STT, engine="sim-text")
    heard = await transcriber.transcribe(encode_text_speech("large please", 8000), rate=8000)
    assert heard.text == "large please"


async def test_closing_a_stream_early_cancels_it_in_the_worker(pool: SpeechPool) -> None:
    remote = RemoteSynthesizer(pool, TTS, ToneSynthesizer())
    stream = remote.synthesize("x" * 2000, rate=8000)
    first = await stream.__anext__()
    assert len(first) == 320
    await stream.aclose()
    for _ in range(50):
        if not any(c.requests for c in pool._children):
            break
        await asyncio.sleep(0.01)
    assert not any(c.requests for c in pool._children)
    # the pool still serves
    assert [f async for f in remote.synthesize("ok", rate=8000)]


async def test_a_cancelled_transcription_is_cancelled_in_the_worker(pool: SpeechPool) -> None:
    """A words check the caller's speech made moot (or a hangup) must not keep its place in the worker's
    queue: the worker is told, so a request not started yet never runs."""
    sent: list[tuple[object, ...]] = []
    for child in pool._children:
        channel = child.channel
        assert channel is not None
        original = channel.send

        def spy(message: tuple[Any, ...], original: Callable[[tuple[Any, ...]], None] = original) -> None:
            sent.append(message)
            original(message)

        channel.send = spy  # type: ignore[method-assign]
    transcriber = RemoteTranscriber(pool, STT, engine="sim-text")
    task = asyncio.ensure_future(transcriber.transcribe(encode_text_speech("large", 8000), rate=8000))
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0)
    (request,) = sent
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ("cancel", request[1]) in sent
    assert not any(c.requests for c in pool._children)
    heard = await transcriber.transcribe(encode_text_speech("small", 8000), rate=8000)
    assert heard.text == "small"


async def test_a_dead_worker_fails_its_requests_and_is_replaced(pool: SpeechPool) -> None:
    transcriber = RemoteTranscriber(pool, STT, engine="sim-text")
    victim = pool._children[0]
    assert victim.process is not None
    pid = victim.process.pid
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if pool.restarts and all(c.ready.is_set() for c in pool._children) and pid not in pool.pids:
            break
        await asyncio.sleep(0.02)
    assert pool.restarts == 1
    assert pid not in pool.pids
    assert len(pool.pids) == 2
    heard = await transcriber.transcribe(encode_text_speech("two", 8000), rate=8000)
    assert heard.text == "two"


async def test_a_request_in_flight_on_a_dying_worker_is_a_provider_error() -> None:
    pool = SpeechPool([TTS], processes=1)
    await pool.start()
    try:
        remote = RemoteSynthesizer(pool, TTS, ToneSynthesizer())
        pid = pool.pids[0]
        os.kill(pid, signal.SIGSTOP)  # the request is sent but never answered ...
        stream = remote.synthesize("a prompt", rate=8000)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.05)
        assert not first.done()
        os.kill(pid, signal.SIGKILL)  # ... and the worker dies with it in flight
        with pytest.raises(ProviderError, match="exited"):
            await first
    finally:
        await pool.aclose()


async def test_no_process_is_left_after_close() -> None:
    pool = SpeechPool([STT], processes=1)
    await pool.start()
    pids = pool.pids
    await pool.aclose()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_offline_engines_load_at_start_and_run_in_the_worker() -> None:
    """piper speaks and whisper hears it, both in a worker process whose models loaded before ready."""
    pytest.importorskip("faster_whisper", reason="the 'offline' extra is not installed")
    pytest.importorskip("piper", reason="the 'offline' extra is not installed")
    from ivr.speech.offline import PiperSynthesizer

    stt, tts = EngineSpec("stt", "offline", language="en"), EngineSpec("tts", "offline")
    pool = SpeechPool([stt, tts], processes=1)
    await pool.start()
    try:
        speak = RemoteSynthesizer(pool, tts, PiperSynthesizer())
        pcm = b"".join([f async for f in speak.synthesize("Please say your account number.", rate=16000)])
        assert len(pcm) > 16000  # over half a second of speech
        heard = await RemoteTranscriber(pool, stt, engine="offline").transcribe(
            pcm, rate=16000, hints=["account number"]
        )
        assert "account" in heard.text.lower()
    finally:
        await pool.aclose()
