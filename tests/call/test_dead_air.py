"""No dead air (issue 14, item 5): whatever a provider does wrong, a waiting caller never hears more than
1.5 s of silence, and the fault takes the flow's error path with a log line and a metric.

Whole calls over real sockets (simulated Asterisk and caller, the AudioSocket server, the app) against
the fake OpenAI API, in virtual time; the silence is measured on the frames the caller's leg received,
from the end of the caller's answer to the end of the call.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from ivr.call.report import TraceEvent
from ivr.call.speech import registry_factory
from ivr.ops.metrics import Metrics
from ivr.sim.caller_leg import CallerVoice
from ivr.speech.registry import SpeechRegistry
from tests.fakes.openai_server import Audio, Body, Fail, FakeOpenAI, Hang, Text, tone_pcm

from .conftest import DATA, Stack, close_stack, make_stack

pytestmark = pytest.mark.virtual_time

LIMIT_S = 1.5
SILENT_DBFS = -60.0


def longest_silence(leg: CallerVoice, since: float) -> float:
    """Longest stretch without audible IVR audio the caller heard after ``since`` (loop time), up to the
    last frame received: measured on the leg's received frames and their arrival times."""
    size = leg.rate // 50 * 2
    last_audio = since
    longest = 0.0
    for i, at in enumerate(leg.arrivals):
        if at < since:
            continue
        frame = np.frombuffer(bytes(leg.heard[i * size : (i + 1) * size]), dtype="<i2").astype(np.float64)
        power = float(np.mean(frame * frame)) / 32768.0**2 if frame.size else 0.0
        if power > 0 and 10 * math.log10(power) > SILENT_DBFS:
            longest = max(longest, at - last_audio)
            last_audio = at
    if leg.arrivals:
        longest = max(longest, leg.arrivals[-1] - last_audio)
    return longest


@dataclass
class Call:
    stack: Stack
    fake: FakeOpenAI
    metrics: Metrics
    trace: list[TraceEvent]


async def run_call(
    api: tuple[FakeOpenAI, dict[str, str]],
    *,
    stt: str,
    tts: str,
    fault: Callable[[FakeOpenAI], None],
) -> tuple[Call, float]:
    """One call: the question plays, the fault is set, the caller answers; returns the longest silence."""
    fake, env = api
    registry = SpeechRegistry(env=env)
    metrics = Metrics()
    trace: list[TraceEvent] = []
    speech = registry_factory(registry, default_stt=stt, default_tts=tts)
    stack = await make_stack(DATA, "deadair", speech=speech, metrics=metrics, tracer=trace.append)
    try:
        caller = await stack.sim.place_call(args=["flow=deadair"])
        leg = await stack.leg(caller.id)
        async with asyncio.timeout(20):
            while not any(t.kind == "listen" for t in trace):  # noqa: ASYNC110 - the app's trace
                await asyncio.sleep(0.02)
        fault(fake)
        await leg.say("sales")
        spoken_until = asyncio.get_running_loop().time()
        await stack.wait_ended(timeout=60)
        silence = longest_silence(leg, spoken_until)
        return Call(stack, fake, metrics, trace), silence
    finally:
        await close_stack(stack)
        await registry.aclose()


def errors_counted(metrics: Metrics) -> float:
    total = 0.0
    for family in metrics.registry.collect():
        if family.name == "ivr_provider_errors":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


HTTP_STT_FAULTS: dict[str, Callable[[FakeOpenAI], None]] = {
    "500s": lambda f: f.transcriptions.extend([Fail(500)] * 10),
    "hang": lambda f: f.transcriptions.extend([Hang()] * 10),
    "cut stream": lambda f: f.transcriptions.extend([Text("sales please", cut_after_deltas=1)] * 10),
    "garbage": lambda f: f.transcriptions.extend(
        [Body(b"<html><body>Welcome to the portal</body></html>")] * 10
    ),
    "401": lambda f: f.transcriptions.extend([Fail(401, message="invalid key")] * 10),
}
HTTP_TTS_FAULTS: dict[str, Callable[[FakeOpenAI], None]] = {
    "500s": lambda f: f.speech.extend([Fail(500)] * 40),
    "hang": lambda f: f.speech.extend([Hang()] * 40),
    "cut stream": lambda f: f.speech.extend([Audio(tone_pcm(1.0, 24000), cut_after=3000)] * 40),
    "garbage": lambda f: f.speech.extend([Body(b"\xff\xfb\x90\x64" * 500, "audio/mpeg")] * 40),
    "401": lambda f: f.speech.extend([Fail(401, message="invalid key")] * 40),
}


@pytest.mark.parametrize("name", list(HTTP_STT_FAULTS))
async def test_http_stt_fault(
    api: tuple[FakeOpenAI, dict[str, str]], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call, silence = await run_call(api, stt="openai", tts="openai-speech", fault=HTTP_STT_FAULTS[name])
    [report] = call.stack.app.reports
    assert "sorry" in report.path, report.path  # the flow's error path
    assert report.provider_errors == ["stt"]
    assert "speech-to-text failed" in caplog.text
    assert errors_counted(call.metrics) >= 1
    assert silence <= LIMIT_S, f"{silence:.2f} s of silence while the caller waited"


@pytest.mark.parametrize("name", list(HTTP_TTS_FAULTS))
async def test_http_tts_fault(
    api: tuple[FakeOpenAI, dict[str, str]], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call, silence = await run_call(api, stt="openai", tts="openai-speech", fault=HTTP_TTS_FAULTS[name])
    [report] = call.stack.app.reports
    assert "sorry" in report.path, report.path  # the error path (whose prompt fails as well: it hangs up)
    assert report.provider_errors
    assert set(report.provider_errors) == {"tts"}
    assert "text-to-speech failed" in caplog.text or "prompt failed" in caplog.text
    assert errors_counted(call.metrics) >= 1
    assert silence <= LIMIT_S, f"{silence:.2f} s of silence while the caller waited"


def realtime_stt_fault(name: str) -> Callable[[FakeOpenAI], None]:
    def apply(f: FakeOpenAI) -> None:
        rt = f.realtime
        if name == "500s":
            rt.close_after_appends = 1
            rt.handshake_failures.extend([Fail(500)] * 10)
        elif name == "401":
            rt.close_after_appends = 1
            rt.handshake_failures.extend([Fail(401, message="invalid key")] * 10)
        elif name == "hang":
            rt.hang = True
        elif name == "cut stream":
            rt.close_after_appends = 1
            rt.handshake_failures.extend([Fail(503)] * 10)

    return apply


def realtime_tts_fault(name: str) -> Callable[[FakeOpenAI], None]:
    def apply(f: FakeOpenAI) -> None:
        rt = f.realtime
        if name == "hang":
            rt.hang = True
        elif name == "garbage":
            rt.garbage_audio = True
        elif name == "cut stream":
            rt.close_after_deltas = 1
            rt.handshake_failures.extend([Fail(500)] * 10)
        elif name == "500s":
            rt.error_before_audio = {"type": "server_error", "code": "server_error", "message": "boom"}
            rt.close_after_deltas = 0
            rt.handshake_failures.extend([Fail(500)] * 10)
        elif name == "401":
            rt.close_after_deltas = 0
            rt.handshake_failures.extend([Fail(401, message="invalid key")] * 10)

    return apply


@pytest.mark.parametrize("name", ["500s", "hang", "cut stream", "401"])
async def test_realtime_stt_fault(
    api: tuple[FakeOpenAI, dict[str, str]], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call, silence = await run_call(
        api, stt="openai-realtime", tts="openai-speech", fault=realtime_stt_fault(name)
    )
    [report] = call.stack.app.reports
    assert "sorry" in report.path, report.path
    assert report.provider_errors == ["stt"]
    assert errors_counted(call.metrics) >= 1
    assert silence <= LIMIT_S, f"{silence:.2f} s of silence while the caller waited"


@pytest.mark.parametrize("name", ["500s", "hang", "cut stream", "garbage", "401"])
async def test_realtime_tts_fault(
    api: tuple[FakeOpenAI, dict[str, str]], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call, silence = await run_call(api, stt="openai", tts="openai-realtime", fault=realtime_tts_fault(name))
    [report] = call.stack.app.reports
    assert "sorry" in report.path, report.path
    assert "tts" in report.provider_errors
    assert errors_counted(call.metrics) >= 1
    assert silence <= LIMIT_S, f"{silence:.2f} s of silence while the caller waited"
