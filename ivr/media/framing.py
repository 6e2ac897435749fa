"""Frame geometry and a byte-stream re-framer.

AudioSocket carries signed 16-bit little-endian mono PCM in 20 ms frames; every
producer (TTS, resampler, file) delivers arbitrary chunk sizes, so they all go
through one re-framer that emits exact frames as ``bytes``.
"""

from __future__ import annotations

FRAME_MS = 20
SAMPLE_WIDTH = 2
CALL_RATES: tuple[int, ...] = (8000, 16000)

BytesLike = bytes | bytearray | memoryview
"""Any contiguous byte buffer accepted as PCM input."""


def frame_samples(rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame; rejects rates that do not give whole frames."""
    n, rem = divmod(rate * frame_ms, 1000)
    if rem or n <= 0:
        raise ValueError(f"{rate} Hz does not give a whole number of samples in {frame_ms} ms")
    return n


def frame_bytes(rate: int, frame_ms: int = FRAME_MS) -> int:
    """Bytes in one s16le mono frame (320 at 8 kHz, 640 at 16 kHz for 20 ms)."""
    return frame_samples(rate, frame_ms) * SAMPLE_WIDTH


def silence(rate: int, frame_ms: int = FRAME_MS) -> bytes:
    """One frame of digital silence."""
    return bytes(frame_bytes(rate, frame_ms))


class Framer:
    """Cuts a byte stream of any chunking into frames of exactly ``size`` bytes.

    Frames are returned as ``bytes`` so callers can keep them (pre-roll rings,
    recordings) without worrying about buffer reuse. A chunk that is exactly one
    frame while nothing is pending is returned as the same object (no copy).
    """

    __slots__ = ("_buf", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("frame size must be positive")
        self.size = size
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for a full frame."""
        return len(self._buf)

    def push(self, data: BytesLike) -> list[bytes]:
        """Add a chunk; return every frame now complete (possibly none)."""
        size = self.size
        buf = self._buf
        if not buf:
            n = len(data)
            if n == size and type(data) is bytes:
                return [data]
            if n < size:
                buf += data
                return []
            whole = n - n % size
            mv = memoryview(data)
            frames = [bytes(mv[i : i + size]) for i in range(0, whole, size)]
            if whole < n:
                buf += mv[whole:]
            return frames
        buf += data
        n = len(buf)
        if n < size:
            return []
        whole = n - n % size
        frames = [bytes(buf[i : i + size]) for i in range(0, whole, size)]
        del buf[:whole]
        return frames

    def flush(self) -> bytes:
        """Return the partial frame still held (may be empty) and reset."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest
