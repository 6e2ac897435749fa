"""chan_websocket's control messages as typed values: one class per event, and the checked Command.

It exists to keep the message model apart from the wire text: the sessions, the fakes and the tests deal
in these values, and only ``control_codec`` turns them into text and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ivr.websocket.control_table import COMMANDS, MEDIA_DIRECTIONS, ControlForm

# -- typed messages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaStart:
    connection_id: str
    channel: str
    channel_id: str | None
    format: str
    optimal_frame_size: int
    ptime: int
    channel_variables: Mapping[str, str] = field(default_factory=dict)
    form: ControlForm = ControlForm.PLAIN
    """The control form this channel speaks (the app answers in the same one)."""


@dataclass(frozen=True, slots=True)
class MediaXoff:
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class MediaXon:
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueueDrained:
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class MediaBufferingCompleted:
    correlation_id: str = ""
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class MediaMarkProcessed:
    correlation_id: str = ""
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class DtmfEnd:
    digit: str
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    queue_length: int
    xon_level: int
    xoff_level: int
    queue_full: bool
    bulk_media: bool
    media_paused: bool
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Asterisk refused a command (wrong form, bad argument, passthrough mode)."""

    error_text: str
    channel_id: str | None = None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    name: str
    text: str


Event = (
    MediaStart
    | MediaXoff
    | MediaXon
    | QueueDrained
    | MediaBufferingCompleted
    | MediaMarkProcessed
    | DtmfEnd
    | Status
    | ErrorEvent
    | UnknownEvent
)

_EVENT_TYPES: Final[Mapping[str, type[Event]]] = {
    "MEDIA_START": MediaStart,
    "MEDIA_XOFF": MediaXoff,
    "MEDIA_XON": MediaXon,
    "QUEUE_DRAINED": QueueDrained,
    "MEDIA_BUFFERING_COMPLETED": MediaBufferingCompleted,
    "MEDIA_MARK_PROCESSED": MediaMarkProcessed,
    "DTMF_END": DtmfEnd,
    "STATUS": Status,
    "ERROR": ErrorEvent,
}


@dataclass(frozen=True, slots=True)
class Command:
    """One command; ``argument`` is the correlation id or the direction (see :data:`COMMANDS`)."""

    verb: str
    argument: str | None = None

    def __post_init__(self) -> None:
        spec = COMMANDS.get(self.verb)
        if spec is None:
            raise ValueError(f"unknown chan_websocket command {self.verb!r}")
        if not spec.fields and self.argument is not None:
            raise ValueError(f"{self.verb} takes no argument")
        if spec.fields and spec.fields[0].required and self.argument is None:
            raise ValueError(f"{self.verb} needs {spec.fields[0].name}")
        if self.verb == "SET_MEDIA_DIRECTION" and self.argument not in MEDIA_DIRECTIONS:
            raise ValueError(f"SET_MEDIA_DIRECTION direction must be one of {MEDIA_DIRECTIONS}")
