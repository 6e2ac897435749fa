"""A thin, typed asyncio client for the Asterisk REST Interface (ARI) of Asterisk 22.

* :class:`AriClient` - REST calls (channels, bridges, asterisk info) on aiohttp with basic auth.
* :class:`EventStream` - the events WebSocket with reconnect, heartbeat and ApplicationReplaced handling.
* :class:`EventDispatcher` - routes events to per-call tasks so a slow call never delays another.
* :mod:`ivr.ari.models` - typed resources and events; :mod:`ivr.ari.errors` - exceptions per HTTP status.
"""

from ivr.ari.client import AriClient
from ivr.ari.dispatcher import CallRoute, EventDispatcher
from ivr.ari.errors import (
    ApplicationReplacedError,
    AriConnectionError,
    AriError,
    AriHttpError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ServerError,
    Unauthorized,
    UnprocessableEntity,
)
from ivr.ari.events import ConnectionLost, EventStream
from ivr.ari.models import (
    ApplicationReplaced,
    AsteriskInfo,
    Bridge,
    BridgeDestroyed,
    CallerID,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    ChannelStateChange,
    Dial,
    Dialplan,
    Event,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    parse_event,
)

__all__ = [
    "ApplicationReplaced",
    "ApplicationReplacedError",
    "AriClient",
    "AriConnectionError",
    "AriError",
    "AriHttpError",
    "AsteriskInfo",
    "BadRequest",
    "Bridge",
    "BridgeDestroyed",
    "CallRoute",
    "CallerID",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "Conflict",
    "ConnectionLost",
    "Dial",
    "Dialplan",
    "Event",
    "EventDispatcher",
    "EventStream",
    "Forbidden",
    "NotFound",
    "PreconditionFailed",
    "ServerError",
    "StasisEnd",
    "StasisStart",
    "Unauthorized",
    "UnknownEvent",
    "UnprocessableEntity",
    "parse_event",
]
