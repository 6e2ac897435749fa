"""Per-call ARI mode of a serving process: the app without a REST client, and the per-call server.

No HTTP to Asterisk and no events socket: Asterisk connects to the :class:`PerCallServer` once for every
call, and each socket becomes one call (:func:`ivr.call.percall_calls.serve_connection`). Readiness is
"listening and not draining"; draining answers new sockets with 503 so that Asterisk retries, through a
load balancer on another instance. A call over ``IVR_MAX_CALLS`` is refused the same way (503) rather
than answered with congestion: another instance may have room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol

from ivr.ari.percall import PerCallConnection
from ivr.ari.percall_server import PerCallServer
from ivr.audiosocket.server import AudioSocketServer
from ivr.call.ari_app import AriApp, AriAppConfig
from ivr.call.orphans import OrphanSweeper, SweptStore
from ivr.call.percall_calls import serve_connection
from ivr.call.services import CallServices
from ivr.config import Settings
from ivr.websocket.client import WebSocketMediaClient


class SeatIndex(Protocol):
    index: int


def app_config(settings: Settings, seat: SeatIndex | None, advertise: str) -> AriAppConfig:
    """The ARI app's settings, either mode: worker N tags the ids it creates ``ivr-wN-``."""
    return AriAppConfig(
        app=settings.ari_app,
        advertise=advertise,
        format=settings.format,
        max_calls=settings.max_calls,
        id_prefix=f"ivr-w{seat.index}-" if seat is not None else "ivr-",
        media=settings.media,
        setup_concurrency=settings.setup_concurrency,
        setup_queue_seconds=settings.setup_queue_seconds,
    )


def sweep_orphans(
    records: SweptStore, serving: Callable[[], Iterable[str]], stack: contextlib.AsyncExitStack
) -> None:
    """Touch this instance's checkpoints and record the calls of dead instances nobody could take over
    (:mod:`ivr.call.orphans`): once per instance (the supervisor, or the one serving process)."""
    task = asyncio.ensure_future(OrphanSweeper(records, serving).run())

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)


async def start_percall(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    server: AudioSocketServer,
    services: CallServices,
    seat: SeatIndex | None,
    *,
    advertise: str,
    websocket: WebSocketMediaClient | None = None,
) -> tuple[AriApp, PerCallServer]:
    """The app and its started per-call server (closed by ``stack``, after the app's calls).
    ``websocket``: the client for Asterisk's ``/media/<id>`` when calls may use WebSocket media."""
    app = AriApp(
        ari=None,
        audiosocket=server,
        services=services,
        config=app_config(settings, seat, advertise),
        websocket=websocket,
    )

    async def on_call(conn: PerCallConnection) -> None:
        await serve_connection(app, conn)

    host, percall_port = settings.percall_listen
    percall = PerCallServer(
        on_call,
        username=settings.ari_percall_user,
        password=settings.ari_percall_password.get_secret_value(),
        host=host,
        port=percall_port,
        path=settings.ari_percall_path,
        apps=[settings.ari_app],
        admit=lambda: len(app.calls) < settings.max_calls and not app.draining,
        reuse_port=seat is not None,
    )
    await percall.start()  # OSError if the port is taken
    stack.push_async_callback(percall.close)
    stack.push_async_callback(app.close, keep_agent_calls=True)  # before the server: REST needs the sockets
    return app, percall
