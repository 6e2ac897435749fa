"""The events WebSockets of the simulated Asterisk: one connection per application name, newest wins.

A second connection for an application gets the name; the older one receives ``ApplicationReplaced`` and
is closed. Each connection has an ordered send queue drained by its own writer task, so emitting an
event never blocks the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from ivr.sim.ari_state import ari_now

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class _Connection:
    """One events WebSocket with its ordered send queue."""

    def __init__(self, apps: tuple[str, ...], ws: web.WebSocketResponse, request: web.Request) -> None:
        self.apps = apps
        self.ws = ws
        self.request = request
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.frozen = False
        self.closed = False
        self.writer: asyncio.Task[None] | None = None

    def send(self, event: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(event)

    def finish(self) -> None:
        """No more events: the writer ends after flushing what is queued."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class EventSockets:
    """Registry of the connected applications and their WebSockets."""

    def __init__(self, asterisk_id: str, spawn: Spawn, on_change: Callable[[], None]) -> None:
        self.asterisk_id = asterisk_id
        self._spawn = spawn
        self._on_change = on_change
        self._apps: dict[str, _Connection] = {}
        self._conns: set[_Connection] = set()

    @property
    def apps(self) -> set[str]:
        """Application names with a connected events WebSocket."""
        return set(self._apps)

    def send(self, app: str, event: dict[str, Any]) -> bool:
        """Queue ``event`` for ``app``; False when nobody listens (Asterisk drops it)."""
        conn = self._apps.get(app)
        if conn is None:
            return False
        conn.send(event)
        return True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /ari/events?app=NAME[,NAME]``: serve one events WebSocket until it closes."""
        apps = tuple(a for a in request.query.get("app", "").split(",") if a)
        if not apps:
            return web.json_response({"message": "Missing application name"}, status=400)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(apps, ws, request)
        self._conns.add(conn)
        for app in apps:
            old = self._apps.get(app)
            self._apps[app] = conn
            if old is not None and old is not conn:
                old.send(
                    {
                        "type": "ApplicationReplaced",
                        "timestamp": ari_now(),
                        "asterisk_id": self.asterisk_id,
                        "application": app,
                    }
                )
                self._spawn(self._close(old), f"replace-{app}")
        conn.writer = self._spawn(self._write(conn), f"ws-writer-{apps[0]}")
        self._on_change()
        try:
            async for msg in ws:
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._forget(conn)
            conn.finish()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.writer
            self._on_change()
        return ws

    async def kill(self, *, abort: bool = False) -> None:
        """Drop every connection (as an Asterisk restart would); ``abort`` resets the TCP connections."""
        for conn in list(self._conns):
            if abort:
                conn.abort()
            await self._close(conn)

    def freeze(self) -> None:
        """Make every connection a dead peer: nothing is read (so no pongs) and nothing is sent."""
        for conn in self._conns:
            conn.frozen = True
            transport = conn.request.transport
            if transport is not None:
                transport.pause_reading()

    def _forget(self, conn: _Connection) -> None:
        for app in conn.apps:
            if self._apps.get(app) is conn:
                del self._apps[app]
        self._conns.discard(conn)

    async def _close(self, conn: _Connection) -> None:
        self._forget(conn)
        conn.finish()
        if conn.frozen:
            conn.abort()
        elif conn.writer is not None and conn.writer is not asyncio.current_task():
            # Let the writer flush what was queued (e.g. ApplicationReplaced) before closing.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.writer), timeout=1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(), timeout=1.0)
        self._on_change()

    @staticmethod
    async def _write(conn: _Connection) -> None:
        while True:
            event = await conn.queue.get()
            if event is None:
                return
            if conn.frozen:
                continue
            try:
                await conn.ws.send_str(json.dumps(event))
            except (ConnectionError, RuntimeError):
                return
            if event["type"] == "ApplicationReplaced":
                return
