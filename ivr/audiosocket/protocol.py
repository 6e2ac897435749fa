"""AudioSocket wire codec: pure functions and an incremental decoder, no I/O.

Every message is ``kind (1 byte) + payload length (uint16, big-endian) + payload``. Asterisk adds kinds
over time, so an unknown kind decodes to :class:`Unknown` instead of failing; the session decides what to
do with it. Malformed messages of a known kind raise :class:`ProtocolError`, which names the kind, the
length and the stream offset of the offending header so one log line is enough to diagnose a peer.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

HEADER_SIZE: Final = 3
MAX_WIRE_PAYLOAD: Final = 0xFFFF
DEFAULT_MAX_PAYLOAD: Final = 16384
"""Largest inbound payload accepted by default: 20 ms at 192 kHz is 7,680 bytes, so this leaves room
for 40 ms frames at any rate while refusing nonsense lengths early."""

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class Kind(IntEnum):
    """Message kinds of the AudioSocket protocol."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN_8K = 0x10
    SLIN_12K = 0x11
    SLIN_16K = 0x12
    SLIN_24K = 0x13
    SLIN_32K = 0x14
    SLIN_44K = 0x15
    SLIN_48K = 0x16
    SLIN_96K = 0x17
    SLIN_192K = 0x18
    ERROR = 0xFF


class ErrorCode(IntEnum):
    """Codes an error message may carry (Asterisk 22 sends none, but the protocol defines them)."""

    NONE = 0x00
    HANGUP = 0x01
    FRAME_FORWARDING = 0x02
    MEMORY = 0x04


AUDIO_RATES: Final[dict[int, int]] = {
    Kind.SLIN_8K: 8000,
    Kind.SLIN_12K: 12000,
    Kind.SLIN_16K: 16000,
    Kind.SLIN_24K: 24000,
    Kind.SLIN_32K: 32000,
    Kind.SLIN_44K: 44100,
    Kind.SLIN_48K: 48000,
    Kind.SLIN_96K: 96000,
    Kind.SLIN_192K: 192000,
}
RATE_KINDS: Final[dict[int, int]] = {rate: kind for kind, rate in AUDIO_RATES.items()}

FORMAT_RATES: Final[dict[str, int]] = {
    "slin": 8000,
    "slin12": 12000,
    "slin16": 16000,
    "slin24": 24000,
    "slin32": 32000,
    "slin44": 44100,
    "slin48": 48000,
    "slin96": 96000,
    "slin192": 192000,
}
"""Asterisk format names (the ``format`` of ``externalMedia``) and the sample rate each carries."""


class ProtocolError(ValueError):
    """A message that breaks the protocol; the session that sent it is closed."""

    def __init__(self, message: str, *, kind: int, length: int, offset: int) -> None:
        super().__init__(f"{message} (kind=0x{kind:02x}, length={length}, offset={offset})")
        self.kind = kind
        self.length = length
        self.offset = offset
        self.frames: list[Frame] = []
        """Good frames decoded from the same input before the bad one, so none of them is lost."""


@dataclass(frozen=True, slots=True)
class Hangup:
    """The peer hangs up (Asterisk itself never sends this: it closes the socket)."""


@dataclass(frozen=True, slots=True)
class Uuid:
    """The call identifier, always the first message of a connection."""

    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class Dtmf:
    """One DTMF digit, sent by Asterisk when the digit ends."""

    digit: str


@dataclass(frozen=True, slots=True)
class Audio:
    """Signed 16-bit little-endian mono PCM at ``rate``.

    ``payload`` is a memoryview into the bytes given to :meth:`FrameDecoder.feed` when the message lay
    whole inside them (no copy), else ``bytes``. Copy it with ``bytes()`` to keep it past the buffer's life.
    """

    rate: int
    payload: bytes | memoryview


@dataclass(frozen=True, slots=True)
class Error:
    """An error message; ``code`` is None when the payload is empty."""

    code: int | None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a kind this codec does not know; kept so the session can log it once."""

    kind: int
    payload: bytes | memoryview


Frame = Hangup | Uuid | Dtmf | Audio | Error | Unknown

_HEADER = struct.Struct(">BH")
HANGUP_MESSAGE: Final = _HEADER.pack(Kind.HANGUP, 0)


def rate_for_format(fmt: str) -> int:
    """Sample rate of an Asterisk ``slin*`` format name; other formats are refused on purpose."""
    try:
        return FORMAT_RATES[fmt]
    except KeyError:
        allowed = ", ".join(FORMAT_RATES)
        raise ValueError(f"unsupported audio format {fmt!r}: AudioSocket needs one of {allowed}") from None


def frame_bytes(rate: int, ms: int = 20) -> int:
    """Bytes of ``ms`` milliseconds of 16-bit mono PCM at ``rate`` (320 for 20 ms at 8 kHz)."""
    return rate * ms // 1000 * 2


def audio_header(rate: int, length: int) -> bytes:
    """Header of an audio message; callers on the hot path compute it once per session."""
    kind = RATE_KINDS.get(rate)
    if kind is None:
        raise ValueError(f"no AudioSocket kind for sample rate {rate}")
    if not 0 < length <= MAX_WIRE_PAYLOAD:
        raise ValueError(f"audio payload length {length} outside 1..{MAX_WIRE_PAYLOAD}")
    return _HEADER.pack(kind, length)


def encode_audio(payload: bytes | bytearray | memoryview, rate: int) -> bytes:
    """An audio message. Empty audio is refused: a real Asterisk hangs up on zero-length messages."""
    return audio_header(rate, len(payload)) + payload


def encode_hangup() -> bytes:
    return HANGUP_MESSAGE


def encode_uuid(value: uuid.UUID) -> bytes:
    """The first message of a connection (sent by the Asterisk side; the app never sends it)."""
    return _HEADER.pack(Kind.UUID, 16) + value.bytes


def encode_dtmf(digit: str) -> bytes:
    """A DTMF message (sent by the Asterisk side; Asterisk hangs up if the app sends one)."""
    if digit not in DTMF_DIGITS or len(digit) != 1:
        raise ValueError(f"invalid DTMF digit {digit!r}: expected one of 0-9 * # A-D")
    return _HEADER.pack(Kind.DTMF, 1) + digit.encode("ascii")


def encode_error(code: int | None = None) -> bytes:
    if code is None:
        return _HEADER.pack(Kind.ERROR, 0)
    if not 0 <= code <= 0xFF:
        raise ValueError(f"error code {code} does not fit one byte")
    return _HEADER.pack(Kind.ERROR, 1) + bytes((code,))


def parse_payload(kind: int, payload: bytes | memoryview, offset: int = 0) -> Frame:
    """Turn one message's kind and payload into a typed frame, checking the payload's shape."""
    length = len(payload)
    rate = AUDIO_RATES.get(kind)
    if rate is not None:
        if length & 1:
            raise ProtocolError("odd-length audio payload", kind=kind, length=length, offset=offset)
        return Audio(rate, payload)
    if kind == Kind.DTMF:
        if length != 1:
            raise ProtocolError("DTMF payload must be one byte", kind=kind, length=length, offset=offset)
        digit = chr(payload[0])
        if digit not in DTMF_DIGITS:
            raise ProtocolError(
                f"invalid DTMF digit {digit!r}, expected 0-9 * # A-D", kind=kind, length=length, offset=offset
            )
        return Dtmf(digit)
    if kind == Kind.UUID:
        if length != 16:
            raise ProtocolError("UUID payload must be 16 bytes", kind=kind, length=length, offset=offset)
        return Uuid(uuid.UUID(bytes=bytes(payload)))
    if kind == Kind.HANGUP:
        return Hangup()
    if kind == Kind.ERROR:
        return Error(payload[0] if length else None)
    return Unknown(kind, payload)


class FrameDecoder:
    """Incremental decoder: feed bytes in any fragmentation, get every complete frame.

    Messages that lie whole inside one ``feed`` call are parsed straight from it (payloads are
    memoryviews, no copy); only a message split across calls is reassembled in an internal buffer.
    After a :class:`ProtocolError` the stream is out of sync and the decoder must not be fed again.
    """

    __slots__ = ("_buf", "_failed", "_offset", "max_payload")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if not 0 < max_payload <= MAX_WIRE_PAYLOAD:
            raise ValueError(f"max_payload must be within 1..{MAX_WIRE_PAYLOAD}")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._offset = 0  # stream offset of the first byte not yet consumed
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a message."""
        return len(self._buf)

    @property
    def offset(self) -> int:
        """Stream offset of the next message header."""
        return self._offset

    def skip(self, n: int) -> None:
        """The caller parsed ``n`` bytes of whole messages itself (a fast path for the common audio
        message); keeps the stream offset true for later errors. Only valid with nothing buffered."""
        if self._buf:
            raise RuntimeError("skip() with a partial message buffered")
        self._offset += n

    def take_buffered(self) -> bytes:
        """The start of a message received so far, now someone else's to complete (the native reading
        thread); the stream offset stays at that message's header, which the taker reports through
        :meth:`skip` or :meth:`feed` as for any other message."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if self._failed:
            raise RuntimeError("decoder used after a ProtocolError: the stream is out of sync")
        frames: list[Frame] = []
        try:
            if self._buf:
                buf = self._buf
                buf += data
                if len(buf) < HEADER_SIZE or len(buf) < HEADER_SIZE + ((buf[1] << 8) | buf[2]):
                    if len(buf) >= HEADER_SIZE:
                        self._check_length(buf[0], (buf[1] << 8) | buf[2])
                    return frames
                # Parse from an immutable copy so returned payloads never see the buffer change.
                used = self._parse(memoryview(bytes(buf)), frames)
                del buf[:used]
            else:
                view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
                used = self._parse(view, frames)
                if used < len(view):
                    self._buf += view[used:]
        except ProtocolError as exc:
            self._failed = True
            exc.frames = frames
            raise
        return frames

    def _check_length(self, kind: int, length: int) -> None:
        if length > self.max_payload:
            raise ProtocolError(
                f"payload larger than the {self.max_payload}-byte cap",
                kind=kind,
                length=length,
                offset=self._offset,
            )

    def _parse(self, view: memoryview, frames: list[Frame]) -> int:
        pos = 0
        end = len(view)
        cap = self.max_payload
        while end - pos >= HEADER_SIZE:
            kind = view[pos]
            length = (view[pos + 1] << 8) | view[pos + 2]
            if length > cap:
                self._check_length(kind, length)
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            frames.append(parse_payload(kind, view[pos + HEADER_SIZE : stop], self._offset))
            self._offset += HEADER_SIZE + length
            pos = stop
        return pos
