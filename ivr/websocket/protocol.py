"""chan_websocket's control wire (Asterisk 22.10.1) as a pure codec: text in, typed messages out.

Read from ``channels/chan_websocket.c`` of 22.10.1 and checked against the real one (``tests/websocket``).

Binary messages carry raw audio in the channel's format, both ways. Asterisk cuts what the app sends into
frames of ``optimal_frame_size`` bytes (a partial tail is dropped unless media buffering is on) and
plays one per 20 ms from a queue of at most ``QUEUE_MAX`` frames; a message that arrives while the queue
is full is dropped whole. Text messages carry control, in one of two forms per channel
(``chan_websocket.conf`` ``control_message_format``, or the ``f(json)`` dial option / externalMedia
``transport_data``); MEDIA_START's first byte tells which (``{`` is JSON).

Flow-control levels (frames of audio queued in Asterisk; marks and other controls do not count):

=========================  ======  =============================================================
``QUEUE_MAX``              1,000   a binary message arriving at this length is dropped, unannounced
``XOFF_LEVEL``               900   MEDIA_XOFF when queueing reaches it
``XON_LEVEL``                800   MEDIA_XON when the 20 ms timer finds the queue below it again
=========================  ======  =============================================================

Commands, app -> Asterisk. At most ``MAX_COMMAND_BYTES`` (128): Asterisk ignores a longer text with a
log line, and ignores an unknown command the same way. Plain form: ``VERB`` or ``VERB <argument>`` (the
argument is the rest of the line); JSON form: ``{"command": VERB, <argument key>: value}``.

=========================  =================  ==========  ==================================================
command                    argument           since       Asterisk's answer
=========================  =================  ==========  ==================================================
``ANSWER``                 -                  22.6.0      answers a channel dialled with ``n`` (no auto-answer)
``HANGUP``                 -                  22.6.0      hangs up, then closes the socket (1000)
``START_MEDIA_BUFFERING``  -                  22.6.0      keeps partial frames across messages
``STOP_MEDIA_BUFFERING``   ``correlation_id`` 22.6.0      MEDIA_BUFFERING_COMPLETED [id] when dequeued
``MARK_MEDIA``             ``correlation_id`` 22.8.0      MEDIA_MARK_PROCESSED [id] when the timer dequeues it,
                                                          i.e. once every frame queued before it was played
``FLUSH_MEDIA``            -                  22.6.0      drops the whole queue: audio *and* pending marks
``REPORT_QUEUE_DRAINED``   -                  22.6.0      QUEUE_DRAINED once, next time the queue is empty
``GET_STATUS``             -                  22.6.0      STATUS
``PAUSE_MEDIA``            -                  22.6.0      stops dequeuing (nothing is played)
``CONTINUE_MEDIA``         -                  22.6.0      resumes dequeuing
``SET_MEDIA_DIRECTION``    ``direction``      22.9.0      JSON form only (plain: ERROR); both | out | in
=========================  =================  ==========  ==================================================

Events, Asterisk -> app. Plain form: ``EVENT key:value key:value`` (``MEDIA_MARK_PROCESSED`` and
``MEDIA_BUFFERING_COMPLETED``: ``EVENT`` or ``EVENT <id>``); JSON form: ``{"event": EVENT,
"channel_id": ..., ...}`` with real integers and booleans. ``channel_id`` arrived in 22.7.0, the JSON form
in 22.8.0 (its MEDIA_START adds ``channel_variables``).

=============================  ===========================================================================
event                          fields
=============================  ===========================================================================
``MEDIA_START``                connection_id channel channel_id format optimal_frame_size ptime
                               [channel_variables]: always the first message
``MEDIA_XOFF`` / ``MEDIA_XON`` [channel_id]: stop / resume sending audio
``MEDIA_MARK_PROCESSED``       correlation_id
``MEDIA_BUFFERING_COMPLETED``  correlation_id
``QUEUE_DRAINED``              [channel_id]
``DTMF_END``                   digit channel_id: a key the far side pressed, once per key (22.6.0)
``STATUS``                     channel_id queue_length xon_level xoff_level queue_full bulk_media
                               media_paused
``ERROR``                      channel_id error_text (22.10.1 ends some texts with a newline)
=============================  ===========================================================================

Asterisk sends no HANGUP text: when its channel hangs up it closes the socket (code 1000 for a normal
hangup). An unknown event decodes to :class:`UnknownEvent` (Asterisk adds events over time); a known one
that is malformed raises :class:`ProtocolError` naming the event and the field.

The wire lives in three modules under this one: the vocabulary and limits of control texts
(``control_table``), the typed messages (``control_messages``) and the text codec (``control_codec``).
This module keeps the protocol's description, the binary side's levels and the import path, naming what
they export.
"""

from __future__ import annotations

from typing import Final

from ivr.websocket.control_codec import (
    ProtocolError,
    decode_command,
    decode_event,
    encode_command,
    encode_event,
)
from ivr.websocket.control_messages import (
    Command,
    DtmfEnd,
    ErrorEvent,
    Event,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    Status,
    UnknownEvent,
)
from ivr.websocket.control_table import (
    COMMANDS,
    DTMF_DIGITS,
    EVENTS,
    MAX_COMMAND_BYTES,
    MAX_EVENT_CHARS,
    MEDIA_DIRECTIONS,
    ControlForm,
    Field,
    Kind,
    Shape,
    Verb,
)

QUEUE_MAX: Final = 1000
XOFF_LEVEL: Final = 900
XON_LEVEL: Final = 800
MAX_BINARY_PAYLOAD: Final = 65535 - 14
"""Largest binary message Asterisk reads (its 64 KiB frame buffer, header included); it closes on more."""
SUBPROTOCOL: Final = "media"
"""The WebSocket subprotocol chan_websocket registers (``protocols = media`` in websocket_client.conf)."""

__all__ = [
    "COMMANDS",
    "DTMF_DIGITS",
    "EVENTS",
    "MAX_BINARY_PAYLOAD",
    "MAX_COMMAND_BYTES",
    "MAX_EVENT_CHARS",
    "MEDIA_DIRECTIONS",
    "QUEUE_MAX",
    "SUBPROTOCOL",
    "XOFF_LEVEL",
    "XON_LEVEL",
    "Command",
    "ControlForm",
    "DtmfEnd",
    "ErrorEvent",
    "Event",
    "Field",
    "Kind",
    "MediaBufferingCompleted",
    "MediaMarkProcessed",
    "MediaStart",
    "MediaXoff",
    "MediaXon",
    "ProtocolError",
    "QueueDrained",
    "Shape",
    "Status",
    "UnknownEvent",
    "Verb",
    "decode_command",
    "decode_event",
    "encode_command",
    "encode_event",
]
