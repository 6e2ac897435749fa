"""``ivr run`` in ARI mode against a real Asterisk 22: formats, the greeting as a caller hears it, DTMF."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from tests.real_asterisk import RealAsterisk

from .harness import caller_side
from .ivr_runs import ivr_run, ivr_settings


@pytest.mark.parametrize(
    ("formats", "expected", "ear"),
    [
        ("slin", "(slin)", "slin"),
        ("ulaw", "(slin)", "slin"),
        ("slin16", "(slin16)", "slin16"),
        ("g722", "(slin16)", "slin16"),
        ("slin48", "(slin16)", "slin16"),
        (None, "(slin16)", "slin16"),  # a Local channel's own format is slin192: wideband (defect 1)
    ],
)
async def test_media_format_follows_the_callers_native_rate(
    real_asterisk: RealAsterisk, formats: str | None, expected: str, ear: str
) -> None:
    async with ivr_run(ivr_settings(real_asterisk)) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "ivr-in", "100", formats=formats, ear_format=ear, variables={"IVR_APP": run.app}
        )
        native = await side.ari.get_variable(phone.line_id, "CHANNEL(audionativeformat)")
        assert native == f"({formats or 'slin192'})"
        assert await phone.ivr_media_format() == expected
        if formats in ("slin", "slin16"):  # no transcoding anywhere: the words arrive bit-exact
            await phone.leg.wait_heard("Welcome to the test line")
        else:
            await phone.wait_audio()
        await phone.hangup()
        [report] = await run.wait_reports(1)
        assert report.outcome == "caller_hangup"
        await side.wait_idle()


async def test_the_greeting_as_the_caller_hears_it_paced_frame_by_frame(real_asterisk: RealAsterisk) -> None:
    """The phone hears the greeting bit-exact from its first frame, paced at 20 ms (Asterisk forwards
    every frame at once, so what arrives is our pacing); the lateness of each frame is measured."""
    async with ivr_run(ivr_settings(real_asterisk)) as run, caller_side(real_asterisk) as side:
        phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
        await phone.leg.wait_heard("Say sales or support")
        await phone.hangup()
        [report] = await run.wait_reports(1)
        frames = phone.frames()
        first, last = phone.prompts()[0]
        greeting = frames[first : last + 1]
        assert phone.leg.heard_texts()[0] == "Welcome to the test line."
        span = greeting[-1][0] - greeting[0][0]
        assert span >= 0.9 * 0.020 * (len(greeting) - 1), "paced, not a burst"
        lateness = phone.leg.lateness().summary()
        print(
            f"\ngreeting: {len(greeting)} frames over {span * 1000:.0f} ms; lateness at the phone {lateness}"
        )
        print(f"greeting latency {report.greeting_latency_ms:.1f} ms")
        assert lateness.p50_ms < 20.0
        assert report.greeting_latency_ms is not None
        assert await run.metric("ivr_frame_lateness_seconds_count") > 0
        await side.wait_idle()


async def test_a_real_inbound_call_in_ring_state_is_answered_by_the_ivr(real_asterisk: RealAsterisk) -> None:
    async with ivr_run(ivr_settings(real_asterisk)) as run, caller_side(real_asterisk) as side:
        phone = await side.call_inbound("100", variables={"IVR_APP": run.app})
        await phone.leg.wait_heard("Say sales or support")
        await phone.press("2")
        await phone.leg.wait_heard("Support it is")
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.outcome == "hangup"
        assert report.path[:3] == ["hello", "main", "support"]
        await side.wait_idle()


async def test_dtmf_is_acted_on_once(real_asterisk: RealAsterisk) -> None:
    """Asterisk delivers each key twice (ChannelDtmfReceived, and 0x03 over the media socket)."""
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="digits")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
        await phone.leg.wait_heard("Enter your account number")
        await phone.press("4271#", between=150, duration=100)
        await phone.leg.wait_heard("You entered 4271.", timeout=15)
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.dtmf == ["4", "2", "7", "1", "#"]
        assert report.variables["account"] == "4271"
        await side.wait_idle()


def voiced_seconds(pcm: bytes, rate: int = 8000, threshold: int = 500) -> float:
    """Where the speech in ``pcm`` ends (its last sample above ``threshold``), in seconds from its start."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return float(loud[-1] + 1) / rate if len(loud) else 0.0


async def test_caller_speech_is_recognised_and_the_latency_is_what_the_caller_waited(
    real_asterisk: RealAsterisk, utterances: Mapping[str, bytes]
) -> None:
    """The caller (a narrowband phone) says "support please" in the offline voice; the app hears it
    with the offline STT. ``response_latency_ms`` matches what the phone measured: from the end of its
    speech to the first frame of the reply (defect 5: it used to start at the endpointing decision,
    a trailing silence later)."""
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="speech", IVR_STT="offline")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "ivr-in", "100", formats="slin", ear_format="slin", variables={"IVR_APP": run.app}
        )
        await phone.leg.wait_heard("Say sales or support")
        await phone.wait_quiet(300)
        speech = utterances["support please"]
        await phone.say(speech)
        loop = asyncio.get_running_loop()
        spoken_end = loop.time() - (len(speech) / 2 / 8000 - voiced_seconds(speech))
        reply = await phone.wait_audio(timeout=20, after=len(phone.frames()))
        replied_at = phone.frames()[reply][0]
        await phone.leg.wait_heard("Support it is", timeout=20)
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.path[:3] == ["hello", "main", "support"]
        heard = [text for speaker, text in report.transcript if speaker == "caller"]
        assert any("support" in text.lower() for text in heard), heard
        waited_ms = (replied_at - spoken_end) * 1000
        [latency] = report.response_latency_ms
        print(f"\nthe caller waited {waited_ms:.0f} ms; response_latency_ms {latency:.0f}")
        assert abs(latency - waited_ms) < 300, (latency, waited_ms)
        await side.wait_idle()


@pytest.mark.parametrize("stored", [True, False], ids=["recorded", "no-recordings-dir"])
async def test_speech_is_heard_after_a_record_step(
    real_asterisk: RealAsterisk, utterances: Mapping[str, bytes], tmp_path: Path, stored: bool
) -> None:
    """The recorder takes the caller's frames while it records (5 s of silence here: max length); then a
    question must hear the caller again. With no recordings directory the step fails to its ``on_error``,
    the question: its recorder used to keep every caller frame for the rest of the call."""
    settings = ivr_settings(
        real_asterisk,
        IVR_DEFAULT_FLOW="voicemail",
        IVR_STT="offline",
        IVR_RECORDINGS_DIR=str(tmp_path) if stored else "",
    )
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "ivr-in", "100", formats="slin", ear_format="slin", variables={"IVR_APP": run.app}
        )
        await phone.leg.wait_heard("Say sales or support")
        await phone.wait_quiet(300)
        await phone.say(utterances["support please"])
        await phone.leg.wait_heard("Support it is", timeout=20)
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.path[:4] == ["hello", "message", "main", "support"]
        assert [r["ended_by"] for r in report.recordings] == (["max_length"] if stored else [])
        assert [Path(r["path"]).parent for r in report.recordings] == ([tmp_path] if stored else [])
        await side.wait_idle()


async def test_barge_in_stops_the_prompt_and_the_answer_counts(
    real_asterisk: RealAsterisk, utterances: Mapping[str, bytes]
) -> None:
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="bargein", IVR_STT="offline")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "ivr-in", "100", formats="slin", ear_format="slin", variables={"IVR_APP": run.app}
        )
        await phone.leg.wait_heard("This menu is long on purpose")
        await asyncio.sleep(0.5)
        await phone.say(utterances["sales"])  # over the prompt
        await phone.leg.wait_heard("Sales it is", timeout=20)
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.path[:2] == ["main", "sales"]
        question = phone.leg.heard_texts()[0]
        first, last = phone.prompts()[0]
        played_ms = (last - first + 1) * 20
        full_ms = len(question) * 10  # the simulation voice: 10 ms per character
        print(f"\nthe question played {played_ms} ms of {full_ms} ms")
        assert played_ms < 0.6 * full_ms, "the prompt stopped when the caller spoke"
        await side.wait_idle()


async def test_transfer_via_continue_sets_ivr_variables_in_asterisk(real_asterisk: RealAsterisk) -> None:
    """The flow's collected values travel as IVR_<NAME> channel variables (and the step's own ones);
    the test reads them from Asterisk once the dialplan target hands the channel back to it."""
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="desk")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
        phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
        await phone.leg.wait_heard("Press 1 for the desk")
        await phone.press("1")
        back = await phone.wait_back()
        assert back["channel"]["dialplan"]["context"] == "caller"
        assert await side.ari.get_variable(phone.line_id, "IVR_ACCOUNT") == "12345"
        assert await side.ari.get_variable(phone.line_id, "QUEUE") == "billing"
        [report] = await run.wait_reports(1)
        assert report.outcome == "transferred"
        # The caller left the IVR: its media channel and bridge are gone, the caller is not hung up.
        bridges = [b for b in await side.ari.bridges() if b["id"] != phone.bridge_id]
        assert not bridges
        names = [c["name"] for c in await side.ari.channels()]
        assert [n for n in names if n.startswith("AudioSocket/")] == [phone.leg_name], names
        await side.wait_idle()


async def test_hangups_at_random_points_leave_nothing_behind(
    real_asterisk: RealAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    """Callers hang up during setup, the greeting, listening, or just as a prompt starts; every call
    ends with one record and one "ended" line, Asterisk is left with 0 channels and 0 bridges, the
    gauge is back at 0, and no traceback reaches the log."""
    caplog.set_level(logging.INFO)
    rng = random.Random(20261201)
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="patient")
    async with ivr_run(settings) as run, caller_side(real_asterisk) as side:

        async def one(delay: float) -> str:
            phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
            await asyncio.sleep(delay)
            await phone.hangup()
            await phone.wait_gone()
            return phone.line_id

        delays = [rng.choice([0.0, 0.01, 0.05]) for _ in range(4)] + [
            rng.uniform(0.1, 2.5) for _ in range(12)
        ]
        ids: list[str] = []
        for batch in range(0, len(delays), 4):
            ids += await asyncio.gather(*(one(d) for d in delays[batch : batch + 4]))
        reports = await run.wait_reports(len(ids), timeout=30)
        await asyncio.sleep(0.5)
        assert sorted(r.call_id for r in reports) == sorted(ids), "exactly one record per call"
        assert {r.outcome for r in reports} <= {"caller_hangup", "aborted"}, {r.outcome for r in reports}
        await side.wait_idle()
        assert await run.metric("ivr_active_calls") == 0
    for call_id in ids:
        ended = [r for r in caplog.records if r.getMessage().startswith(f"call {call_id}: ended (")]
        assert len(ended) == 1, call_id
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]
