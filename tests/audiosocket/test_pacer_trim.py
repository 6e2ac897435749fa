"""The native pacer gives back what a burst made its inbound buffers grow (``Pacer.trim``), and reads on
correctly afterwards.

A loop that falls behind lets up to ``inbound_max`` frames per call pile up between drains; the thread's
double buffers used to keep that size for good (20 MB after a wave of 400 calls had ended). These run the
real thread over a socket pair and check what ``trim`` frees and what is delivered, never how fast.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ivr.audiosocket.native import native_available
from ivr.audiosocket.protocol import encode_audio

from ..services import unavailable

RATE = 16000
FRAME = 640
BURST = 600  # frames read while nobody drains: ~390 KB, over the 256 KiB trim() leaves alone


@pytest.fixture
def pacer() -> Iterator[Any]:
    if not native_available():
        unavailable(
            "native pacer (ivr.audiosocket._pacer)",
            "pip install -e . with gcc and the Python headers (apt-get install gcc python3-dev)",
        )
    from ivr.audiosocket import _pacer  # type: ignore[attr-defined]

    c = _pacer.Pacer(inbound_max=BURST + 100)
    yield c
    c.close()


class Call:
    """One watched session: the peer writes numbered frames, the test drains when it chooses."""

    def __init__(self, c: Any) -> None:
        self.c = c
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.sid = c.open(self.ours.fileno(), FRAME, 0x12)
        c.expect(self.sid, 0x12, FRAME)
        assert c.watch(self.sid)
        self.heard: list[int] = []
        self.sent = 0

    def send(self, frames: int) -> None:
        """``frames`` numbered frames, and wait until the thread has read them (not drained)."""
        before = self.c.clock_stats()[6]
        for _ in range(frames):
            self.sent += 1
            self.theirs.sendall(encode_audio(struct.pack("<h", self.sent) * (FRAME // 2), RATE))
        deadline = time.monotonic() + 10
        while self.c.clock_stats()[6] < before + frames:
            assert time.monotonic() < deadline, "the thread did not read the frames"
            time.sleep(0.005)

    def drain(self) -> None:
        select.select([self.c.fileno()], [], [], 0.05)
        self.c.drain()
        self.c.deliver(self._frame, lambda sid, exc: pytest.fail(f"{sid}: {exc!r}"))

    def _frame(self, sid: int, kind: int, data: object, level: float) -> None:
        assert sid == self.sid
        assert isinstance(data, bytes)
        (n,) = struct.unpack_from("<h", data)
        assert data == struct.pack("<h", n) * (FRAME // 2), "a frame arrived whole"
        self.heard.append(n)

    def close(self) -> None:
        self.c.close_session(self.sid)
        self.ours.close()
        self.theirs.close()


def test_a_burst_is_kept_while_it_is_recent_and_given_back_once_the_load_is_steady(pacer: Any) -> None:
    call = Call(pacer)
    try:
        call.send(BURST)  # the loop stalled: the burst piles up in the thread's set
        call.drain()
        assert pacer.trim() == 0, "the largest drain since the last trim is the burst: room for it is kept"
        for _ in range(3):  # a steady load: a few frames a drain
            call.send(5)
            call.drain()
        freed = pacer.trim()
        assert freed >= BURST * (3 + FRAME) // 2, (
            f"the burst's buffer was cut down to the steady load ({freed})"
        )
        assert pacer.trim() == 0, "nothing more to give back"
        call.send(BURST)  # a second burst after the cut: the buffers grow again, nothing is lost
        call.drain()
        call.drain()
        assert call.heard == list(range(1, call.sent + 1))
    finally:
        call.close()


def test_with_no_session_open_the_buffers_are_freed_and_the_next_call_reads_as_the_first(pacer: Any) -> None:
    first = Call(pacer)
    first.send(BURST)
    first.drain()
    first.drain()
    assert first.heard == list(range(1, BURST + 1))
    first.close()
    assert pacer.trim() >= BURST * (3 + FRAME), "the burst's buffer is freed once no call is open"
    second = Call(pacer)
    try:
        second.send(BURST)
        second.drain()
        second.drain()
        assert second.heard == list(range(1, BURST + 1))
    finally:
        second.close()
