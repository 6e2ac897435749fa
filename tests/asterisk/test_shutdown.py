"""SIGTERM with live calls against a real Asterisk (defect 6): ``ivr run`` hangs them up and exits 0, and
Asterisk never sees a TCP reset on an AudioSocket connection (the app stops writing, reads what is left
until Asterisk closes, then closes). The AudioSocket links run through a relay that tells a FIN from a
reset; each call still ends with its record."""

from __future__ import annotations

import asyncio

import pytest

from ivr.ops.records import CallRecordStore
from tests.real_asterisk import RealAsterisk
from tests.services import free_tcp_port

from .harness import caller_side
from .ivr_runs import ivr_env, ivr_process
from .tcpproxy import TcpProxy

CALLS = 8


@pytest.mark.parametrize("mode", ["ari", "dialplan"])
async def test_sigterm_hangs_calls_up_without_a_reset(real_asterisk: RealAsterisk, mode: str) -> None:
    port = free_tcp_port()
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.start()
    env = ivr_env(
        real_asterisk,
        IVR_AUDIOSOCKET_LISTEN=f"127.0.0.1:{port}",
        IVR_AUDIOSOCKET_ADVERTISE=f"127.0.0.1:{proxy.port}",  # ARI mode: Asterisk dials the relay
    )
    offset = real_asterisk.log_offset()
    try:
        async with ivr_process(env, no_ari=mode == "dialplan") as ivr, caller_side(real_asterisk) as side:
            if mode == "ari":
                calls = [
                    side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": env["IVR_ARI_APP"]})
                    for _ in range(CALLS)
                ]
            else:
                calls = [
                    side.call(
                        "audiosocket-test",
                        "dial16",
                        formats="slin16",
                        phone_half="a",
                        variables={"AS_PORT": str(proxy.port)},
                    )
                    for _ in range(CALLS)
                ]
            phones = await asyncio.gather(*calls)
            await asyncio.gather(*(p.leg.wait_heard("Say sales or support") for p in phones))
            assert await ivr.terminate() == 0
            await asyncio.gather(*(p.wait_gone() for p in phones))
            await proxy.settled()
            await side.wait_idle()
        audiosocket_links = [link for link in proxy.links if not link.cut]
        assert len(audiosocket_links) == CALLS
        assert proxy.resets("server") == 0, "ivr run reset an AudioSocket connection"
        assert not [line for line in ivr.lines if "Traceback" in line]
        log = real_asterisk.log_since(offset)
        assert not [line for line in log.splitlines() if "ERROR[" in line and "AudioSocket" in line]
    finally:
        await proxy.close()
    async with CallRecordStore(env["IVR_RECORDS_PATH"]) as store:
        records = await store.list()
    assert len(records) == CALLS, "every call hung up at shutdown has its record"
