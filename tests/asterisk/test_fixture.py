"""The real-Asterisk fixture itself: an originated Local caller reaches a test app, and nothing is left."""

from __future__ import annotations

from tests.real_asterisk import AriProbe, RealAsterisk


async def test_local_caller_enters_stasis_and_leaves_nothing(real_asterisk: RealAsterisk) -> None:
    async with AriProbe.open(real_asterisk) as ari, ari.events("fixture-app") as events:
        channel = await ari.originate("Local/tone@caller", app="fixture-app")
        start = await events.wait_for(lambda e: e["type"] == "StasisStart")
        assert start["channel"]["id"] == channel["id"]
        assert start["channel"]["state"] == "Up"
        assert "22.10" in real_asterisk.cli("core show version")
        await ari.hangup(channel["id"])
        await ari.wait_idle()
