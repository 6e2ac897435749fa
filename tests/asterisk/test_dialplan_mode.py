"""``ivr run --no-ari`` against a real Asterisk 22: the dialplan's ``AudioSocket()`` application and the
``Dial(AudioSocket/...)`` channel, with and without ``c(slin16)``, from the kit's ``audiosocket-test``."""

from __future__ import annotations

import pytest

from tests.real_asterisk import RealAsterisk

from .harness import caller_side
from .ivr_runs import ivr_run, ivr_settings


@pytest.mark.parametrize(
    ("exten", "formats", "ear", "exact"),
    [
        ("app", "slin", "slin", True),  # AudioSocket(): always 8 kHz
        (
            "dial16",
            "slin16",
            "slin16",
            True,
        ),  # Dial(AudioSocket/.../c(slin16)) (defect 3: 16 kHz from the start)
        ("dial", "slin16", "slin16", True),  # no c(): the caller's format, slin16 here
        ("dial", None, "slin16", False),  # no c(): a Local channel's slin192, 7680-byte frames
    ],
)
async def test_dialplan_audiosocket_calls(
    real_asterisk: RealAsterisk, exten: str, formats: str | None, ear: str, exact: bool
) -> None:
    offset = real_asterisk.log_offset()
    settings = ivr_settings(real_asterisk, IVR_DEFAULT_FLOW="menu")
    async with ivr_run(settings, no_ari=True) as run, caller_side(real_asterisk) as side:
        phone = await side.call(
            "audiosocket-test",
            exten,
            formats=formats,
            ear_format=ear,
            phone_half="a",  # the kit's audiosocket-test runs on ;2: keys pressed on ;1 reach it as 0x03
            variables={"AS_PORT": str(run.audiosocket_port)},
        )
        if exact:  # nothing transcodes on the way: the words arrive bit-exact
            await phone.leg.wait_heard("Welcome to the test line.")
            await phone.leg.wait_heard("Say sales or support")
        else:
            await phone.wait_audio()
            await phone.wait_quiet(400)
        await phone.press("1")
        if exact:
            await phone.leg.wait_heard("Sales it is")
        await phone.wait_gone()
        [report] = await run.wait_reports(1)
        assert report.path[:3] == ["hello", "main", "sales"]
        assert report.dtmf == ["1"], "DTMF over the socket, once"
        await side.wait_idle()
    log = real_asterisk.log_since(offset)
    assert "AudioSocket" not in "".join(line for line in log.splitlines() if "ERROR[" in line)
