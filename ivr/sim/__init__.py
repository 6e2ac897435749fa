"""A simulated Asterisk for tests and the embedded default: ARI REST + events WebSocket, and the
boundary to the AudioSocket leg it dials for ``externalMedia``."""

from ivr.sim.ari_server import AriRequestError, OriginateOutcome, SimAsterisk, SimError
from ivr.sim.ari_state import SimBridge, SimChannel
from ivr.sim.media_leg import MediaConnector, MediaLeg, TcpMediaLeg, tcp_media_connector

__all__ = [
    "AriRequestError",
    "MediaConnector",
    "MediaLeg",
    "OriginateOutcome",
    "SimAsterisk",
    "SimBridge",
    "SimChannel",
    "SimError",
    "TcpMediaLeg",
    "tcp_media_connector",
]
