"""chan_websocket's outbound frame queue as a model: what Asterisk does with what the app sends.

The rules are those of ``channels/chan_websocket.c`` in 22.10.1 (``process_binary_message``,
``queue_frame_from_buffer``, ``dequeue_frame``, ``handle_command``) and the real-Asterisk tests check the
same behaviour end to end: a binary message is cut into ``frame_size`` frames (a partial tail is
dropped) and dropped *whole* if it arrives while 1,000 frames are queued; XOFF is sent when queueing
reaches 900, XON by the timer once fewer than 800 remain; a mark is answered by the tick that reaches
it, before that tick's audio frame; FLUSH_MEDIA drops audio and marks alike. Media buffering is not
modelled (the session never asks for it).

The model is pure (no I/O, no clock): tests tick it by hand, the simulated Asterisk
(:mod:`ivr.sim.ws_media`) and ``ivr bench`` tick it from a 20 ms frame clock.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ivr.websocket.protocol import (
    MAX_COMMAND_BYTES,
    QUEUE_MAX,
    XOFF_LEVEL,
    XON_LEVEL,
    ControlForm,
    DtmfEnd,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    ProtocolError,
    QueueDrained,
    Status,
    decode_command,
    encode_event,
)


class ChanWebsocketModel:
    """One chan_websocket channel's outbound side: a queue filled by the app, emptied one frame per tick."""

    def __init__(
        self,
        *,
        frame_size: int = 640,
        form: ControlForm = ControlForm.PLAIN,
        channel_id: str = "media-1",
        fmt: str = "slin16",
        connection_id: str = "c0ffee",
        channel: str = "WebSocket/INCOMING/0x1",
    ) -> None:
        self.frame_size = frame_size
        self.form = form
        self.channel_id = channel_id
        self.format = fmt
        self.connection_id = connection_id
        self.channel = channel
        self.queue: deque[bytes | str] = deque()
        self.queue_length = 0
        self.queue_full = False
        self.paused = False
        self.report_drained = False
        self.answers_marks = True
        """False plays an Asterisk before 22.8, which ignores MARK_MEDIA as an unknown command."""
        self.dropped_messages = 0
        self.played: list[bytes] = []
        self.commands: list[str] = []
        self.hangup_requested = False
        self.max_queue_length = 0
        self.xoff_sent = 0
        self.ignored_commands = 0
        """Commands Asterisk would ignore with a log line (too long, unknown)."""

    def media_start(self) -> str:
        start = MediaStart(
            self.connection_id, self.channel, self.channel_id, self.format, self.frame_size, 20
        )
        return encode_event(start, self.form)

    def receive_binary(self, data: bytes) -> list[str]:
        if self.queue_length >= QUEUE_MAX:
            self.dropped_messages += 1
            return []
        out = []
        size = self.frame_size
        for pos in range(0, len(data) - size + 1, size):
            self.queue.append(bytes(data[pos : pos + size]))
            self.queue_length += 1
            if not self.queue_full and self.queue_length >= XOFF_LEVEL:
                self.queue_full = True
                self.xoff_sent += 1
                out.append(self._event(MediaXoff(self.channel_id)))
        self.max_queue_length = max(self.max_queue_length, self.queue_length)
        return out

    def receive_text(self, text: str) -> list[str]:
        self.commands.append(text)
        if len(text.encode()) > MAX_COMMAND_BYTES:
            self.ignored_commands += 1
            return []
        try:
            command = decode_command(text)
        except ProtocolError:
            self.ignored_commands += 1
            return []  # Asterisk logs "command unknown" and does nothing
        verb = command.verb
        if verb == "MARK_MEDIA" and self.answers_marks:
            self.queue.append(self._event(MediaMarkProcessed(command.argument or "", self.channel_id)))
        elif verb == "FLUSH_MEDIA":
            self.queue.clear()
            self.queue_length = 0
        elif verb == "GET_STATUS":
            status = Status(
                self.queue_length, XON_LEVEL, XOFF_LEVEL, self.queue_full, False, self.paused, self.channel_id
            )
            return [self._event(status)]
        elif verb == "HANGUP":
            self.hangup_requested = True
        elif verb == "PAUSE_MEDIA":
            self.paused = True
        elif verb == "CONTINUE_MEDIA":
            self.paused = False
        elif verb == "REPORT_QUEUE_DRAINED":
            self.report_drained = True
        return []

    def tick(self) -> tuple[bytes | None, list[str]]:
        """One 20 ms timer tick: the frame played (None: nothing) and the events it sent."""
        out: list[str] = []
        if self.paused:
            return None, out
        if self.queue_full and self.queue_length < XON_LEVEL:
            self.queue_full = False
            out.append(self._event(MediaXon(self.channel_id)))
        if not self.queue:
            if self.report_drained:
                self.report_drained = False
                out.append(self._event(QueueDrained(self.channel_id)))
            return None, out
        while self.queue and isinstance(self.queue[0], str):
            out.append(str(self.queue.popleft()))
        if not self.queue:
            return None, out
        frame = self.queue.popleft()
        assert isinstance(frame, bytes)
        self.queue_length -= 1
        self.played.append(frame)
        return frame, out

    def dtmf(self, digit: str) -> str:
        return self._event(DtmfEnd(digit, self.channel_id))

    def _event(self, event: Any) -> str:
        return encode_event(event, self.form)
