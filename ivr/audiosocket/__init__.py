"""AudioSocket: the wire codec, the TCP server with sessions by UUID, and paced playback."""

from ivr.audiosocket.clock import Clock, FrameClock, LoopClock, ManualClock
from ivr.audiosocket.player import Playback, Player
from ivr.audiosocket.protocol import (
    Audio,
    Dtmf,
    Error,
    ErrorCode,
    Frame,
    FrameDecoder,
    Hangup,
    Kind,
    ProtocolError,
    Unknown,
    Uuid,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
    frame_bytes,
    rate_for_format,
)
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer, Expectation, ServerStats
from ivr.audiosocket.session import AudioSocketSession
from ivr.audiosocket.stats import LatencyHistogram, LatencySummary

__all__ = [
    "Audio",
    "AudioSocketConfig",
    "AudioSocketServer",
    "AudioSocketSession",
    "Clock",
    "Dtmf",
    "Error",
    "ErrorCode",
    "Expectation",
    "Frame",
    "FrameClock",
    "FrameDecoder",
    "Hangup",
    "Kind",
    "LatencyHistogram",
    "LatencySummary",
    "LoopClock",
    "ManualClock",
    "Playback",
    "Player",
    "ProtocolError",
    "ServerStats",
    "Unknown",
    "Uuid",
    "encode_audio",
    "encode_dtmf",
    "encode_error",
    "encode_hangup",
    "encode_uuid",
    "frame_bytes",
    "rate_for_format",
]
