"""Every REST call of AriClient over real HTTP against the simulated Asterisk."""

from __future__ import annotations

import pytest

from ivr.ari import AriClient, Bridge, Channel
from ivr.ari.client import ari_base_url
from ivr.ari.models import ChannelEnteredBridge, ChannelLeftBridge, ChannelVarset
from ivr.sim import SimAsterisk
from tests.ari.conftest import APP, Collector


def test_base_url_normalisation() -> None:
    assert str(ari_base_url("http://127.0.0.1:8088")) == "http://127.0.0.1:8088/ari"
    assert str(ari_base_url("http://pbx:8088/ari/")) == "http://pbx:8088/ari"
    assert str(ari_base_url("https://pbx/asterisk")) == "https://pbx/asterisk/ari"
    with pytest.raises(ValueError, match="not in the URL"):
        ari_base_url("http://u:p@pbx:8088")
    with pytest.raises(ValueError, match="http"):
        ari_base_url("ftp://pbx")


def test_repr_does_not_show_the_password() -> None:
    client = AriClient("http://127.0.0.1:8088", "ivr", "hunter2")
    assert "hunter2" not in repr(client)


async def test_asterisk_info(client: AriClient) -> None:
    info = await client.asterisk_info()
    assert info.version == "22.10.1"
    assert info.entity_id == "02:fc:00:00:00:01"


async def test_channels_get_list_answer(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call(exten="100", caller=("Bob", "5550001"), args=["flow=demo"])
    chan = await client.get_channel(call.id)
    assert isinstance(chan, Channel)
    assert (chan.state, chan.caller.name, chan.caller.number) == ("Ring", "Bob", "5550001")
    assert chan.dialplan.exten == "100"
    assert chan.dialplan.app_data == f"{APP},flow=demo"
    assert [c.id for c in await client.list_channels()] == [call.id]
    await client.answer(call.id)
    change = await events.wait("ChannelStateChange", call.id)
    assert change.raw["channel"]["state"] == "Up"
    assert (await client.get_channel(call.id)).state == "Up"


async def test_ring_and_ring_stop(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call()
    await client.ring(call.id)
    assert sim.channels[call.id].ringing
    await client.ring_stop(call.id)
    assert not sim.channels[call.id].ringing


async def test_hangup_with_reason(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call()
    await client.hangup(call.id, reason="busy")
    await events.wait("StasisEnd", call.id)
    # As on Asterisk 22: a soft hangup request (its "cause" is the soft-hangup flag 32), then StasisEnd;
    # a caller that entered through Stasis() in the dialplan gets no ChannelDestroyed afterwards.
    assert events.types(call.id)[-2:] == ["ChannelHangupRequest", "StasisEnd"]
    request = next(e for e in events.events if e.type == "ChannelHangupRequest")
    assert (request.raw["cause"], request.raw["soft"]) == (32, True)
    assert sim.destroyed[call.id].hangup_cause == 17
    assert call.id not in sim.channels


async def test_variables(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    wide = await sim.place_call(native_format="slin16")
    narrow = await sim.place_call(native_format="ulaw", caller=("Carol", "5550002"))
    assert await client.get_variable(wide.id, "CHANNEL(audionativeformat)") == "(slin16)"
    assert await client.get_variable(narrow.id, "CHANNEL(audionativeformat)") == "(ulaw)"
    assert await client.get_variable(narrow.id, "CALLERID(num)") == "5550002"
    await client.set_variable(wide.id, "IVR_CHOICE", "pizza")
    assert await client.get_variable(wide.id, "IVR_CHOICE") == "pizza"
    varset = await events.wait("ChannelVarset", wide.id)
    assert isinstance(varset, ChannelVarset)
    assert sim.channels[wide.id].variables["IVR_CHOICE"] == "pizza"


async def test_send_dtmf_goes_towards_the_phone(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    call = await sim.place_call()
    await client.send_dtmf(call.id, "12#", between=100, duration=120)
    assert sim.channels[call.id].dtmf_sent == ["12#"]


async def test_continue_in_dialplan(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call()
    await client.continue_in_dialplan(call.id, context="support", extension="200", priority=1)
    await events.wait("StasisEnd", call.id)
    assert sim.channels[call.id].continued_to == ("support", "200", 1)
    assert not sim.channels[call.id].in_stasis


async def test_redirect(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call(tech="PJSIP")
    await client.redirect(call.id, "PJSIP/operator")
    assert sim.channels[call.id].redirected_to == "PJSIP/operator"


async def test_originate_returns_down_and_stasis_start_follows(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    chan = await client.originate(
        "Local/100@outbound",
        app=APP,
        app_args=["flow=reminder", "x=1"],
        caller_id="Clinic <5559999>",
        timeout=20,
        channel_id="out-1",
        variables={"IVR_FLOW": "reminder"},
    )
    assert (chan.id, chan.state) == ("out-1", "Down")
    assert chan.name.startswith("Local/100@outbound-")
    assert chan.name.endswith(";1")
    assert chan.caller.number == "5559999"
    start = await events.wait("StasisStart", "out-1")
    assert start.raw["args"] == ["flow=reminder", "x=1"]
    assert [t for t in events.types("out-1") if t != "ChannelVarset"] == [
        "Dial",
        "ChannelStateChange",
        "Dial",
        "StasisStart",
    ]
    assert await client.get_variable("out-1", "IVR_FLOW") == "reminder"


async def test_originate_rejects_commas_inside_an_argument(client: AriClient) -> None:
    with pytest.raises(ValueError, match="commas"):
        await client.originate("Local/1@x", app=APP, app_args=["a,b"])


async def test_bridges(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    a = await sim.place_call()
    b = await sim.place_call(caller=("Dan", "5550003"))
    bridge = await client.create_bridge(type="mixing", bridge_id="call-1", name="ivr")
    assert isinstance(bridge, Bridge)
    assert (bridge.id, bridge.bridge_type, bridge.channels) == ("call-1", "mixing", ())
    await client.add_channel("call-1", [a.id, b.id])
    entered = await events.wait("ChannelEnteredBridge", b.id)
    assert isinstance(entered, ChannelEnteredBridge)
    assert entered.bridge.channels == (a.id, b.id)
    assert (await client.get_bridge("call-1")).channels == (a.id, b.id)
    assert [x.id for x in await client.list_bridges()] == ["call-1"]
    await client.remove_channel("call-1", b.id)
    left = await events.wait("ChannelLeftBridge", b.id)
    assert isinstance(left, ChannelLeftBridge)
    assert left.bridge.channels == (a.id,)
    await client.destroy_bridge("call-1")
    await events.wait("BridgeDestroyed")
    assert sim.bridges == {}
    assert "ChannelLeftBridge" in events.types(a.id)


async def test_three_channels_make_softmix(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    calls = [await sim.place_call() for _ in range(3)]
    await client.create_bridge(bridge_id="conf")
    await client.add_channel("conf", [c.id for c in calls[:2]])
    assert (await client.get_bridge("conf")).technology == "simple_bridge"
    await client.add_channel("conf", calls[2].id)
    assert (await client.get_bridge("conf")).technology == "softmix"
