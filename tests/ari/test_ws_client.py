"""WsAriClient: ARI REST over a WebSocket, matched by request id, with the HTTP client's errors.

The peer here is in memory (what was sent is decoded with the codec, replies are fed back); the same
client against the real Asterisk is in test_percall_asterisk.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ivr.ari import AriClient
from ivr.ari.client import AriResources
from ivr.ari.errors import (
    AriConnectionError,
    AriHttpError,
    AriTimeout,
    BadReply,
    Conflict,
    NotFound,
    RequestTooLarge,
    ServerError,
    Unauthorized,
    UnprocessableEntity,
)
from ivr.ari.rest_messages import RestRequest, RestResponse, decode_request
from ivr.ari.ws_client import WsAriClient


class Peer:
    """Records what the client sends; the test answers."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[RestRequest] = asyncio.Queue()
        self.fail_with: Exception | None = None

    async def send(self, text: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        await self.sent.put(decode_request(text))

    async def next(self) -> RestRequest:
        return await asyncio.wait_for(self.sent.get(), 5)


def reply(request: RestRequest, status: int = 200, body: object = None, reason: str = "") -> RestResponse:
    text = None if body is None else json.dumps(body)
    return RestResponse(
        request.request_id, status, reason, request.uri, text, "application/json" if text else ""
    )


@pytest.fixture
def peer() -> Peer:
    return Peer()


@pytest.fixture
def ari(peer: Peer) -> WsAriClient:
    return WsAriClient(peer.send, timeout=5.0, name="t")


def test_both_transports_share_one_implementation_of_the_resources() -> None:
    assert issubclass(AriClient, AriResources)
    assert issubclass(WsAriClient, AriResources)
    resources = {n for n, v in vars(AriResources).items() if callable(v) and not n.startswith("__")}
    assert {"answer", "hangup", "create_bridge", "add_channel", "external_media", "originate"} <= resources
    for name in resources - {"request"}:
        assert getattr(WsAriClient, name) is getattr(AriClient, name) is getattr(AriResources, name)


async def test_resource_methods_go_out_as_asterisk_requests(ari: WsAriClient, peer: Peer) -> None:
    task = asyncio.ensure_future(ari.get_variable("chan/1", "CHANNEL(name)"))
    sent = await peer.next()
    assert (sent.method, sent.uri, sent.query, sent.body) == (
        "GET",
        "channels/chan%2F1/variable",
        (("variable", "CHANNEL(name)"),),
        None,
    )
    ari.feed(reply(sent, 200, {"value": "PJSIP/a-1"}))
    assert await task == "PJSIP/a-1"

    task2 = asyncio.ensure_future(
        ari.originate("Local/s@caller", app="ivr:x", variables={"A": "1"}, timeout=30)
    )
    sent = await peer.next()
    assert (sent.method, sent.uri) == ("POST", "channels")
    assert dict(sent.query) == {"endpoint": "Local/s@caller", "app": "ivr:x", "timeout": "30"}
    assert sent.body == {"variables": {"A": "1"}}
    ari.feed(reply(sent, 200, {"id": "o1", "name": "Local/s@caller-1;1", "state": "Down"}))
    assert (await task2).id == "o1"

    task3 = asyncio.ensure_future(ari.add_channel("b1", ["c1", "m1"], absorb_dtmf=True))
    sent = await peer.next()
    assert (sent.uri, dict(sent.query)) == (
        "bridges/b1/addChannel",
        {"channel": "c1,m1", "absorbDTMF": "true"},
    )
    ari.feed(reply(sent, 204))
    await task3


async def test_replies_in_any_order_find_their_request(ari: WsAriClient, peer: Peer) -> None:
    tasks = [asyncio.ensure_future(ari.get_variable("c", f"V{i}")) for i in range(5)]
    sent = [await peer.next() for _ in tasks]
    assert len({s.request_id for s in sent}) == 5
    for request in reversed(sent):
        ari.feed(reply(request, 200, {"value": dict(request.query)["variable"]}))
    assert await asyncio.gather(*tasks) == [f"V{i}" for i in range(5)]
    assert ari.pending == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, Unauthorized), (404, NotFound), (409, Conflict), (422, UnprocessableEntity), (500, ServerError)],
)
async def test_error_statuses_raise_the_http_clients_classes(
    ari: WsAriClient, peer: Peer, status: int, error: type[AriHttpError]
) -> None:
    task = asyncio.ensure_future(ari.answer("gone"))
    sent = await peer.next()
    ari.feed(reply(sent, status, {"message": "Channel not found"}, reason="Not Found"))
    with pytest.raises(error) as caught:
        await task
    assert caught.value.status == status
    assert caught.value.message == "Channel not found"
    assert (caught.value.method, caught.value.path) == ("POST", "/channels/gone/answer")


async def test_error_without_a_body_says_the_reason_phrase(ari: WsAriClient, peer: Peer) -> None:
    task = asyncio.ensure_future(ari.hangup("x"))
    ari.feed(reply(await peer.next(), 418, reason="I'm a teapot"))
    with pytest.raises(AriHttpError, match="teapot") as caught:
        await task
    assert type(caught.value) is AriHttpError


async def test_a_reply_that_is_not_json_is_a_bad_reply(ari: WsAriClient, peer: Peer) -> None:
    task = asyncio.ensure_future(ari.get_channel("c"))
    sent = await peer.next()
    ari.feed(RestResponse(sent.request_id, 200, "OK", sent.uri, "<html>", "application/json"))
    with pytest.raises(BadReply, match="not JSON"):
        await task
    deep = asyncio.ensure_future(ari.get_channel("c"))
    sent = await peer.next()
    ari.feed(RestResponse(sent.request_id, 200, "OK", sent.uri, "[" * 10_000, "application/json"))
    with pytest.raises(BadReply, match="nested too deep"):
        await deep


async def test_an_error_message_is_cut_to_one_printable_line(ari: WsAriClient, peer: Peer) -> None:
    task = asyncio.ensure_future(ari.answer("c"))
    ari.feed(reply(await peer.next(), 404, {"message": "gone\x1b[31m\nsecond line" + "x" * 500}))
    with pytest.raises(NotFound) as caught:
        await task
    assert caught.value.message.startswith("gone?[31m")
    assert "second line" not in caught.value.message
    assert len(caught.value.message) <= 203


async def test_no_reply_is_a_timeout_and_the_late_reply_is_dropped(peer: Peer) -> None:
    ari = WsAriClient(peer.send, timeout=0.05, name="t")
    with pytest.raises(AriTimeout, match="no reply within"):
        await ari.answer("slow")
    late = await peer.next()
    assert ari.pending == 0
    assert ari.feed(reply(late, 204)) is False
    task = asyncio.ensure_future(ari.answer("next"))
    ari.feed(reply(await peer.next(), 204))
    await task


async def test_closing_fails_the_waiting_requests_and_refuses_new_ones(ari: WsAriClient, peer: Peer) -> None:
    task = asyncio.ensure_future(ari.answer("c"))
    await peer.next()
    ari.close("the per-call ARI connection closed (code 1000)")
    with pytest.raises(
        AriConnectionError, match=r"POST /channels/c/answer: the per-call ARI connection closed"
    ):
        await task
    with pytest.raises(AriConnectionError, match="closed"):
        await ari.hangup("c")
    assert ari.closed
    assert peer.sent.empty()


async def test_a_request_over_asterisks_frame_limit_is_not_sent(ari: WsAriClient, peer: Peer) -> None:
    with pytest.raises(RequestTooLarge, match="over the 65527-byte limit"):
        await ari.set_variable("c", "BIG", "x" * 70_000)
    assert peer.sent.empty()
    assert ari.pending == 0


async def test_a_send_that_fails_is_a_connection_error(ari: WsAriClient, peer: Peer) -> None:
    peer.fail_with = ConnectionResetError("gone")
    with pytest.raises(AriConnectionError, match="cannot send"):
        await ari.answer("c")
    assert ari.pending == 0


def test_a_reply_nobody_waits_for_is_dropped(ari: WsAriClient) -> None:
    assert ari.feed(RestResponse("", 400, "Failed to parse request message JSON")) is False
    assert ari.feed(RestResponse("t-99", 200)) is False
