"""Simulation speech engines (``sim-text``): instant, deterministic, never a default.

They exist for ``ivr simulate --text``, tests and benchmarks, where the point is to exercise the
framework's own audio path (framing, VAD, endpointing, pacing, barge-in) without paying for real speech.
The simulated caller's audio *carries its words*: a loud carrier (so the VAD hears speech) with the UTF-8
text embedded as a marked run of samples; :class:`TextTranscriber` finds and decodes it from the
endpointed utterance. :class:`ToneSynthesizer` produces the same kind of audio for prompts, sized by the
text's length, so a simulated caller can tell what the IVR said as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np

from ivr.media.framing import BytesLike, frame_bytes
from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity

ENGINE = "sim-text"
_MAGIC = np.array([12345, -12345, 23456, -23456, 31111, -31111], dtype="<i2")
_CARRIER = 6000  # about -15 dBFS: clearly speech to the VAD
_MAX_TEXT = 4000


def _carrier(samples: int) -> np.ndarray:
    out = np.full(samples, _CARRIER, dtype="<i2")
    out[1::2] = -_CARRIER
    out[2::4] = _CARRIER // 2
    return out


def encode_text_speech(text: str, rate: int, *, ms_per_char: float = 0.0, min_ms: int = 300) -> bytes:
    """PCM (s16le at ``rate``) that :func:`decode_text_speech` turns back into ``text``."""
    payload = text.encode("utf-8")[:_MAX_TEXT]
    body = np.concatenate(
        [
            _MAGIC,
            np.array([len(payload)], dtype="<i2"),
            (np.frombuffer(payload, dtype=np.uint8).astype("<i2") * 100 - 12800),
        ]
    ).astype("<i2")
    lead = rate // 10  # 100 ms of carrier before the words, so onset detection never clips them
    total = max(
        int(rate * min_ms / 1000), int(rate * ms_per_char * len(text) / 1000), lead + len(body) + rate // 20
    )
    pcm = _carrier(total)
    pcm[lead : lead + len(body)] = body
    return pcm.tobytes()


def decode_text_speech(pcm: BytesLike) -> list[str]:
    """Every text embedded in ``pcm``, in order."""
    samples = np.frombuffer(bytes(pcm[: len(pcm) - len(pcm) % 2]), dtype="<i2")
    n = len(_MAGIC)
    if len(samples) < n + 1:
        return []
    # Compare whole windows only where the marker's first sample is: a scan of every window costs
    # milliseconds per utterance, on the loop that paces every call's frames.
    candidates = np.flatnonzero(samples[: len(samples) - n + 1] == _MAGIC[0])
    texts: list[str] = []
    for start in candidates:
        if not np.array_equal(samples[start : start + n], _MAGIC):
            continue
        at = int(start) + n
        if at >= len(samples):
            continue
        length = int(samples[at])
        raw = samples[at + 1 : at + 1 + length].astype(np.int32) + 12800
        if length <= 0 or len(raw) != length or (raw % 100).any():
            continue
        try:
            texts.append((raw // 100).astype(np.uint8).tobytes().decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return texts


class TextTranscriber(Transcriber):
    """Reads the words a simulated caller's audio carries; empty text for anything else (noise)."""

    engine = ENGINE

    async def transcribe(
        self, pcm: BytesLike, *, rate: int, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        texts = decode_text_speech(pcm)
        return Transcript(" ".join(texts), 1.0 if texts else 0.0)


class ToneSynthesizer(Synthesizer):
    """Instant prompts: the text embedded in a carrier, ``ms_per_char`` long (at least ``min_ms``)."""

    engine = ENGINE

    def __init__(self, *, ms_per_char: float = 10.0, min_ms: int = 200) -> None:
        self.ms_per_char = ms_per_char
        self.min_ms = min_ms

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return VoiceIdentity(ENGINE, f"{self.ms_per_char:g}ms/char", voice or "", instructions or "")

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        pcm = encode_text_speech(text, rate, ms_per_char=self.ms_per_char, min_ms=self.min_ms)
        size = frame_bytes(rate)
        for i in range(0, len(pcm), size):
            yield pcm[i : i + size]
