"""ARI REST over WebSocket messages: the wire as Asterisk 22.10.1 reads and writes it, and malformed input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.ari.rest_messages import (
    MAX_REQUEST_BYTES,
    MessageError,
    RestRequest,
    RestResponse,
    decode_message,
    decode_request,
    request_uri,
)

# What Asterisk 22.10.1 sent, verbatim (captured on the per-call socket of a real call).
ASTERISK_204 = (
    '{"type":"RESTResponse","transaction_id":"","request_id":"r1","status_code":204,"reason_phrase":'
    '"No Content","uri":"channels/1796164684.1/answer","application":"pc:Local/100@ivr-in-00000000;2",'
    '"timestamp":"2026-12-01T22:38:05.252+0000","asterisk_id":"02:95:14:ea:91:9b"}'
)
ASTERISK_404 = (
    '{"type":"RESTResponse","transaction_id":"","request_id":"r7","status_code":404,"reason_phrase":'
    '"Channel Not Found","uri":"channels/nonexist/variable","content_type":"application/json",'
    '"message_body":"{\\"message\\":\\"Provided channel was not found\\"}","application":'
    '"pc:Local/100@ivr-in-00000000;2","timestamp":"2026-12-01T22:38:05.253+0000","asterisk_id":'
    '"02:95:14:ea:91:9b"}'
)
ASTERISK_UNPARSEABLE = (
    '{"type":"RESTResponse","transaction_id":"","request_id":"","status_code":400,"reason_phrase":'
    '"Failed to parse request message JSON","uri":"","application":"pc:Local/100@ivr-in-00000000;2",'
    '"timestamp":"2026-12-01T22:38:05.253+0000","asterisk_id":"02:95:14:ea:91:9b"}'
)


def test_request_is_what_asterisk_parses() -> None:
    text = RestRequest(
        request_id="pc1-7",
        method="POST",
        uri="channels/abc%2Fdef/variable",
        query=(("variable", "CHANNEL(name)"), ("value", "a,b&c=d")),
        body={"variables": {"X": "é"}},
    ).encode()
    message = json.loads(text)
    assert message == {
        "type": "RESTRequest",
        "request_id": "pc1-7",
        "method": "POST",
        "uri": "channels/abc%2Fdef/variable",
        "query_strings": [
            {"name": "variable", "value": "CHANNEL(name)"},
            {"name": "value", "value": "a,b&c=d"},
        ],
        "content_type": "application/json",
        "message_body": '{"variables":{"X":"é"}}',
    }
    assert decode_request(text).query == (("variable", "CHANNEL(name)"), ("value", "a,b&c=d"))
    assert decode_request(text).body == {"variables": {"X": "é"}}


def test_request_without_query_or_body_has_neither_field() -> None:
    message = json.loads(RestRequest("1", "GET", "asterisk/info").encode())
    assert message == {"type": "RESTRequest", "request_id": "1", "method": "GET", "uri": "asterisk/info"}


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("/channels/1.2/answer", "channels/1.2/answer"),
        ("bridges", "bridges"),
        ("/asterisk/info", "asterisk/info"),
    ],
)
def test_request_uri_drops_the_leading_slash_asterisk_refuses(path: str, uri: str) -> None:
    assert request_uri(path) == uri


@pytest.mark.parametrize("path", ["", "/", "//channels", "/channels?x=1", "/channels/", "/a#b"])
def test_request_uri_rejects_what_is_no_resource_path(path: str) -> None:
    with pytest.raises(MessageError):
        request_uri(path)


@pytest.mark.parametrize(
    "request_",
    [
        RestRequest("", "GET", "channels"),
        RestRequest("1", "PATCH", "channels"),
        RestRequest("1", "get", "channels"),
        RestRequest("1", "GET", "/channels"),
        RestRequest("1", "GET", "channels", query=(("", "x"),)),
        RestRequest("1", "POST", "channels", body={"x": float("nan")}),
        RestRequest("1", "POST", "channels", body={"x": object()}),
        RestRequest("1", "POST", "channels", query=(("v", "\ud800"),)),
    ],
)
def test_malformed_requests_are_refused_before_sending(request_: RestRequest) -> None:
    with pytest.raises(MessageError):
        request_.encode()


def test_asterisk_responses_decode() -> None:
    ok = decode_message(ASTERISK_204)
    assert isinstance(ok, RestResponse)
    assert (ok.request_id, ok.status, ok.reason, ok.body_text, ok.data()) == (
        "r1",
        204,
        "No Content",
        None,
        None,
    )
    missing = decode_message(ASTERISK_404)
    assert isinstance(missing, RestResponse)
    assert missing.status == 404
    assert missing.data() == {"message": "Provided channel was not found"}
    unmatched = decode_message(ASTERISK_UNPARSEABLE)
    assert isinstance(unmatched, RestResponse)
    assert (unmatched.request_id, unmatched.status) == ("", 400)


def test_events_pass_through_as_dicts() -> None:
    event = decode_message('{"type":"ApplicationRegistered","application":"ivr:Local/1@x-0;2"}')
    assert event == {"type": "ApplicationRegistered", "application": "ivr:Local/1@x-0;2"}


def test_response_round_trip() -> None:
    response = RestResponse("abc", 200, "OK", "bridges", '{"id":"b1"}', "application/json")
    assert decode_message(response.encode()) == response


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '"RESTResponse"',
        "{}",
        '{"type": 5}',
        '{"type": ""}',
        '{"type":"RESTResponse","request_id":"1"}',
        '{"type":"RESTResponse","request_id":"1","status_code":"200"}',
        '{"type":"RESTResponse","request_id":"1","status_code":true}',
        '{"type":"RESTResponse","request_id":"1","status_code":99}',
        '{"type":"RESTResponse","request_id":"1","status_code":600}',
        '{"type":"RESTResponse","request_id":"1","status_code":200,"message_body":{"id":1}}',
        "[" * 100_000,
        b"\xff\xfe{}",
    ],
)
def test_malformed_messages_raise_message_error(text: str | bytes) -> None:
    with pytest.raises(MessageError):
        decode_message(text)


def test_reply_body_that_is_not_json_fails_only_that_reply() -> None:
    response = decode_message(
        '{"type":"RESTResponse","request_id":"1","status_code":200,"content_type":"application/json",'
        '"message_body":"<html>"}'
    )
    assert isinstance(response, RestResponse)
    with pytest.raises(MessageError):
        response.data()
    other = RestResponse("1", 200, body_text="x", content_type="text/plain")
    with pytest.raises(MessageError):
        other.data()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "RESTRequest", "request_id": "1", "method": "GET"},
        {"type": "RESTRequest", "request_id": "1", "method": "BREW", "uri": "x"},
        {"type": "Other", "method": "GET", "uri": "x"},
        {"type": "RESTRequest", "method": "GET", "uri": "x", "query_strings": [{"name": "a", "value": 1}]},
        {"type": "RESTRequest", "method": "GET", "uri": "x", "query_strings": "a=b"},
        {"type": "RESTRequest", "method": "GET", "uri": "x", "query_strings": [["a", "b"]]},
        {"type": "RESTRequest", "method": "POST", "uri": "x", "message_body": "{}"},
        {
            "type": "RESTRequest",
            "method": "POST",
            "uri": "x",
            "message_body": "{",
            "content_type": "application/json",
        },
        {
            "type": "RESTRequest",
            "method": "POST",
            "uri": "x",
            "message_body": 3,
            "content_type": "application/json",
        },
    ],
)
def test_malformed_requests_are_refused_like_asterisk_does(message: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        decode_request(json.dumps(message))


def test_request_query_from_uri_strings_and_form_body_in_asterisks_order() -> None:
    request = decode_request(
        json.dumps(
            {
                "type": "RESTRequest",
                "request_id": "9",
                "method": "post",
                "uri": "channels/1/variable?variable=A%20B",
                "query_strings": [{"name": "value", "value": "%41"}],
                "content_type": "application/x-www-form-urlencoded",
                "message_body": "extra=1",
            }
        )
    )
    assert request.method == "POST"
    assert request.uri == "channels/1/variable"
    assert request.query == (("variable", "A B"), ("value", "%41"), ("extra", "1"))


def test_the_frame_budget_is_below_asterisks_limit() -> None:
    assert MAX_REQUEST_BYTES + 8 <= 65535


RESPONSE_FIELDS = [
    "type",
    "request_id",
    "status_code",
    "reason_phrase",
    "uri",
    "content_type",
    "message_body",
    "transaction_id",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=400))
def test_fuzz_any_text_decodes_or_raises_message_error(text: str) -> None:
    try:
        decoded = decode_message(text)
    except MessageError:
        return
    assert isinstance(decoded, RestResponse | dict)


@settings(deadline=None, max_examples=300)
@given(st.dictionaries(st.sampled_from(RESPONSE_FIELDS), json_values, max_size=8))
def test_fuzz_responses_with_wrong_field_types(fields: dict[str, Any]) -> None:
    fields.setdefault("type", "RESTResponse")
    try:
        decoded = decode_message(json.dumps(fields))
    except MessageError:
        return
    if isinstance(decoded, RestResponse):
        assert 100 <= decoded.status <= 599
        with contextlib.suppress(MessageError):
            decoded.data()


@settings(deadline=None, max_examples=300)
@given(
    st.text(min_size=1, max_size=20),
    st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    st.lists(
        st.text(min_size=1, max_size=10).filter(lambda s: not any(c in s for c in "/?#")),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=20)), max_size=4),
    st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)
def test_fuzz_request_round_trip(
    request_id: str, method: str, segments: list[str], query: list[tuple[str, str]], body: Any
) -> None:
    request = RestRequest(request_id, method, "/".join(segments), tuple(query), body)
    try:
        text = request.encode()
    except MessageError:  # lone surrogates cannot go on the wire
        return
    assert decode_request(text) == request
