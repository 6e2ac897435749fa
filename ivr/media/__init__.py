"""Media layer: framing, resampling, G.711, WAV, VAD, endpointing, turn-taking and barge-in pieces.

Pure and synchronous, one 20 ms frame at a time; no asyncio and no imports from the call, flow, speech
or transport layers, so it can be tested in isolation. The two model runners (``silero.VadBatcher`` and
``smart_turn.TurnModelExecutor``) each own one worker thread, started and closed by their owner.
"""

from ivr.media.endpoint import (
    Endpointer,
    Event,
    ListenSettings,
    MaxLengthReached,
    NoInput,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)
from ivr.media.framing import CALL_RATES, FRAME_MS, BytesLike, Framer, frame_bytes, frame_samples, silence
from ivr.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ivr.media.resample import ResampleStream, resample
from ivr.media.vad import EnergyVad, FrameVad, VadSettings
from ivr.media.wav import WavAudio, WavFormatError, interleave, read_wav, stereo_wav, wav_bytes, write_wav

__all__ = [
    "CALL_RATES",
    "FRAME_MS",
    "BytesLike",
    "Endpointer",
    "EnergyVad",
    "Event",
    "FrameVad",
    "Framer",
    "ListenSettings",
    "MaxLengthReached",
    "NoInput",
    "ResampleStream",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "VadSettings",
    "WavAudio",
    "WavFormatError",
    "alaw_decode",
    "alaw_encode",
    "frame_bytes",
    "frame_samples",
    "interleave",
    "read_wav",
    "resample",
    "silence",
    "stereo_wav",
    "ulaw_decode",
    "ulaw_encode",
    "wav_bytes",
    "write_wav",
]
