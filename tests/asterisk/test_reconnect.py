"""The ARI events WebSocket cut mid-call, again and again (defect 2): each time ``ivr run`` is back in
under 2 s and the live call goes on. The link runs through a TCP relay the test cuts (what a network
failure or ``ss -K`` does, without needing root or kernel support)."""

from __future__ import annotations

import asyncio

from tests.real_asterisk import RealAsterisk

from .harness import caller_side
from .ivr_runs import ivr_run, ivr_settings
from .tcpproxy import TcpProxy

CUTS = 5


def events_link(head: bytes) -> bool:
    return b"/ari/events" in head


async def test_the_events_websocket_cut_mid_call_reconnects_in_under_two_seconds(
    real_asterisk: RealAsterisk,
) -> None:
    proxy = TcpProxy("127.0.0.1", real_asterisk.port)
    await proxy.start()
    loop = asyncio.get_running_loop()
    try:
        settings = ivr_settings(
            real_asterisk, IVR_DEFAULT_FLOW="patient", IVR_ARI_URL=f"http://127.0.0.1:{proxy.port}"
        )
        async with ivr_run(settings) as run, caller_side(real_asterisk) as side:
            phone = await side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": run.app})
            await phone.leg.wait_heard("Say sales or support")
            took: list[float] = []
            for _ in range(CUTS):
                cut_at = loop.time()
                assert proxy.cut(events_link) == 1
                await proxy.wait_link(events_link, timeout=10)  # the reconnect
                await wait_registered(side.ari, run.app)
                took.append(loop.time() - cut_at)
                await asyncio.sleep(0.7)  # the link stays up a moment, then drops again
            print(f"\nreconnected after {[round(t, 2) for t in took]} s")
            assert max(took) < 2.0, took
            await phone.press("2")  # the call is still ours: its events arrive on the new socket
            await phone.leg.wait_heard("Support it is")
            await phone.wait_gone()
            [report] = await run.wait_reports(1)
            assert report.path[:3] == ["hello", "main", "support"]
            assert await run.metric("ivr_ari_reconnects_total") == CUTS
            await side.wait_idle()
    finally:
        await proxy.close()


async def wait_registered(ari: object, app: str) -> None:
    """Until Asterisk lists ``app`` as an application with an events connection again."""
    from tests.real_asterisk import AriProbe

    assert isinstance(ari, AriProbe)
    async with asyncio.timeout(10):
        while True:
            apps = await ari.request("GET", "/applications")
            if any(a["name"] == app for a in apps):
                return
            await asyncio.sleep(0.02)
