"""The record step at run time: beep, frames until silence, the end key, the length limit or a hangup,
trailing silence trimmed, the WAV written off the loop; a sensitive message is never written.
Driven frame by frame on a virtual clock (no wall-clock waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ivr.call.recording import Recorder, beep
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.media.framing import frame_bytes
from ivr.media.wav import read_wav
from ivr.simulation.virtual_time import VirtualTimeLoop
from ivr.speech.simulated import encode_text_speech
from ivr.testing import call_flow
from ivr.transport import PlayoutResult, PlayoutState

RATE = 8000
FRAME = frame_bytes(RATE)


class _Playback:
    async def wait(self) -> PlayoutResult:
        await asyncio.sleep(0.25)  # the beep's length
        return PlayoutResult(PlayoutState.COMPLETED, 13, 0)


class _Media:
    rate = RATE
    closed = False

    def __init__(self) -> None:
        self.played: list[bytes] = []

    def play(self, source: Any) -> _Playback:
        self.played.append(bytes(source))
        return _Playback()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


def frames_of(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]


async def feed_live(recorder: Recorder, frames: list[bytes]) -> None:
    """Frames arrive every 20 ms, as from a phone."""
    for frame in frames:
        recorder.feed(frame)
        await asyncio.sleep(0.02)


def action(**kwargs: Any) -> act.Record:
    defaults: dict[str, Any] = {"step": "rec", "max_ms": 10_000, "end_silence_ms": 1000, "name": "vm-rec"}
    return act.Record(**{**defaults, **kwargs})


SPEECH = frames_of(
    encode_text_speech("this is a message for the office please call me back", RATE, ms_per_char=40)
)
SILENCE = [bytes(FRAME)] * 150  # 3 s


def test_beep_then_speech_ending_on_silence(tmp_path: Path) -> None:
    media = _Media()

    async def go() -> tuple[ev.RecordingFinished | ev.RecordingFailed, Recorder]:
        recorder = Recorder(action(), media=media, directory=tmp_path, call_id="c1")
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0.3)  # after the beep
        await feed_live(recorder, [bytes(FRAME)] * 10 + SPEECH + SILENCE)
        return await task, recorder

    result, recorder = run(go())
    assert media.played == [beep(RATE)]
    assert isinstance(result, ev.RecordingFinished)
    assert result.ended_by == "silence"
    assert result.path == str(tmp_path / "c1-vm-rec-1.wav")
    wav = read_wav(Path(result.path))
    speech_ms = len(SPEECH) * 20
    # kept: the lead-in, the speech, a little of the silence after it; the rest of the silence trimmed
    assert speech_ms < wav.duration_ms < speech_ms + 200 + 1000
    assert recorder.info is not None
    assert recorder.info.duration_s == round(result.duration_ms / 1000, 3)


def test_the_end_key_and_frames_after_it(tmp_path: Path) -> None:
    async def go() -> ev.RecordingFinished | ev.RecordingFailed:
        recorder = Recorder(action(beep=False), media=_Media(), directory=tmp_path, call_id="c2")
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0)
        await feed_live(recorder, SPEECH[:50])
        assert not recorder.key("5")
        assert recorder.key("#")
        recorder.feed(SPEECH[50])  # after the key: not part of the message
        return await task

    result = run(go())
    assert isinstance(result, ev.RecordingFinished)
    assert (result.ended_by, result.duration_ms) == ("key", 1000)


def test_the_length_limit_and_silence_without_speech(tmp_path: Path) -> None:
    async def long_one() -> ev.RecordingFinished | ev.RecordingFailed:
        recorder = Recorder(action(beep=False, max_ms=1000), media=_Media(), directory=tmp_path, call_id="c3")
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0)
        feeding = asyncio.ensure_future(feed_live(recorder, SPEECH * 3))
        result = await task
        feeding.cancel()
        return result

    result = run(long_one())
    assert isinstance(result, ev.RecordingFinished)
    assert result.ended_by == "max_length"

    async def silent() -> ev.RecordingFinished | ev.RecordingFailed:
        recorder = Recorder(
            action(beep=False, no_input_timeout_ms=2000), media=_Media(), directory=tmp_path, call_id="c4"
        )
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0)
        await feed_live(recorder, SILENCE)
        return await task

    result = run(silent())
    assert isinstance(result, ev.RecordingFinished)
    assert (result.ended_by, result.duration_ms, result.path) == ("no_input", 0, None)


def test_a_hangup_keeps_what_was_said(tmp_path: Path) -> None:
    async def go() -> ev.RecordingFinished | ev.RecordingFailed:
        recorder = Recorder(action(beep=False), media=_Media(), directory=tmp_path, call_id="c5")
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0)
        await feed_live(recorder, SPEECH[:40])
        recorder.stop("hangup")
        return await task

    result = run(go())
    assert isinstance(result, ev.RecordingFinished)
    assert result.ended_by == "hangup"
    assert result.path is not None
    assert read_wav(Path(result.path)).duration_ms == 800


def test_a_sensitive_message_is_never_written(tmp_path: Path) -> None:
    async def go() -> ev.RecordingFinished | ev.RecordingFailed:
        recorder = Recorder(
            action(beep=False, sensitive=True), media=_Media(), directory=tmp_path, call_id="c6"
        )
        task = asyncio.ensure_future(recorder.run())
        await asyncio.sleep(0)
        await feed_live(recorder, SPEECH + SILENCE)
        return await task

    result = run(go())
    assert isinstance(result, ev.RecordingFinished)
    assert result.path is None
    assert result.duration_ms > 0
    assert list(tmp_path.iterdir()) == []


def test_no_directory_is_a_failure_the_flow_handles() -> None:
    recorder = Recorder(action(), media=_Media(), directory=None, call_id="c7")
    assert recorder.active

    result = run(recorder.run())
    assert isinstance(result, ev.RecordingFailed)
    assert "IVR_RECORDINGS_DIR" in result.reason
    # the caller's frames go back to listening: the flow's error path can hear an answer
    assert not recorder.active


VOICEMAIL_THEN_QUESTION = """\
name: voicemail
start: message
settings:
  no_input_timeout_ms: 2000
  endpointing_silence_ms: 300
  filler: null
steps:
  message:
    record: {beep: false, end_silence_ms: 1000, max_ms: 10000}
    save: message
    next: callback
  callback:
    ask: Shall we call you back?
    choices:
      "yes": {phrases: ["yes"], next: thanks}
      "no": {phrases: ["no"], next: thanks}
    no_input: {prompt: I did not hear you., retries: 0, next: done}
  thanks:
    say: Thanks.
    next: done
  done:
    hangup:
"""


async def test_a_spoken_answer_after_a_recording_is_heard(tmp_path: Path) -> None:
    """The recorder takes the caller's frames while it records; afterwards they reach listening again
    (the runtime points its intake's direct frames at one or the other)."""
    flow = tmp_path / "voicemail.yaml"
    flow.write_text(VOICEMAIL_THEN_QUESTION)
    result = await call_flow(
        flow,
        steps=[
            {"say": "please call me about my bill"},
            {"wait_for": "call you back"},
            {"say": "yes"},
            {"expect_step": "thanks"},
            {"expect_end": "hangup"},
        ],
    )
    assert result.passed, "\n".join(result.transcript)
    assert result.report is not None
    [message] = result.report.recordings
    assert message["ended_by"] == "silence"
