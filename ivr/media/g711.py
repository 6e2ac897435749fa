"""ITU-T G.711 mu-law and A-law conversion with numpy lookup tables.

The Realtime API's ``audio/pcmu`` and ``audio/pcma`` formats are G.711 at
8 kHz, so an 8 kHz call needs only this table conversion, no resampling.
``audioop`` is gone in Python 3.13, hence our own tables. They are built once
from the reference algorithm (the classic Sun/CCITT ``g711.c``): decoding is a
256-entry int16 table, encoding a 65536-entry uint8 table indexed by the raw
16-bit sample, so either direction is one numpy ``take`` per frame.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from ivr.media.framing import BytesLike

_SEG_END: Final = np.array([0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF])


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype("<i2")


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype("<i2")


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(_SEG_END >> 2, mag)  # first segment whose end >= mag
    uval = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (seg + 1)) & 0x0F))
    return ((uval ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_END >> 3, mag)
    quant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    aval = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | quant)
    return ((aval ^ mask) & 0xFF).astype(np.uint8)


ULAW_DECODE: Final = _ulaw_decode_table()
ALAW_DECODE: Final = _alaw_decode_table()
ULAW_ENCODE: Final = _ulaw_encode_table()
ALAW_ENCODE: Final = _alaw_encode_table()
for _t in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _t.flags.writeable = False


def _encode(pcm: BytesLike, table: npt.NDArray[np.uint8]) -> bytes:
    if len(pcm) & 1:
        raise ValueError("PCM length must be a whole number of 16-bit samples")
    return table.take(np.frombuffer(pcm, dtype="<u2")).tobytes()


def _decode(data: BytesLike, table: npt.NDArray[np.int16]) -> bytes:
    return table.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def ulaw_encode(pcm: BytesLike) -> bytes:
    """s16le PCM -> G.711 mu-law, one byte per sample."""
    return _encode(pcm, ULAW_ENCODE)


def ulaw_decode(data: BytesLike) -> bytes:
    """G.711 mu-law -> s16le PCM."""
    return _decode(data, ULAW_DECODE)


def alaw_encode(pcm: BytesLike) -> bytes:
    """s16le PCM -> G.711 A-law, one byte per sample."""
    return _encode(pcm, ALAW_ENCODE)


def alaw_decode(data: BytesLike) -> bytes:
    """G.711 A-law -> s16le PCM."""
    return _decode(data, ALAW_DECODE)
