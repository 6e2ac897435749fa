"""Streaming sample-rate conversion between provider rates and the call rate.

Uses soxr at HQ quality because interpolating converters (``audioop.ratecv``)
have no anti-alias filter: a 6 kHz tone at 24 kHz would fold straight into an
8 kHz call. soxr emits output in bursts (it works in blocks with look-ahead),
so its output is re-framed into exact 20 ms frames here.

Start-up lag (HQ, fed 20 ms chunks in real time, measured with soxr 1.1): the
first full output frame appears after 80 ms of input for 24k->8k, 40 ms for
24k->16k and 120 ms for 8k->16k; a real-time consumer needs a pre-buffer of
about 100 ms, 60 ms and 140 ms respectively to never run dry. Priming the filter
with zeros does not shorten this (the lag is soxr's look-ahead, not filter
warm-up), so we do not prime: output is time-aligned with the input and the
player's pre-buffer covers the lag. See README, Media layer.
"""

from __future__ import annotations

import sys
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from ivr.media.framing import FRAME_MS, BytesLike, Framer, frame_bytes

QUALITY: Final = "HQ"
_EMPTY: Final[npt.NDArray[np.int16]] = np.zeros(0, dtype=np.int16)
_LITTLE_ENDIAN: Final = sys.byteorder == "little"


def _le_bytes(out: npt.NDArray[np.int16]) -> BytesLike:
    """soxr returns native-endian int16; view it as s16le bytes (a copy only on big-endian hosts)."""
    if _LITTLE_ENDIAN:
        return out.data.cast("B")
    return out.astype("<i2").tobytes()


class ResampleStream:
    """Streaming s16le mono converter from ``in_rate`` to exact frames at ``out_rate``.

    ``push`` accepts chunks of any length, including odd byte counts split across
    chunks, and returns the frames completed so far. ``flush`` delivers every
    remaining sample; its last frame may be short (padding is the player's job).
    When the rates match no soxr stream is created and data is only re-framed;
    a chunk that is exactly one frame is passed through as the same object.
    """

    __slots__ = ("_framer", "_odd", "_quality", "_soxr", "frame_bytes", "in_rate", "out_rate")

    def __init__(
        self, in_rate: int, out_rate: int, *, frame_ms: int = FRAME_MS, quality: str = QUALITY
    ) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.frame_bytes = frame_bytes(out_rate, frame_ms)
        self._quality = quality
        self._framer = Framer(self.frame_bytes)
        self._odd = b""
        self._soxr: soxr.ResampleStream | None = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality=self._quality)

    @property
    def passthrough(self) -> bool:
        """True when rates match and no conversion happens."""
        return self._soxr is None

    def push(self, data: BytesLike) -> list[bytes]:
        """Convert one chunk; return the whole output frames now available."""
        stream = self._soxr
        if stream is None:
            return self._framer.push(data)
        if self._odd:
            data = self._odd + bytes(data)
            self._odd = b""
        n = len(data)
        if n & 1:
            self._odd = bytes(data[-1:])
            n -= 1
        if n == 0:
            return []
        samples = np.frombuffer(data, dtype="<i2", count=n >> 1)
        out = stream.resample_chunk(samples)
        if not len(out):
            return []
        return self._framer.push(_le_bytes(out))

    def flush(self) -> list[bytes]:
        """Drain the converter: all remaining output, the last frame possibly short.

        A dangling odd byte (half a sample) is dropped. The stream is ready for a
        new, unrelated input afterwards.
        """
        stream = self._soxr
        frames: list[bytes] = []
        if stream is not None:
            out = stream.resample_chunk(_EMPTY, last=True)
            if len(out):
                frames = self._framer.push(_le_bytes(out))
            self._soxr = self._new_stream()
        self._odd = b""
        rest = self._framer.flush()
        if rest:
            frames.append(rest)
        return frames

    def clear(self) -> None:
        """Drop all buffered input and output (e.g. playback was barged in)."""
        if self._soxr is not None:
            self._soxr.clear()
        self._odd = b""
        self._framer.flush()


def resample(pcm: BytesLike, in_rate: int, out_rate: int, *, quality: str = QUALITY) -> bytes:
    """One-shot conversion of a whole s16le mono buffer (e.g. an utterance for upload)."""
    if len(pcm) & 1:
        raise ValueError("PCM length must be a whole number of 16-bit samples")
    if in_rate == out_rate:
        return bytes(pcm)
    samples = np.frombuffer(pcm, dtype="<i2")
    if samples.size == 0:
        return b""
    out = soxr.resample(samples, in_rate, out_rate, quality=quality)
    return bytes(np.ascontiguousarray(out, dtype="<i2").data)
