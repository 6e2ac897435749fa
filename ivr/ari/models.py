"""Typed ARI resources and events (Asterisk 22, ARI 10), parsed from the JSON Asterisk sends.

Parsing is lenient: a missing optional field gets an empty default and an event type this module does
not know becomes :class:`UnknownEvent`, so a newer Asterisk never breaks the stream. Every object keeps
the dict it came from in ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JsonDict = Mapping[str, Any]


def _str(data: JsonDict, key: str, default: str = "") -> str:
    value = data.get(key, default)
    return value if isinstance(value, str) else default if value is None else str(value)


def _int(data: JsonDict, key: str, default: int = 0) -> int:
    value = data.get(key, default)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _dict(data: JsonDict, key: str) -> JsonDict:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def parse_ari_time(text: str) -> datetime | None:
    """Parse an ARI timestamp such as ``2026-11-23T21:50:22.239+0000`` (``None`` if malformed)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CallerID:
    name: str = ""
    number: str = ""

    @classmethod
    def from_json(cls, data: JsonDict) -> CallerID:
        return cls(name=_str(data, "name"), number=_str(data, "number"))


@dataclass(frozen=True, slots=True)
class Dialplan:
    """Where a channel is in the dialplan (ARI model ``DialplanCEP``)."""

    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""

    @classmethod
    def from_json(cls, data: JsonDict) -> Dialplan:
        return cls(
            context=_str(data, "context"),
            exten=_str(data, "exten"),
            priority=_int(data, "priority"),
            app_name=_str(data, "app_name"),
            app_data=_str(data, "app_data"),
        )


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str
    protocol_id: str = ""
    caller: CallerID = field(default_factory=CallerID)
    connected: CallerID = field(default_factory=CallerID)
    accountcode: str = ""
    dialplan: Dialplan = field(default_factory=Dialplan)
    creationtime: str = ""
    language: str = ""
    channelvars: Mapping[str, str] = field(default_factory=dict)
    raw: JsonDict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonDict) -> Channel:
        vars_ = _dict(data, "channelvars")
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            state=_str(data, "state"),
            protocol_id=_str(data, "protocol_id"),
            caller=CallerID.from_json(_dict(data, "caller")),
            connected=CallerID.from_json(_dict(data, "connected")),
            accountcode=_str(data, "accountcode"),
            dialplan=Dialplan.from_json(_dict(data, "dialplan")),
            creationtime=_str(data, "creationtime"),
            language=_str(data, "language"),
            channelvars={str(k): str(v) for k, v in vars_.items()},
            raw=data,
        )

    @property
    def is_audiosocket(self) -> bool:
        """True for a channel created by externalMedia/AudioSocket (name ``AudioSocket/HOST:PORT-UUID``)."""
        return self.name.startswith("AudioSocket/")


@dataclass(frozen=True, slots=True)
class Bridge:
    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    creator: str = ""
    name: str = ""
    channels: tuple[str, ...] = ()
    creationtime: str = ""
    video_mode: str = ""
    raw: JsonDict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonDict) -> Bridge:
        chans = data.get("channels")
        return cls(
            id=_str(data, "id"),
            technology=_str(data, "technology"),
            bridge_type=_str(data, "bridge_type"),
            bridge_class=_str(data, "bridge_class"),
            creator=_str(data, "creator"),
            name=_str(data, "name"),
            channels=tuple(str(c) for c in chans) if isinstance(chans, list) else (),
            creationtime=_str(data, "creationtime"),
            video_mode=_str(data, "video_mode"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class AsteriskInfo:
    """``GET /asterisk/info``; the sections Asterisk did not include are empty."""

    version: str = ""
    entity_id: str = ""
    system_name: str = ""
    raw: JsonDict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonDict) -> AsteriskInfo:
        system = _dict(data, "system")
        config = _dict(data, "config")
        return cls(
            version=_str(system, "version"),
            entity_id=_str(system, "entity_id"),
            system_name=_str(config, "name"),
            raw=data,
        )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every ARI event has; ``raw`` is the decoded JSON message."""

    type: str
    application: str
    timestamp: str
    asterisk_id: str
    raw: JsonDict = field(repr=False, compare=False)

    @property
    def time(self) -> datetime | None:
        return parse_ari_time(self.timestamp)

    @property
    def channel_ids(self) -> tuple[str, ...]:
        """Ids of the channels this event concerns (used to route it to calls)."""
        return ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(Event):
    """An event about one channel (``channel`` in the JSON)."""

    channel: Channel

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisStart(ChannelEvent):
    args: tuple[str, ...]
    replace_channel: Channel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StasisEnd(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDtmfReceived(ChannelEvent):
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHangupRequest(ChannelEvent):
    cause: int | None = None
    soft: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDestroyed(ChannelEvent):
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStateChange(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCreated(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelVarset(Event):
    """A variable changed; ``channel`` is ``None`` for a global variable."""

    variable: str
    value: str
    channel: Channel | None = None

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,) if self.channel is not None else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelDialplan(ChannelEvent):
    dialplan_app: str
    dialplan_app_data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCallerId(ChannelEvent):
    caller_presentation: int
    caller_presentation_txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelConnectedLine(ChannelEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeEvent(Event):
    bridge: Bridge


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeCreated(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeDestroyed(BridgeEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEnteredBridge(BridgeEvent):
    channel: Channel | None = None

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,) if self.channel is not None else ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelLeftBridge(BridgeEvent):
    channel: Channel

    @property
    def channel_ids(self) -> tuple[str, ...]:
        return (self.channel.id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dial(Event):
    """Progress of a dial: ``dialstatus`` is "" while ringing, then ANSWER, BUSY, NOANSWER, ..."""

    dialstatus: str
    peer: Channel
    caller: Channel | None = None
    dialstring: str = ""
    forward: str = ""

    @property
    def channel_ids(self) -> tuple[str, ...]:
        if self.caller is not None and self.caller.id != self.peer.id:
            return (self.peer.id, self.caller.id)
        return (self.peer.id,)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationReplaced(Event):
    """Another WebSocket registered the same application name; this connection gets no more events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """Any event type not modelled here; inspect ``raw``."""

    @property
    def channel_ids(self) -> tuple[str, ...]:
        chan = self.raw.get("channel")
        if isinstance(chan, Mapping) and isinstance(chan.get("id"), str):
            return (str(chan["id"]),)
        return ()


def _opt_channel(data: JsonDict, key: str) -> Channel | None:
    value = data.get(key)
    return Channel.from_json(value) if isinstance(value, Mapping) else None


def parse_event(data: JsonDict) -> Event:
    """Turn one decoded ARI event message into its typed event (``UnknownEvent`` if not modelled)."""
    base: dict[str, Any] = {
        "type": _str(data, "type"),
        "application": _str(data, "application"),
        "timestamp": _str(data, "timestamp"),
        "asterisk_id": _str(data, "asterisk_id"),
        "raw": data,
    }
    kind = base["type"]
    try:
        return _build(kind, data, base)
    except (KeyError, TypeError, ValueError):
        return UnknownEvent(**base)


def _chan(data: JsonDict, key: str = "channel") -> Channel:
    value = data[key]
    if not isinstance(value, Mapping):
        raise TypeError(f"{key} is not an object")
    return Channel.from_json(value)


def _bridge(data: JsonDict) -> Bridge:
    value = data["bridge"]
    if not isinstance(value, Mapping):
        raise TypeError("bridge is not an object")
    return Bridge.from_json(value)


def _build(kind: str, data: JsonDict, base: dict[str, Any]) -> Event:
    if kind == "StasisStart":
        args = data.get("args") or []
        return StasisStart(
            **base,
            channel=_chan(data),
            args=tuple(str(a) for a in args),
            replace_channel=_opt_channel(data, "replace_channel"),
        )
    if kind == "StasisEnd":
        return StasisEnd(**base, channel=_chan(data))
    if kind == "ChannelDtmfReceived":
        return ChannelDtmfReceived(
            **base, channel=_chan(data), digit=_str(data, "digit"), duration_ms=_int(data, "duration_ms")
        )
    if kind == "ChannelHangupRequest":
        cause = data.get("cause")
        return ChannelHangupRequest(
            **base,
            channel=_chan(data),
            cause=cause if isinstance(cause, int) else None,
            soft=bool(data.get("soft", False)),
        )
    if kind == "ChannelDestroyed":
        return ChannelDestroyed(
            **base, channel=_chan(data), cause=_int(data, "cause"), cause_txt=_str(data, "cause_txt")
        )
    if kind == "ChannelStateChange":
        return ChannelStateChange(**base, channel=_chan(data))
    if kind == "ChannelCreated":
        return ChannelCreated(**base, channel=_chan(data))
    if kind == "ChannelVarset":
        return ChannelVarset(
            **base,
            variable=_str(data, "variable"),
            value=_str(data, "value"),
            channel=_opt_channel(data, "channel"),
        )
    if kind == "ChannelDialplan":
        return ChannelDialplan(
            **base,
            channel=_chan(data),
            dialplan_app=_str(data, "dialplan_app"),
            dialplan_app_data=_str(data, "dialplan_app_data"),
        )
    if kind == "ChannelCallerId":
        return ChannelCallerId(
            **base,
            channel=_chan(data),
            caller_presentation=_int(data, "caller_presentation"),
            caller_presentation_txt=_str(data, "caller_presentation_txt"),
        )
    if kind == "ChannelConnectedLine":
        return ChannelConnectedLine(**base, channel=_chan(data))
    if kind == "ChannelEnteredBridge":
        return ChannelEnteredBridge(**base, bridge=_bridge(data), channel=_opt_channel(data, "channel"))
    if kind == "ChannelLeftBridge":
        return ChannelLeftBridge(**base, bridge=_bridge(data), channel=_chan(data))
    if kind == "BridgeCreated":
        return BridgeCreated(**base, bridge=_bridge(data))
    if kind == "BridgeDestroyed":
        return BridgeDestroyed(**base, bridge=_bridge(data))
    if kind == "Dial":
        return Dial(
            **base,
            dialstatus=_str(data, "dialstatus"),
            peer=_chan(data, "peer"),
            caller=_opt_channel(data, "caller"),
            dialstring=_str(data, "dialstring"),
            forward=_str(data, "forward"),
        )
    if kind == "ApplicationReplaced":
        return ApplicationReplaced(**base)
    return UnknownEvent(**base)
