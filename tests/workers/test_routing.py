"""The supervisor's routing table on a real Asterisk 22 event stream: every event of a call reaches the
worker that took it, media and bridge events route by the worker's id tag, nothing else is misrouted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ivr.ari.models import parse_event
from ivr.workers.routing import CallRouter, tagged_worker, worker_tag

CAPTURE = Path(__file__).parents[1] / "ari" / "data" / "ari-events-asterisk-22.10.1.jsonl"
CALLER = "1795470622.126"


def retagged(worker: int) -> list[dict[str, Any]]:
    """The captured call, as if worker ``worker`` had created its media channel and bridge."""
    text = CAPTURE.read_text()
    text = text.replace("1795470622.128", f"{worker_tag(worker)}media-1")
    text = text.replace("efde0998-0f22-4598-b085-8ef910aef611", f"{worker_tag(worker)}bridge-1")
    return [json.loads(line) for line in text.splitlines()]


def test_tags_round_trip() -> None:
    assert tagged_worker(worker_tag(3) + "media-x") == 3
    assert tagged_worker("ivr-out-123") is None
    assert tagged_worker("1795470622.126") is None


@pytest.mark.parametrize("busy", [0, 1])
def test_a_call_goes_to_the_least_loaded_worker_and_stays_there(busy: int) -> None:
    router = CallRouter(workers=2)
    router.callers["someone-else"] = busy  # the other worker is less loaded
    taker = 1 - busy
    owners: dict[str, set[int | None]] = {}
    new_calls = 0
    for data in retagged(taker):
        event = parse_event(data)
        route = router.route(event)
        new_calls += route.new_call
        owners.setdefault(event.type, set()).add(route.worker)
    assert new_calls == 1
    for kind in (
        "StasisStart",
        "ChannelDtmfReceived",
        "ChannelEnteredBridge",
        "BridgeDestroyed",
        "StasisEnd",
    ):
        assert owners[kind] == {taker}, (kind, owners[kind])
    assert CALLER not in router.callers  # unbound by its ChannelDestroyed


def test_media_channels_and_agent_legs_are_never_callers() -> None:
    router = CallRouter(workers=1)
    for data in retagged(0):
        event = parse_event(data)
        if event.type == "StasisStart" and event.channel_ids[0].startswith("ivr-w0-"):
            route = router.route(event)
            assert route.worker == 0
            assert not route.new_call
    agent = {
        "type": "StasisStart",
        "application": "ivr",
        "timestamp": "2026-11-23T21:50:22.239+0000",
        "asterisk_id": "x",
        "args": ["ivr-transfer", CALLER],
        "channel": {"id": "elsewhere-1", "name": "PJSIP/agents-1", "state": "Up"},
    }
    assert router.route(parse_event(agent)).worker is None


def test_a_dead_workers_calls_are_returned_once_and_no_new_call_goes_to_it() -> None:
    router = CallRouter(workers=2)
    router.callers.update({"a": 0, "b": 1, "c": 0})
    router.set_available(0, False)
    assert sorted(router.lose(0)) == ["a", "c"]
    assert router.lose(0) == []
    start = next(d for d in retagged(1) if d["type"] == "StasisStart")
    assert router.route(parse_event(start)).worker == 1
    router.set_available(1, False)
    other = {**start, "channel": {**start["channel"], "id": "new-caller"}}
    assert router.route(parse_event(other)).worker is None  # nobody can take it: congestion
