"""16-bit PCM WAV in memory and on disk, and stereo call recordings.

STT uploads want ``("utterance.wav", bytes, "audio/wav")``, recordings want the
caller on the left and the IVR on the right, and test fixtures are WAV files;
stdlib ``wave`` does the container work, this adds the format checks.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass

import numpy as np

from ivr.media.framing import BytesLike

SAMPLE_WIDTH = 2


class WavFormatError(ValueError):
    """The WAV is not 16-bit PCM or not the rate/channel count expected."""


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Decoded WAV: interleaved s16le samples plus their format."""

    pcm: bytes
    rate: int
    channels: int

    @property
    def frames(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (SAMPLE_WIDTH * self.channels)

    @property
    def duration_ms(self) -> float:
        return self.frames * 1000 / self.rate


def _check(pcm: BytesLike, rate: int, channels: int) -> None:
    if channels not in (1, 2):
        raise WavFormatError(f"only mono or stereo, not {channels} channels")
    if rate <= 0:
        raise WavFormatError(f"bad sample rate {rate}")
    if len(pcm) % (SAMPLE_WIDTH * channels):
        raise WavFormatError("PCM length is not a whole number of sample frames")


def _write(target: io.BytesIO | str | os.PathLike[str], pcm: BytesLike, rate: int, channels: int) -> None:
    _check(pcm, rate, channels)
    with wave.open(target if isinstance(target, io.BytesIO) else os.fspath(target), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)


def wav_bytes(pcm: BytesLike, rate: int, channels: int = 1) -> bytes:
    """Wrap s16le PCM (interleaved if stereo) in a WAV container, in memory."""
    buf = io.BytesIO()
    _write(buf, pcm, rate, channels)
    return buf.getvalue()


def write_wav(path: str | os.PathLike[str], pcm: BytesLike, rate: int, channels: int = 1) -> None:
    """Write s16le PCM (interleaved if stereo) to a WAV file."""
    _write(path, pcm, rate, channels)


def read_wav(
    source: str | os.PathLike[str] | bytes, *, rate: int | None = None, channels: int | None = None
) -> WavAudio:
    """Read a 16-bit PCM WAV from a path or from bytes, optionally insisting on rate/channels."""
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source), "rb") as w:
            got = WavAudio(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())
            width = w.getsampwidth()
    except (wave.Error, EOFError) as e:
        raise WavFormatError(f"not a PCM WAV: {e}") from e
    if width != SAMPLE_WIDTH:
        raise WavFormatError(f"expected 16-bit samples, got {8 * width}-bit")
    if rate is not None and got.rate != rate:
        raise WavFormatError(f"expected {rate} Hz, got {got.rate} Hz")
    if channels is not None and got.channels != channels:
        raise WavFormatError(f"expected {channels} channel(s), got {got.channels}")
    return got


def interleave(left: BytesLike, right: BytesLike) -> bytes:
    """Two s16le mono tracks -> one stereo stream; the shorter track is padded with silence."""
    if len(left) & 1 or len(right) & 1:
        raise WavFormatError("PCM length must be a whole number of 16-bit samples")
    lt = np.frombuffer(left, dtype="<i2")
    rt = np.frombuffer(right, dtype="<i2")
    out = np.zeros((max(lt.size, rt.size), 2), dtype="<i2")
    out[: lt.size, 0] = lt
    out[: rt.size, 1] = rt
    return out.tobytes()


def stereo_wav(left: BytesLike, right: BytesLike, rate: int) -> bytes:
    """A call recording as WAV bytes: caller (left) and IVR (right)."""
    return wav_bytes(interleave(left, right), rate, 2)
