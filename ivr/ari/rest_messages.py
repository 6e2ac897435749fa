"""ARI REST over WebSocket: the request and response messages (pure, no I/O).

Asterisk 20.14 / 21.9 / 22.4 and later carry ARI requests as JSON text frames on an ARI WebSocket (the
``/ari/events`` socket an app opens, or the outbound socket Asterisk opens to the app), and answer each
one with a ``RESTResponse`` on the same socket, between the events. The rules below were read from
Asterisk 22.10.1 (``res/ari/ari_websocket_requests.c``, ``res/ari/ari_websockets.c``,
``rest-api/api-docs/events.json``) and checked against it (``tests/ari/test_percall_asterisk.py``):

* A request is ``{"type": "RESTRequest", "request_id", "method", "uri", "query_strings", "content_type",
  "message_body"}``. ``uri`` is relative to ``/ari/`` with no leading slash: ``channels/ID/answer``
  works, ``/channels/ID/answer`` is a 405 and ``ari/channels/ID/answer`` a 404. Path segments are
  percent-decoded one by one, so an id keeps its ``/`` as ``%2F``.
* ``query_strings`` is a list of ``{"name", "value"}`` strings taken as they are (a ``?`` query in
  ``uri`` is form-decoded instead). A body is JSON *text* in ``message_body`` with ``content_type``
  ``application/json``.
* A response is ``{"type": "RESTResponse", "request_id", "transaction_id", "status_code",
  "reason_phrase", "uri"}`` plus ``content_type`` and ``message_body`` (JSON text) when there is a body,
  and the ``application`` / ``timestamp`` / ``asterisk_id`` every event has. Ids come back as sent.
* A text frame that is not JSON gets a 400 whose ``request_id`` is empty (nobody can match it); binary
  frames are ignored. A frame over 65,535 bytes (header included) makes Asterisk close the socket (1009).
* Asterisk runs the requests of one socket one at a time, in order; an event caused by a request (e.g.
  ``ChannelVarset``, the media channel's ``StasisStart``) may arrive before its response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ivr.bounded_json import JsonLimitError, loads_bounded

MAX_FRAME_BYTES = 65535
"""Asterisk's whole-frame limit (``AST_WEBSOCKET_MAX_RX_PAYLOAD_SIZE``); bigger frames close the socket."""
MAX_REQUEST_BYTES = MAX_FRAME_BYTES - 8
"""The largest request text that fits: a 65,535-byte frame less the longest header it can have."""
METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class MessageError(ValueError):
    """A message is not valid ARI over WebSocket; the text says what is wrong, in one short line."""


def request_uri(path: str) -> str:
    """An ARI path as our REST methods write it (``/channels/ID``) -> the ``uri`` Asterisk expects."""
    uri = path.removeprefix("/")
    if not uri or uri.startswith("/") or any(c in uri for c in "?#") or uri.endswith("/"):
        raise MessageError(f"not an ARI resource path: {path[:80]!r}")
    return uri


@dataclass(frozen=True, slots=True)
class RestRequest:
    request_id: str
    method: str
    uri: str
    """Relative to ``/ari/``, no leading slash, no query (see :func:`request_uri`)."""
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    """A JSON value sent as ``message_body``, or ``None`` for no body."""
    transaction_id: str = ""

    def encode(self) -> str:
        """The message text (UTF-8 compact JSON); raises :class:`MessageError` for a malformed request."""
        if not self.request_id:
            raise MessageError("a request needs a request_id")
        if self.method not in METHODS:
            raise MessageError(f"unsupported method {self.method[:16]!r}")
        if request_uri(self.uri) != self.uri:
            raise MessageError(f"uri {self.uri[:80]!r} must not start with '/'")
        if any(not name for name, _ in self.query):
            raise MessageError("a query parameter needs a name")
        message: dict[str, Any] = {"type": "RESTRequest", "request_id": self.request_id}
        if self.transaction_id:
            message["transaction_id"] = self.transaction_id
        message["method"] = self.method
        message["uri"] = self.uri
        if self.query:
            message["query_strings"] = [{"name": n, "value": v} for n, v in self.query]
        if self.body is not None:
            message["content_type"] = JSON_TYPE
            message["message_body"] = _dumps(self.body)
        text = _dumps(message)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError("the request is not valid Unicode (lone surrogate)") from None
        return text


@dataclass(frozen=True, slots=True)
class RestResponse:
    request_id: str
    status: int
    reason: str = ""
    uri: str = ""
    body_text: str | None = None
    """``message_body`` as sent (JSON text for ``application/json``)."""
    content_type: str = ""
    transaction_id: str = ""

    def data(self) -> Any:
        """The decoded body (``None`` when there is none); :class:`MessageError` if it is not JSON."""
        if self.body_text is None or not self.body_text.strip():
            return None
        if self.content_type and self.content_type != JSON_TYPE:
            raise MessageError(f"the reply body is {self.content_type[:40]}, not JSON")
        return _loads(self.body_text, "the reply body")

    def encode(self) -> str:
        message: dict[str, Any] = {
            "type": "RESTResponse",
            "transaction_id": self.transaction_id,
            "request_id": self.request_id,
            "status_code": self.status,
            "reason_phrase": self.reason,
            "uri": self.uri,
        }
        if self.body_text is not None:
            message["content_type"] = self.content_type or JSON_TYPE
            message["message_body"] = self.body_text
        return _dumps(message)


def decode_message(text: str | bytes) -> RestResponse | dict[str, Any]:
    """One text frame from Asterisk: a :class:`RestResponse`, or an event as a dict (for ``parse_event``)."""
    message = _loads(text, "the message")
    if not isinstance(message, dict):
        raise MessageError("the message is not a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise MessageError("the message has no type")
    if kind != "RESTResponse":
        return message
    status = message.get("status_code")
    if type(status) is not int or not 100 <= status <= 599:
        raise MessageError("RESTResponse without a valid status_code")
    body = message.get("message_body")
    if body is not None and not isinstance(body, str):
        raise MessageError("RESTResponse message_body is not a string")
    return RestResponse(
        request_id=_text(message, "request_id"),
        status=status,
        reason=_text(message, "reason_phrase"),
        uri=_text(message, "uri"),
        body_text=body,
        content_type=_text(message, "content_type"),
        transaction_id=_text(message, "transaction_id"),
    )


def decode_request(text: str | bytes) -> RestRequest:
    """One ``RESTRequest`` as Asterisk reads it (for fakes and the simulator): query from ``uri``,
    ``query_strings`` and a form body, in that order; a JSON body decoded."""
    message = _loads(text, "the request")
    if not isinstance(message, dict):
        raise MessageError("the request is not a JSON object")
    if message.get("type") != "RESTRequest":
        raise MessageError("the message is not a RESTRequest")
    method = message.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise MessageError("unknown or missing method")
    raw_uri = message.get("uri")
    if not isinstance(raw_uri, str) or not raw_uri:
        raise MessageError("empty or missing uri")
    uri, _, query_text = raw_uri.partition("?")
    query = list(parse_qsl(query_text, keep_blank_values=True))
    query += _pairs(message.get("query_strings"))
    body: Any = None
    body_text = message.get("message_body")
    if body_text is not None and not isinstance(body_text, str):
        raise MessageError("message_body is not a string")
    if body_text:
        content_type = message.get("content_type")
        if content_type == JSON_TYPE:
            body = _loads(body_text, "message_body")
        elif content_type == FORM_TYPE:
            query += parse_qsl(body_text, keep_blank_values=True)
        else:
            raise MessageError("message_body without a supported content_type")
    return RestRequest(
        request_id=_text(message, "request_id"),
        method=method.upper(),
        uri=uri,
        query=tuple(query),
        body=body,
        transaction_id=_text(message, "transaction_id"),
    )


def _pairs(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise MessageError("query_strings is not a list")
    pairs: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise MessageError("query_strings holds something that is not an object")
        name, val = item.get("name"), item.get("value")
        if not isinstance(name, str) or not isinstance(val, str):
            raise MessageError("query_strings needs string names and values")
        pairs.append((name, val))
    return pairs


def _text(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key)
    return value if isinstance(value, str) else ""


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MessageError(f"not JSON-serialisable: {type(exc).__name__}") from None


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return loads_bounded(text)
    except JsonLimitError:
        raise MessageError(f"{what} is JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError):
        raise MessageError(f"{what} is not JSON") from None
