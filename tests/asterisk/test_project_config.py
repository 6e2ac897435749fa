"""The project's own Asterisk configuration in a real Asterisk 22 (defect 9), and its Stasis-failure
fallback (defect 2): calls routed through ``dialplan/extensions.conf`` into ``ivr run``.

One Asterisk of its own for this module (``asterisk_factory``), restarted with the project's
``modules.conf``, ``ari.conf``, ``http.conf`` and dialplan (see ``project_config.py`` for what applies).
"""

from __future__ import annotations

import asyncio
import re

import pytest

from ivr.config import Settings
from tests.conftest import AsteriskFactory
from tests.real_asterisk import RealAsterisk
from tests.services import free_tcp_port

from .harness import FLOWS, caller_side
from .ivr_runs import ivr_run, ivr_settings
from .project_config import ARI_PASSWORD, ARI_USER, ETC, load_project_config, project_modules
from .tcpproxy import TcpProxy


class Project:
    def __init__(self, asterisk: RealAsterisk, dialplan_port: int) -> None:
        self.asterisk = asterisk
        self.dialplan_port = dialplan_port

    def settings(self, **env: str) -> Settings:
        values = {
            "IVR_ARI_APP": "ivr",  # what the project's dialplan hands calls to
            "IVR_ARI_USER": ARI_USER,
            "IVR_ARI_PASSWORD": ARI_PASSWORD,
            "IVR_FLOWS": str(FLOWS),
            "IVR_DEFAULT_FLOW": "pizza",
        }
        return ivr_settings(self.asterisk, **{**values, **env})


@pytest.fixture(scope="module")
def project(asterisk_factory: AsteriskFactory) -> Project:
    asterisk = asterisk_factory()
    port = free_tcp_port()
    load_project_config(asterisk, dialplan_socket=f"127.0.0.1:{port}")
    return Project(asterisk, port)


def test_the_project_modules_load_and_nothing_is_missing(project: Project) -> None:
    listed = set(re.findall(r"(?m)^(?:require|load|preload)\s*=>\s*(\S+)\.so", project_modules()))
    shown = project.asterisk.cli("module show")
    loaded = {line.split()[0].removesuffix(".so") for line in shown.splitlines() if ".so" in line}
    assert listed <= loaded, f"listed in {ETC / 'modules.conf'} but not loaded: {sorted(listed - loaded)}"
    assert "Asterisk 22" in project.asterisk.cli("core show version")


@pytest.mark.parametrize(
    ("line", "flow", "first_words"),
    [
        ("7000", "pizza", "Thanks for calling Tony's Pizza"),  # IVR_DEFAULT_FLOW
        ("7001", "pizza", "Thanks for calling Tony's Pizza"),  # flow=pizza
        ("7002", "bank", "Thank you for calling First Example Bank"),  # Set(IVR_FLOW=bank)
        ("7003", "address", "What is the delivery address"),  # flow=address plus arguments
    ],
)
async def test_ari_lines_reach_ivr_run(project: Project, line: str, flow: str, first_words: str) -> None:
    async with ivr_run(project.settings()) as run, caller_side(project.asterisk) as side:
        phone = await side.call("from-softphones", line, formats="slin16")
        await phone.leg.wait_heard(first_words, timeout=15)
        await phone.hangup()
        [report] = await run.wait_reports(1)
        assert report.flow == flow
        assert report.outcome == "caller_hangup"
        if line == "7003":
            assert report.variables.get("line") == "7003", "Stasis arguments become flow variables"
        await side.wait_idle()


@pytest.mark.parametrize(("line", "formats"), [("7101", "slin"), ("7102", "slin16")])
async def test_dialplan_only_lines_reach_ivr_run_no_ari(project: Project, line: str, formats: str) -> None:
    """7101: the AudioSocket() application (8 kHz); 7102: Dial(AudioSocket/.../c(slin16)) (16 kHz)."""
    settings = project.settings(
        IVR_AUDIOSOCKET_LISTEN=f"127.0.0.1:{project.dialplan_port}", IVR_DEFAULT_FLOW="address"
    )
    async with ivr_run(settings, no_ari=True) as run, caller_side(project.asterisk) as side:
        phone = await side.call("from-softphones", line, formats=formats, ear_format=formats)
        await phone.leg.wait_heard("What is the delivery address", timeout=15)
        await phone.hangup()
        [report] = await run.wait_reports(1)
        assert report.flow == "address"
        await side.wait_idle()


async def test_stasis_failure_retries_once_then_goes_to_the_fallback(project: Project) -> None:
    """No app connected: the call rings, tries Stasis again after IVR_RETRY_AFTER, then IVR_FALLBACK."""
    offset = project.asterisk.log_offset()
    async with caller_side(project.asterisk) as side:
        # The fallback of this call: back to the test's own app (the kit's caller,ari hands it over).
        phone = await side.call(
            "from-softphones", "7001", variables={"IVR_FALLBACK": "caller,ari,1", "IVR_RETRY_AFTER": "1"}
        )
        back = await phone.wait_back(timeout=15)
        assert back["args"] == ["caller"]
        # Asterisk's logger writes on a thread of its own: its last lines may land a moment after the event
        await wait_for_log(project.asterisk, offset, "continuing at caller,ari,1")
        log = project.asterisk.log_since(offset)
        assert "Stasis app ivr unavailable" in log
        assert "trying again in 1 s" in log
        assert "still unavailable" in log
        assert "continuing at caller,ari,1" in log
        assert log.count("Stasis app 'ivr' doesn't exist") == 2, "Stasis was tried twice"
        await phone.hangup()
        await side.wait_idle()


async def test_a_call_during_an_ari_outage_reaches_the_app_on_the_retry(project: Project) -> None:
    """Defect 2: a call entering Stasis() while the app's events WebSocket is down failed at once and the
    caller heard nothing; now it rings, and the retry finds the reconnected app."""
    proxy = TcpProxy("127.0.0.1", project.asterisk.port)
    await proxy.start()
    try:
        settings = project.settings(IVR_ARI_URL=f"http://127.0.0.1:{proxy.port}")
        async with ivr_run(settings) as run, caller_side(project.asterisk) as side:
            events = lambda head: b"/ari/events" in head  # noqa: E731
            first = await proxy.wait_link(events)
            proxy.block(events)  # the link is down and cannot come back for a moment
            proxy.cut(events)
            offset = project.asterisk.log_offset()
            phone = await side.call("from-softphones", "7001", formats="slin16")
            await wait_for_log(project.asterisk, offset, "Stasis app ivr unavailable")
            proxy.unblock()
            await proxy.wait_link(events, after=proxy.links.index(first) + 1)
            await phone.leg.wait_heard("Thanks for calling Tony's Pizza", timeout=15)
            await phone.hangup()
            [report] = await run.wait_reports(1)
            assert report.flow == "pizza"
            await side.wait_idle()
    finally:
        await proxy.close()


async def wait_for_log(asterisk: RealAsterisk, offset: int, text: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while text not in asterisk.log_since(offset):  # noqa: ASYNC110 - Asterisk's log file
            await asyncio.sleep(0.05)
