"""chan_websocket's control vocabulary (Asterisk 22.10.1): every command and event with its fields.

It exists so that one table drives everything: the codec (``control_codec``) encodes and decodes from it,
the typed messages (``control_messages``) check commands against it, and the tests enumerate it. It also
holds the limits of a control text. The protocol as a whole is described in ``ivr.websocket.protocol``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

MAX_COMMAND_BYTES: Final = 128
MAX_EVENT_CHARS: Final = 65536
"""Longest event text decoded (MEDIA_START's JSON carries every channel variable; 64 Ki is plenty)."""
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class ControlForm(enum.Enum):
    PLAIN = "plain-text"
    JSON = "json"


# -- the table the codec runs on ------------------------------------------------------------------

Kind = Literal["str", "int", "bool", "digit", "vars"]
Shape = Literal["kv", "kv_rest", "rest"]
"""Plain-text shape of a field: ``key:value`` token, ``key:rest of line``, or the bare rest of the line."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind = "str"
    required: bool = True
    shape: Shape = "kv"
    json_only: bool = False


@dataclass(frozen=True, slots=True)
class Verb:
    name: str
    fields: tuple[Field, ...] = ()
    since: str = "22.6.0"
    plain: bool = True
    """False: Asterisk accepts it in the JSON form only."""


_ID = Field("correlation_id", required=False, shape="rest")
_CHANNEL_ID = Field("channel_id", required=False)
_CHANNEL_ID_JSON = Field("channel_id", required=False, json_only=True)
"""The events whose plain-text form is only the name (and id) carry channel_id in JSON only."""

COMMANDS: Final[Mapping[str, Verb]] = {
    v.name: v
    for v in (
        Verb("ANSWER"),
        Verb("HANGUP"),
        Verb("START_MEDIA_BUFFERING"),
        Verb("STOP_MEDIA_BUFFERING", (_ID,)),
        Verb("MARK_MEDIA", (_ID,), since="22.8.0"),
        Verb("FLUSH_MEDIA"),
        Verb("REPORT_QUEUE_DRAINED"),
        Verb("GET_STATUS"),
        Verb("PAUSE_MEDIA"),
        Verb("CONTINUE_MEDIA"),
        Verb("SET_MEDIA_DIRECTION", (Field("direction"),), since="22.9.0", plain=False),
    )
}

EVENTS: Final[Mapping[str, Verb]] = {
    v.name: v
    for v in (
        Verb(
            "MEDIA_START",
            (
                Field("connection_id"),
                Field("channel"),
                _CHANNEL_ID,
                Field("format"),
                Field("optimal_frame_size", "int"),
                Field("ptime", "int"),
                Field("channel_variables", "vars", required=False, json_only=True),
            ),
        ),
        Verb("MEDIA_XOFF", (_CHANNEL_ID_JSON,)),
        Verb("MEDIA_XON", (_CHANNEL_ID_JSON,)),
        Verb("QUEUE_DRAINED", (_CHANNEL_ID_JSON,)),
        Verb("MEDIA_BUFFERING_COMPLETED", (_CHANNEL_ID_JSON, _ID)),
        Verb("MEDIA_MARK_PROCESSED", (_CHANNEL_ID_JSON, _ID), since="22.8.0"),
        Verb("DTMF_END", (Field("digit", "digit"), _CHANNEL_ID)),
        Verb(
            "STATUS",
            (
                _CHANNEL_ID,
                Field("queue_length", "int"),
                Field("xon_level", "int"),
                Field("xoff_level", "int"),
                Field("queue_full", "bool"),
                Field("bulk_media", "bool"),
                Field("media_paused", "bool"),
            ),
        ),
        Verb("ERROR", (_CHANNEL_ID, Field("error_text", shape="kv_rest"))),
    )
}

MEDIA_DIRECTIONS: Final = ("both", "out", "in")
"""From the app's point of view: ``out`` = the app only sends, ``in`` = the app only listens."""
