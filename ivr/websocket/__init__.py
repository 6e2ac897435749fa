"""WebSocket media (Asterisk's chan_websocket): the wire codec, one call's session, both connection shapes.

``WebSocketMediaClient`` connects to Asterisk's ``/media/<connection_id>`` (externalMedia
``connection_type=server``, ``Dial(WebSocket/INCOMING/...)``); ``WebSocketMediaServer`` is what Asterisk
dials (a ``websocket_client.conf`` entry: externalMedia ``connection_type=client``,
``Dial(WebSocket/<entry>/...)``). Either way a :class:`WebSocketMediaSession` is the call's
:class:`ivr.transport.MediaTransport`, paced by Asterisk.
"""

from ivr.websocket.client import MediaConnectError, WebSocketMediaClient
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import (
    QUEUE_MAX,
    XOFF_LEVEL,
    XON_LEVEL,
    Command,
    ControlForm,
    MediaStart,
    ProtocolError,
    Status,
    decode_command,
    decode_event,
    encode_command,
    encode_event,
)
from ivr.websocket.sender import SessionStats
from ivr.websocket.server import Expectation, ServerStats, WebSocketMediaServer, WebSocketServerConfig
from ivr.websocket.session import SessionConfig, WebSocketMediaSession

__all__ = [
    "QUEUE_MAX",
    "XOFF_LEVEL",
    "XON_LEVEL",
    "Command",
    "ControlForm",
    "Expectation",
    "MediaConnectError",
    "MediaStart",
    "ProtocolError",
    "ServerStats",
    "SessionConfig",
    "SessionStats",
    "Status",
    "WebSocketMediaClient",
    "WebSocketMediaServer",
    "WebSocketMediaSession",
    "WebSocketPlayout",
    "WebSocketServerConfig",
    "decode_command",
    "decode_event",
    "encode_command",
    "encode_event",
]
