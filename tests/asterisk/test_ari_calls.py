"""``ivr run`` in ARI mode against a real Asterisk 22: formats, the greeting as a caller hears it, DTMF."""

from __future__ import annotations

import pytest

from tests.real_asterisk import RealAsterisk

from .harness import caller_side, ivr_run, ivr_settings


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
