"""A fake OpenAI API on aiohttp for driving the real ``AsyncOpenAI`` client in tests.

Endpoints: ``POST /v1/audio/speech`` (raw PCM streamed in uneven chunks),
``POST /v1/audio/transcriptions`` (multipart upload; JSON or SSE answers) and the
Realtime WebSocket at ``GET /v1/realtime``. Each HTTP endpoint plays a queue of
scripted answers (``FakeOpenAI.speech`` / ``.transcriptions``), falling back to a
default success, and records what it received so tests can check the requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from ivr.media.g711 import ulaw_encode

API_KEY = "sk-test-fake-key-0123456789abcdef"


def tone_pcm(secs: float, rate: int, freq: float = 440.0, level: float = 8000.0) -> bytes:
    """A sine tone as s16le mono bytes."""
    t = np.arange(round(secs * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * level).astype("<i2").tobytes()


@dataclass
class Fail:
    """Answer with an HTTP error."""

    status: int
    code: str | None = None
    message: str = "fake failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Audio:
    """Stream PCM in chunks of the given sizes (cycled); optionally cut the connection after N bytes."""

    pcm: bytes
    chunks: tuple[int, ...] = (1000, 333, 4801, 7, 2048)
    cut_after: int | None = None
    content_type: str = "application/octet-stream"
    gap: float = 0.0
    first_delay: float = 0.0


@dataclass
class Text:
    """A transcription answer: JSON (``sse=False``) or SSE deltas, with or without ``done``."""

    text: str
    sse: bool = True
    send_done: bool = True
    cut_after_deltas: int | None = None
    logprobs: list[float] | None = None


@dataclass
class Hang:
    """Accept the request and never answer (until the client gives up)."""


@dataclass
class Body:
    """Answer 200 with any body and content type (a captive portal's HTML page, an empty stream)."""

    body: bytes
    content_type: str = "text/html"


Action = Fail | Audio | Text | Hang | Body


@dataclass
class Recorded:
    path: str
    auth: str | None
    fields: dict[str, Any]
    file: tuple[str, str, bytes] | None = None


@dataclass
class RealtimeScript:
    """How the fake Realtime server behaves."""

    transcript: str = "hello world"
    audio_secs: float = 0.5
    delta_count: int = 5
    error_before_audio: dict[str, Any] | None = None
    close_after_deltas: int | None = None
    handshake_failures: list[Fail] = field(default_factory=list)
    close_after_appends: int | None = None
    refuse_session: dict[str, Any] | None = None
    hang: bool = False
    """Accept prompts and commits but never answer them (until the client gives up)."""
    garbage_audio: bool = False
    """Answer prompts with audio deltas that are not base64."""


class FakeOpenAI:
    def __init__(self) -> None:
        self.speech: deque[Action] = deque()
        self.transcriptions: deque[Action] = deque()
        self.requests: list[Recorded] = []
        self.realtime = RealtimeScript()
        self.ws_events: list[dict[str, Any]] = []
        self.ws_connections = 0
        self.ws_audio = bytearray()
        self.default_speech = Audio(tone_pcm(1.0, 24000))
        self.speech_finished = 0  # speech responses streamed to the end
        self._ws_tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_get("/v1/realtime", self._realtime)
        return app

    # -- HTTP ---------------------------------------------------------------------

    @staticmethod
    async def _fail(action: Fail) -> web.Response:
        if action.delay:
            await asyncio.sleep(action.delay)
        body: dict[str, Any] = {
            "error": {"message": action.message, "type": action.code, "code": action.code}
        }
        return web.json_response(body, status=action.status, headers=action.headers)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        data = await request.json()
        self.requests.append(Recorded("speech", request.headers.get("Authorization"), data))
        action = self.speech.popleft() if self.speech else self.default_speech
        if isinstance(action, Fail):
            return await self._fail(action)
        if isinstance(action, Hang):
            await asyncio.sleep(3600)
        if isinstance(action, Body):
            return web.Response(body=action.body, headers={"Content-Type": action.content_type})
        assert isinstance(action, Audio)
        resp = web.StreamResponse(headers={"Content-Type": action.content_type})
        await resp.prepare(request)
        if action.first_delay:
            await asyncio.sleep(action.first_delay)
        sent = 0
        i = 0
        pcm = action.pcm
        while sent < len(pcm):
            size = action.chunks[i % len(action.chunks)]
            i += 1
            chunk = pcm[sent : sent + size]
            if action.cut_after is not None and sent + len(chunk) > action.cut_after:
                await resp.write(chunk[: max(0, action.cut_after - sent)])
                assert request.transport is not None
                request.transport.close()  # mid-stream break: no terminating chunk
                return resp
            await resp.write(chunk)
            sent += len(chunk)
            if action.gap:
                await asyncio.sleep(action.gap)
        await resp.write_eof()
        self.speech_finished += 1
        return resp

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fields: dict[str, Any] = {}
        upload: tuple[str, str, bytes] | None = None
        for key, value in form.items():
            if isinstance(value, web.FileField):
                upload = (value.filename, value.content_type, value.file.read())
            else:
                fields.setdefault(key, []).append(value)
        flat = {k: (v[0] if len(v) == 1 and not k.endswith("[]") else v) for k, v in fields.items()}
        self.requests.append(Recorded("transcriptions", request.headers.get("Authorization"), flat, upload))
        action = self.transcriptions.popleft() if self.transcriptions else Text("hello world")
        if isinstance(action, Fail):
            return await self._fail(action)
        if isinstance(action, Hang):
            await asyncio.sleep(3600)
        if isinstance(action, Body):
            return web.Response(body=action.body, headers={"Content-Type": action.content_type})
        assert isinstance(action, Text)
        lps = [{"token": "x", "logprob": lp} for lp in action.logprobs] if action.logprobs else None
        wants_stream = flat.get("stream") == "true"
        if not (action.sse and wants_stream):
            body: dict[str, Any] = {"text": action.text}
            if lps:
                body["logprobs"] = lps
            return web.json_response(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = action.text.split(" ")
        for n, word in enumerate(words):
            if action.cut_after_deltas is not None and n >= action.cut_after_deltas:
                assert request.transport is not None
                request.transport.close()
                return resp
            delta = word if n == 0 else " " + word
            event = {"type": "transcript.text.delta", "delta": delta}
            await resp.write(f"event: transcript.text.delta\ndata: {json.dumps(event)}\n\n".encode())
        if action.send_done:
            done: dict[str, Any] = {"type": "transcript.text.done", "text": action.text}
            if lps:
                done["logprobs"] = lps
            await resp.write(f"event: transcript.text.done\ndata: {json.dumps(done)}\n\n".encode())
        await resp.write_eof()
        return resp

    # -- Realtime -----------------------------------------------------------------

    async def _realtime(self, request: web.Request) -> web.StreamResponse:
        if self.realtime.handshake_failures:
            self.requests.append(
                Recorded("realtime", request.headers.get("Authorization"), dict(request.query))
            )
            return await self._fail(self.realtime.handshake_failures.pop(0))
        self.ws_connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.requests.append(Recorded("realtime", request.headers.get("Authorization"), dict(request.query)))
        session: dict[str, Any] = {"type": "realtime", "model": request.query.get("model")}
        audio = bytearray()
        counter = 0

        def eid() -> str:
            nonlocal counter
            counter += 1
            return f"evt_{counter}"

        async def send(event: dict[str, Any]) -> None:
            event.setdefault("event_id", eid())
            await ws.send_str(json.dumps(event))

        await send({"type": "session.created", "session": session})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            self.ws_events.append(event)
            kind = event.get("type")
            if kind == "session.update" and self.realtime.refuse_session is not None:
                err = {**self.realtime.refuse_session, "event_id": event.get("event_id")}
                await send({"type": "error", "error": err})
            elif kind == "session.update":
                _merge(session, event["session"])
                await send({"type": "session.updated", "session": session})
            elif kind == "input_audio_buffer.append":
                audio += base64.b64decode(event["audio"])
                appends = len([e for e in self.ws_events if e.get("type") == "input_audio_buffer.append"])
                if (
                    self.realtime.close_after_appends is not None
                    and appends >= self.realtime.close_after_appends
                ):
                    self.realtime.close_after_appends = None
                    await ws.close()
                    return ws
            elif kind == "input_audio_buffer.clear":
                audio.clear()
                await send({"type": "input_audio_buffer.cleared"})
            elif kind == "input_audio_buffer.commit" and self.realtime.hang:
                audio.clear()
            elif kind == "input_audio_buffer.commit":
                self.ws_audio = bytearray(audio)
                audio.clear()
                item = f"item_{counter}"
                await send(
                    {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None}
                )
                words = self.realtime.transcript.split(" ")
                for n, word in enumerate(words):
                    delta = word if n == 0 else " " + word
                    await send(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": item,
                            "content_index": 0,
                            "delta": delta,
                        }
                    )
                await send(
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item,
                        "content_index": 0,
                        "transcript": self.realtime.transcript,
                        "usage": {"type": "duration", "seconds": 1.0},
                    }
                )
            elif kind == "conversation.item.delete":
                await send({"type": "conversation.item.deleted", "item_id": event.get("item_id")})
            elif kind == "response.cancel" or (kind == "response.create" and self.realtime.hang):
                pass  # a hanging server never answers a prompt
            elif kind == "response.create":
                script = self.realtime
                resp_id = f"resp_{counter}"
                await send({"type": "response.created", "response": {"id": resp_id, "status": "in_progress"}})
                if script.error_before_audio is not None:
                    err = dict(script.error_before_audio)
                    err.setdefault("event_id", event.get("event_id"))
                    await send({"type": "error", "error": err})
                    script.error_before_audio = None
                    continue
                fmt = session.get("audio", {}).get("output", {}).get("format", {}).get("type", "audio/pcm")
                if fmt == "audio/pcmu":
                    payload = ulaw_encode(tone_pcm(script.audio_secs, 8000))
                else:
                    payload = tone_pcm(script.audio_secs, 24000)
                n = script.delta_count
                step = -(-len(payload) // n)
                for i in range(n):
                    if script.close_after_deltas is not None and i >= script.close_after_deltas:
                        await ws.close()
                        return ws
                    part = payload[i * step : (i + 1) * step]
                    delta = "%%not base64%%" if script.garbage_audio else base64.b64encode(part).decode()
                    await send(
                        {
                            "type": "response.output_audio.delta",
                            "response_id": resp_id,
                            "item_id": "item_out",
                            "output_index": 0,
                            "content_index": 0,
                            "delta": delta,
                        }
                    )
                await send({"type": "response.output_audio.done", "response_id": resp_id})
                await send({"type": "response.done", "response": {"id": resp_id, "status": "completed"}})
        return ws


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
