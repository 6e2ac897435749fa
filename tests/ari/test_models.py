"""Typed parsing of every event of the real Asterisk 22.10.1 capture, and of malformed/unknown input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.ari import models as m
from tests.ari.conftest import capture_events

CAPTURE = capture_events()


@pytest.mark.parametrize("line", range(len(CAPTURE)))
def test_every_captured_event_parses_to_its_typed_class(line: int) -> None:
    raw = CAPTURE[line]
    event = m.parse_event(raw)
    assert type(event).__name__ == raw["type"], f"line {line + 1}: {raw['type']} not modelled"
    assert event.type == raw["type"]
    assert event.application == "ivrcap"
    assert event.asterisk_id == "02:fc:00:00:00:01"
    assert event.raw is raw
    assert isinstance(event.time, datetime)
    assert event.time.tzinfo is not None
    if "channel" in raw:
        assert isinstance(
            event, m.ChannelEvent | m.ChannelVarset | m.ChannelLeftBridge | m.ChannelEnteredBridge
        )
        assert event.channel is not None
        assert event.channel.id == raw["channel"]["id"]
        assert event.channel.name == raw["channel"]["name"]
        assert event.channel.state == raw["channel"]["state"]
        assert event.channel.caller == m.CallerID(**raw["channel"]["caller"])
        assert event.channel.dialplan.priority == raw["channel"]["dialplan"]["priority"]
        assert event.channel_ids[0] == raw["channel"]["id"]


def _first(type_: str, **match: object) -> m.Event:
    for raw in CAPTURE:
        if raw["type"] == type_ and all(raw.get(k) == v for k, v in match.items()):
            return m.parse_event(raw)
    raise AssertionError(f"no {type_} in the capture")


def test_stasis_start_of_caller_and_of_media_channel() -> None:
    caller = _first("StasisStart", args=["flow=pizza", "lang=en"])
    assert isinstance(caller, m.StasisStart)
    assert caller.args == ("flow=pizza", "lang=en")
    assert caller.replace_channel is None
    assert caller.channel.caller == m.CallerID("Alice", "5551234")
    assert caller.channel.dialplan == m.Dialplan(
        "caller-context", "dtmf", 1, "Stasis", "ivrcap,flow=pizza,lang=en"
    )
    assert not caller.channel.is_audiosocket

    media = _first("StasisStart", args=["90903afe-f9f5-4469-9243-0b17cf3313c4"])
    assert isinstance(media, m.StasisStart)
    assert media.channel.is_audiosocket
    assert media.channel.name == "AudioSocket/127.0.0.1:9099-90903afe-f9f5-4469-9243-0b17cf3313c4"


def test_dtmf_hangup_destroyed_dial_fields() -> None:
    dtmf = _first("ChannelDtmfReceived", digit="#")
    assert isinstance(dtmf, m.ChannelDtmfReceived)
    assert (dtmf.digit, dtmf.duration_ms) == ("#", 200)

    soft = _first("ChannelHangupRequest", cause=32)
    assert isinstance(soft, m.ChannelHangupRequest)
    assert (soft.cause, soft.soft) == (32, True)
    hard = next(m.parse_event(r) for r in CAPTURE if r["type"] == "ChannelHangupRequest" and "soft" not in r)
    assert isinstance(hard, m.ChannelHangupRequest)
    assert (hard.cause, hard.soft) == (16, False)

    destroyed = _first("ChannelDestroyed")
    assert isinstance(destroyed, m.ChannelDestroyed)
    assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")

    dial = _first("Dial", dialstatus="ANSWER")
    assert isinstance(dial, m.Dial)
    assert dial.peer.state == "Up"
    assert dial.caller is None
    assert dial.channel_ids == (dial.peer.id,)


def test_bridge_events() -> None:
    entered = [m.parse_event(r) for r in CAPTURE if r["type"] == "ChannelEnteredBridge"]
    assert [e.bridge.channels for e in entered if isinstance(e, m.ChannelEnteredBridge)] == [
        ("1795470622.126",),
        ("1795470622.126", "1795470622.128"),
    ]
    left = _first("ChannelLeftBridge")
    assert isinstance(left, m.ChannelLeftBridge)
    assert left.bridge.technology == "simple_bridge"
    assert left.bridge.bridge_type == "mixing"
    destroyed = _first("BridgeDestroyed")
    assert isinstance(destroyed, m.BridgeDestroyed)
    assert destroyed.channel_ids == ()
    assert destroyed.bridge.id == "efde0998-0f22-4598-b085-8ef910aef611"


def test_varset_and_others() -> None:
    varset = _first("ChannelVarset", variable="BRIDGEPEER")
    assert isinstance(varset, m.ChannelVarset)
    assert varset.value.startswith("AudioSocket/")
    glob = m.parse_event(
        {
            "type": "ChannelVarset",
            "variable": "X",
            "value": "1",
            "application": "a",
            "timestamp": "2026-11-23T21:50:22.239+0000",
        }
    )
    assert isinstance(glob, m.ChannelVarset)
    assert glob.channel is None
    assert glob.channel_ids == ()
    dialplan = _first("ChannelDialplan", dialplan_app="SendDTMF")
    assert isinstance(dialplan, m.ChannelDialplan)
    assert dialplan.dialplan_app_data == "123#,250,200"
    callerid = _first("ChannelCallerId")
    assert isinstance(callerid, m.ChannelCallerId)
    assert callerid.caller_presentation_txt == "Presentation Allowed, Not Screened"


def test_unknown_and_malformed_events_keep_the_raw_dict() -> None:
    raw = {"type": "PlaybackStarted", "application": "ivr", "timestamp": "x", "playback": {"id": "p"}}
    event = m.parse_event(raw)
    assert isinstance(event, m.UnknownEvent)
    assert event.raw == raw
    assert event.time is None
    broken = {"type": "StasisStart", "application": "ivr", "args": [], "channel": "not-an-object"}
    parsed = m.parse_event(broken)
    assert isinstance(parsed, m.UnknownEvent)
    assert parsed.type == "StasisStart"
    with_chan = m.parse_event({"type": "ChannelHold", "channel": {"id": "c1"}})
    assert with_chan.channel_ids == ("c1",)


def test_application_replaced() -> None:
    event = m.parse_event(
        {
            "type": "ApplicationReplaced",
            "timestamp": "2026-11-23T21:50:22.239+0000",
            "application": "ivr",
            "asterisk_id": "x",
        }
    )
    assert isinstance(event, m.ApplicationReplaced)
    assert event.time == datetime(2026, 11, 23, 21, 50, 22, 239000, tzinfo=UTC)
