"""One prompt on a WebSocket media session: cut into Asterisk's frames, finished by Asterisk's mark.

Whole prompts (bytes) are sliced lazily, zero-copy; a streaming source (a TTS response) is read by one
task per prompt into a bounded buffer, so a slow consumer (Asterisk said XOFF) holds the producer back
instead of growing memory. The last partial frame is padded with silence: Asterisk 22.9+ drops a partial
tail instead of padding it. The session decides *when* frames go out; this class only knows *what*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable

from ivr.transport import PcmSource, PlayoutResult, PlayoutState

log = logging.getLogger(__name__)


class WebSocketPlayout:
    """:class:`ivr.transport.Playout` for WebSocket media; made by ``WebSocketMediaSession.play``."""

    __slots__ = (
        "_buf",
        "_data",
        "_done",
        "_ended",
        "_error",
        "_frame_size",
        "_max_buffer",
        "_pos",
        "_reader",
        "_space",
        "_wake",
        "announced",
        "first_frame_at",
        "frames",
        "state",
    )

    def __init__(
        self,
        source: PcmSource,
        *,
        frame_size: int,
        wake: Callable[[], None],
        max_buffer: int,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._frame_size = frame_size
        self._wake = wake
        self._max_buffer = max(max_buffer, 2 * frame_size)
        self._done: asyncio.Future[PlayoutResult] = loop.create_future()
        self._error: BaseException | None = None
        self._data: memoryview | None = None
        self._pos = 0
        self._buf = bytearray()
        self._ended = False
        self._space: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        self.state = PlayoutState.QUEUED
        self.frames = 0
        """Frames of this prompt handed to Asterisk's queue (the padded last one included)."""
        self.first_frame_at: float | None = None
        self.announced = False
        """The session has placed the mark that tells when this prompt starts to play."""
        if isinstance(source, bytes | bytearray | memoryview):
            self._data = memoryview(source if isinstance(source, bytes) else bytes(source)).cast("B")
            self._ended = True
        else:
            self._space = asyncio.Event()
            self._space.set()
            self._reader = loop.create_task(self._read(source), name="ivr-ws-playout-reader")

    def __repr__(self) -> str:
        return f"<WebSocketPlayout {self.state.value} frames={self.frames}>"

    @property
    def done(self) -> bool:
        return self._done.done()

    async def wait(self) -> PlayoutResult:
        """Until Asterisk reported the end mark played, or the prompt was cleared or failed."""
        return await asyncio.shield(self._done)

    # -- used by the session ----------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """Every frame has been taken and the source is over."""
        if not self._ended:
            return False
        if self._data is not None:
            return self._pos >= len(self._data)
        return not self._buf

    def take(self, max_frames: int) -> tuple[bytes | memoryview, int]:
        """Up to ``max_frames`` whole frames ready now (as one message), and how many that is."""
        size = self._frame_size
        data = self._data
        if data is not None:
            pos = self._pos
            remaining = len(data) - pos
            if remaining <= 0:
                return b"", 0
            count = min(max_frames, -(-remaining // size))
            end = pos + count * size
            self._pos = end
            if end > len(data):
                return bytes(data[pos:]) + bytes(end - len(data)), count
            return data[pos:end], count
        buf = self._buf
        whole = len(buf) // size
        if whole == 0:
            if not self._ended or not buf:
                return b"", 0
            chunk = bytes(buf) + bytes(size - len(buf))
            buf.clear()
            return chunk, 1
        count = min(max_frames, whole)
        cut = count * size
        chunk = bytes(buf[:cut])
        del buf[:cut]
        space = self._space
        if space is not None and not space.is_set() and len(buf) < self._max_buffer // 2:
            space.set()
        return chunk, count

    def started(self, at: float) -> None:
        """Asterisk reached this prompt in its queue (the mark before its first frame was processed)."""
        if not self._done.done() and self.first_frame_at is None:
            self.first_frame_at = at
            self.state = PlayoutState.PLAYING

    def finish(self, state: PlayoutState, error: BaseException | None = None) -> bool:
        """Settle the result once; False if it was already settled."""
        if self._done.done():
            return False
        if state is PlayoutState.COMPLETED and self._error is not None:
            state = PlayoutState.FAILED
        self.state = state
        self._done.set_result(PlayoutResult(state, self.frames, 0, error or self._error))
        self._buf.clear()
        reader = self._reader
        if reader is not None and not reader.done():
            reader.cancel()
        return True

    async def _read(self, source: AsyncIterable[bytes]) -> None:
        space = self._space
        assert space is not None
        try:
            async for chunk in source:
                if self._done.done():
                    return
                self._buf += chunk
                if len(self._buf) >= self._frame_size:
                    self._wake()
                if len(self._buf) >= self._max_buffer:
                    space.clear()
                    await space.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the source (a TTS stream) broke: play what came, then report it
            self._error = exc
        finally:
            self._ended = True
            self._wake()
            if self._done.done():
                await _aclose(source)


async def _aclose(source: AsyncIterable[bytes]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # closing a broken stream must not mask why it ended
            await aclose()
