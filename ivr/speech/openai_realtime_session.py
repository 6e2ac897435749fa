"""The OpenAI Realtime WebSocket of one call: connecting, and server events routed to the prompt or
transcription awaiting them. Wire format and views live apart; design: :mod:`ivr.speech.openai_realtime`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ivr.media.framing import BytesLike, frame_bytes
from ivr.speech.base import Transcript
from ivr.speech.errors import (
    BadResponseError,
    ProviderError,
    RequestRejectedError,
    StreamInterruptedError,
    TransientProviderError,
)
from ivr.speech.openai_client import OpenAIClientSource
from ivr.speech.openai_http import DEFAULT_TRANSCRIBE_MODEL, confidence_from_logprobs
from ivr.speech.openai_realtime_views import RealtimeSynthesizer, RealtimeTranscriber
from ivr.speech.openai_realtime_wire import (
    DEFAULT_REALTIME_MODEL,
    DEFAULT_REALTIME_VOICE,
    ENGINE,
    MIN_COMMIT_MS,
    READ_VERBATIM,
    REALTIME_PCM_RATE,
    _b64,
    _InputEncoder,
    _OutputDecoder,
    _realtime_error,
    prompt_message,
)
from ivr.speech.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry

log = logging.getLogger("ivr.speech.openai_realtime")  # the engine's log lines keep their logger's name


@dataclass(eq=False)
class _Pending:
    """One request waiting for server events routed to it."""

    queue: asyncio.Queue[dict[str, Any] | ProviderError] = field(default_factory=asyncio.Queue)
    key: str | None = None  # response id or item id, once known
    cancelled: bool = False


class RealtimeSession:
    """The Realtime WebSocket of one call (opened on first use, reopened if it died)."""

    engine = ENGINE

    def __init__(
        self,
        client: OpenAIClientSource,
        *,
        rate: int,
        model: str = DEFAULT_REALTIME_MODEL,
        voice: str = DEFAULT_REALTIME_VOICE,
        instructions: str | None = None,
        transcribe_model: str = DEFAULT_TRANSCRIBE_MODEL,
        language: str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        frame_bytes(rate)  # validates the rate
        self.client = client
        self.rate = rate
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.transcribe_model = transcribe_model
        self.language = language
        self.policy = policy
        self.g711 = rate == 8000
        self.audio_format: dict[str, Any] = (
            {"type": "audio/pcmu"} if self.g711 else {"type": "audio/pcm", "rate": REALTIME_PCM_RATE}
        )
        self._conn: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._speak_lock = asyncio.Lock()
        self._listen_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[None] | None = None
        self._ready_event: str | None = None
        self._responses: deque[_Pending] = deque()
        self._by_response: dict[str, _Pending] = {}
        self._commits: deque[_Pending] = deque()
        self._by_item: dict[str, _Pending] = {}
        self._by_event: dict[str, _Pending] = {}
        self._transcription: dict[str, Any] | None = None
        self._closed = False
        self.connections = 0
        self.transcriber = RealtimeTranscriber(self)
        self.synthesizer = RealtimeSynthesizer(self)

    # -- connection ----------------------------------------------------------------

    def _event_id(self) -> str:
        return f"ivr_{next(self._ids)}"

    def _session_config(self) -> dict[str, Any]:
        return {
            "type": "realtime",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": READ_VERBATIM,
            "audio": {
                "input": {
                    "format": self.audio_format,
                    "turn_detection": None,
                    "transcription": self._transcription_config((), None),
                },
                "output": {"format": self.audio_format, "voice": self.voice},
            },
        }

    def _transcription_config(self, hints: Sequence[str], language: str | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {"model": self.transcribe_model}
        lang = language or self.language
        if lang:
            cfg["language"] = lang
        clean = [h.strip() for h in hints if h.strip()]
        if clean:
            if self.transcribe_model.startswith("gpt-transcribe"):
                cfg["keywords"] = clean
            else:
                cfg["prompt"] = "Expected answers: " + "; ".join(clean)
        return cfg

    @property
    def connected(self) -> bool:
        """True when the socket is open, read, and the session configuration was acknowledged."""
        ready = self._ready
        return (
            self._conn is not None
            and self._reader is not None
            and not self._reader.done()
            and ready is not None
            and ready.done()
            and not ready.cancelled()
            and ready.exception() is None
        )

    async def _send(self, event: dict[str, Any]) -> str:
        conn = self._conn
        if conn is None:
            raise TransientProviderError("realtime connection is closed", engine=ENGINE)
        event_id = self._event_id()
        event["event_id"] = event_id
        await conn.send_raw(json.dumps(event))
        return event_id

    async def _ensure(self) -> None:
        """Connect and configure the session if needed (called inside the retry layer)."""
        if self._closed:
            raise RequestRejectedError("realtime session is closed", engine=ENGINE)
        async with self._connect_lock:
            if self.connected:
                return
            await self._drop_connection()
            client = self.client.get()
            # The SDK's own reconnects stay off (no on_reconnecting): the retry layer decides.
            conn = await client.realtime.connect(model=self.model).enter()
            self.connections += 1
            self._conn = conn
            self._ready = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(conn), name="ivr-realtime-reader")
            self._transcription = self._transcription_config((), None)
            self._ready_event = await self._send(
                {"type": "session.update", "session": self._session_config()}
            )
            await asyncio.shield(self._ready)

    async def _drop_connection(self) -> None:
        reader, self._reader = self._reader, None
        conn, self._conn = self._conn, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def aclose(self) -> None:
        """Close the WebSocket and stop the reader task. Idempotent."""
        self._closed = True
        await self._drop_connection()
        self._fail_all(StreamInterruptedError("realtime session closed", engine=ENGINE))

    async def __aenter__(self) -> RealtimeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reader --------------------------------------------------------------------

    async def _read(self, conn: Any) -> None:
        failure: ProviderError = TransientProviderError("realtime connection closed", engine=ENGINE)
        try:
            while True:
                raw = await conn.recv_bytes()
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("realtime: ignoring a non-JSON message (%d bytes)", len(raw))
                    continue
                if isinstance(event, dict):
                    await self._dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failure = TransientProviderError(f"realtime connection lost ({type(e).__name__})", engine=ENGINE)
        finally:
            if self._conn is conn:
                self._conn = None
            self._fail_all(failure)

    def _fail_all(self, error: ProviderError) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved here; _ensure re-raises through the shield
        pending = {*self._responses, *self._by_response.values(), *self._commits, *self._by_item.values()}
        for p in pending:
            p.queue.put_nowait(error)
        self._responses.clear()
        self._by_response.clear()
        self._commits.clear()
        self._by_item.clear()
        self._by_event.clear()

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        p: _Pending | None
        if kind == "session.updated":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif kind == "response.created":
            rid = str((event.get("response") or {}).get("id"))
            if self._responses:
                p = self._responses.popleft()
                p.key = rid
                self._by_response[rid] = p
                if p.cancelled:
                    with contextlib.suppress(Exception):
                        await self._send({"type": "response.cancel", "response_id": rid})
        elif kind in ("response.output_audio.delta", "response.output_audio.done"):
            p = self._by_response.get(str(event.get("response_id")))
            if p is not None and not p.cancelled:
                p.queue.put_nowait(event)
        elif kind == "response.done":
            rid = str((event.get("response") or {}).get("id"))
            p = self._by_response.pop(rid, None)
            if p is not None and not p.cancelled:
                p.queue.put_nowait(event)
        elif kind == "input_audio_buffer.committed":
            if self._commits:
                p = self._commits.popleft()
                item = str(event.get("item_id"))
                p.key = item
                self._by_item[item] = p
                p.queue.put_nowait(event)
        elif kind in (
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
            "conversation.item.input_audio_transcription.failed",
        ):
            item = str(event.get("item_id"))
            final = not kind.endswith(".delta")
            p = self._by_item.pop(item, None) if final else self._by_item.get(item)
            if p is not None and not p.cancelled:
                p.queue.put_nowait(event)
            if final:
                # Caller audio is not kept in the conversation once transcribed.
                with contextlib.suppress(Exception):
                    await self._send({"type": "conversation.item.delete", "item_id": item})
        elif kind == "error":
            error = event.get("error") or {}
            eid = error.get("event_id") if isinstance(error, dict) else None
            p = self._by_event.pop(str(eid), None) if eid else None
            ready = self._ready
            if eid and eid == self._ready_event and ready is not None and not ready.done():
                ready.set_exception(_realtime_error(error))  # the session configuration was refused
            elif p is not None:
                p.queue.put_nowait(_realtime_error(error))
            else:
                code = error.get("code") if isinstance(error, dict) else None
                log.warning("realtime: unattributed error event (code=%s)", code)

    # -- requests ------------------------------------------------------------------

    async def _next(self, p: _Pending, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            item = await p.queue.get()
        if isinstance(item, ProviderError):
            raise item
        return item

    def _abandon(self, p: _Pending) -> None:
        """Stop routing events to ``p``; its response (if any) is cancelled once it is known."""
        p.cancelled = True
        for k in [k for k, v in self._by_event.items() if v is p]:
            del self._by_event[k]

    async def speak(self, text: str, *, instructions: str | None = None) -> AsyncGenerator[bytes, None]:
        """Frames of ``text`` read verbatim, at the call rate."""
        async with self._speak_lock:
            p = _Pending()
            started = False
            finished = False
            decoder = _OutputDecoder(self.rate, self.g711)

            async def attempt(left: float) -> bytes:
                nonlocal p
                await self._ensure()
                p = _Pending()
                response: dict[str, Any] = {
                    "conversation": "none",
                    "output_modalities": ["audio"],
                    "instructions": self.reading_instructions(instructions),
                    "metadata": {"source": "ivr-prompt"},
                    "input": [
                        {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": prompt_message(text)}],
                        }
                    ],
                }
                self._responses.append(p)
                try:
                    eid = await self._send({"type": "response.create", "response": response})
                    self._by_event[eid] = p
                    while True:
                        event = await self._next(p, left)
                        if event.get("type") == "response.output_audio.delta":
                            self._by_event.pop(eid, None)
                            return _b64(event)
                        if event.get("type") == "response.done":
                            raise BadResponseError("the realtime response ended without audio", engine=ENGINE)
                except BaseException:
                    self._abandon(p)
                    raise

            try:
                first = await call_with_retry(
                    attempt, engine=ENGINE, policy=self.policy, what="realtime prompt"
                )
                started = True
                for frame in decoder.push(first):
                    yield frame
                while True:
                    try:
                        event = await self._next(p, self.policy.stall_timeout)
                    except TimeoutError:
                        raise StreamInterruptedError(
                            "realtime prompt stalled after audio started; not replayed", engine=ENGINE
                        ) from None
                    except ProviderError as e:
                        raise StreamInterruptedError(
                            f"realtime prompt broke after audio started ({e.detail}); not replayed",
                            engine=ENGINE,
                            code=e.code,
                        ) from None
                    kind = event.get("type")
                    if kind == "response.output_audio.delta":
                        for frame in decoder.push(_b64(event)):
                            yield frame
                    elif kind == "response.done":
                        status = (event.get("response") or {}).get("status")
                        if status not in (None, "completed"):
                            raise StreamInterruptedError(
                                f"realtime prompt ended with status {status!r}; not replayed", engine=ENGINE
                            )
                        break
                for frame in decoder.flush():
                    yield frame
                finished = True
            finally:
                if started and not finished:
                    self._abandon(p)
                    if p.key is not None and self.connected:
                        with contextlib.suppress(Exception):
                            await self._send({"type": "response.cancel", "response_id": p.key})

    def reading_instructions(self, instructions: str | None) -> str:
        """The model instructions of a prompt: fixed reading rules plus the operator's delivery notes."""
        delivery = instructions if instructions is not None else self.instructions
        if delivery and delivery.strip():
            return READ_VERBATIM + "\nDelivery (tone and pace only): " + " ".join(delivery.split())
        return READ_VERBATIM

    async def listen(
        self, frames: AsyncIterable[BytesLike], *, hints: Sequence[str] = (), language: str | None = None
    ) -> AsyncGenerator[Transcript, None]:
        """Stream caller audio as it comes; after the last frame, partial transcripts then the final."""
        async with self._listen_lock:
            encoder = _InputEncoder(self.rate, self.g711)
            sent: list[str] = []  # every encoded chunk, so a dropped connection can be replayed
            generation = -1
            config = self._transcription_config(hints, language)

            async def prepare() -> None:
                nonlocal generation
                await self._ensure()
                if config != self._transcription:
                    await self._send(
                        {
                            "type": "session.update",
                            "session": {"type": "realtime", "audio": {"input": {"transcription": config}}},
                        }
                    )
                    self._transcription = config
                await self._send({"type": "input_audio_buffer.clear"})
                generation = self.connections
                for chunk in sent:
                    await self._send({"type": "input_audio_buffer.append", "audio": chunk})

            await call_with_retry(
                lambda left: prepare(), engine=ENGINE, policy=self.policy, what="realtime listen"
            )
            lost = False  # an append failed: the whole utterance is replayed before the commit

            async def append(data: bytes) -> None:
                nonlocal lost
                if not data:
                    return
                chunk = base64.b64encode(data).decode("ascii")
                sent.append(chunk)
                if lost or not self.connected or generation != self.connections:
                    lost = True
                    return
                try:
                    await self._send({"type": "input_audio_buffer.append", "audio": chunk})
                except asyncio.CancelledError:
                    raise
                except Exception:
                    lost = True

            async for frame in frames:
                await append(encoder.push(frame))
            await append(encoder.flush())
            if encoder.ms < MIN_COMMIT_MS:
                yield Transcript("", None, True)
                return

            p = _Pending()

            async def commit(left: float) -> dict[str, Any]:
                nonlocal p, lost
                if lost or not self.connected or generation != self.connections:
                    await prepare()
                    lost = False
                p = _Pending()
                self._commits.append(p)
                try:
                    eid = await self._send({"type": "input_audio_buffer.commit"})
                    self._by_event[eid] = p
                    committed = await self._next(p, left)
                    assert committed.get("type") == "input_audio_buffer.committed"
                    first = await self._next(p, left)
                    self._by_event.pop(eid, None)
                    return first
                except BaseException:
                    self._abandon(p)
                    with contextlib.suppress(ValueError):
                        self._commits.remove(p)
                    raise

            event = await call_with_retry(
                commit, engine=ENGINE, policy=self.policy, what="realtime transcription"
            )
            parts: list[str] = []
            while True:
                kind = event.get("type")
                if kind == "conversation.item.input_audio_transcription.delta":
                    parts.append(str(event.get("delta") or ""))
                    yield Transcript("".join(parts).strip(), None, False)
                elif kind == "conversation.item.input_audio_transcription.completed":
                    text = event.get("transcript")
                    final = text if isinstance(text, str) else "".join(parts)
                    yield Transcript(final.strip(), confidence_from_logprobs(event.get("logprobs")), True)
                    return
                elif kind == "conversation.item.input_audio_transcription.failed":
                    raise _realtime_error(event.get("error"))
                try:
                    event = await self._next(p, self.policy.stall_timeout)
                except TimeoutError:
                    raise StreamInterruptedError("realtime transcription stalled", engine=ENGINE) from None
