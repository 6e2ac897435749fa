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
