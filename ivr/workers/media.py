"""The media part of a serving process: which transports its calls may use, and the WebSocket media
client (ARI mode) or server (dialplan-only mode) it owns beside the AudioSocket server.

* ARI mode: one :class:`~ivr.websocket.WebSocketMediaClient` per process (each worker has its own: it
  connects out to Asterisk's ``/media/<id>``, so nothing listens and no port is shared), made when the
  Asterisk of ``/ari/asterisk/info`` answers MARK_MEDIA. ``IVR_MEDIA=websocket`` with an older Asterisk is
  refused at startup with one line, instead of failing each call.
* Dialplan-only mode: one :class:`~ivr.websocket.WebSocketMediaServer` per process when its password is
  set (or ``IVR_MEDIA=websocket``, which then requires it). Under ``--workers N`` every worker listens on
  the same port with ``SO_REUSEPORT`` (as the AudioSocket server does), so the kernel spreads Asterisk's
  connections over the workers and each call lives in the worker that accepted it.
"""

from __future__ import annotations

import contextlib
import logging

from ivr.config import Settings
from ivr.websocket import WebSocketMediaClient, WebSocketMediaServer, WebSocketServerConfig
from ivr.websocket.server import SessionHandler
from ivr.websocket.versions import marks_supported, requirement
from ivr.workers.errors import StartupError

log = logging.getLogger("ivr.run")


def websocket_server_wanted(settings: Settings) -> bool:
    """Dialplan-only mode serves ``Dial(WebSocket/...)`` calls when it has credentials to check."""
    return settings.media == "websocket" or bool(settings.media_websocket_password.get_secret_value())


def check_media_settings(settings: Settings, *, no_ari: bool) -> None:
    """What can be told from the settings alone (the supervisor checks it before starting workers)."""
    if no_ari and settings.media == "websocket" and not settings.media_websocket_password.get_secret_value():
        raise StartupError(
            "IVR_MEDIA=websocket in dialplan-only mode serves Dial(WebSocket/<entry>/...): set "
            "IVR_MEDIA_WEBSOCKET_PASSWORD to the password of that websocket_client.conf entry"
        )


def websocket_media_usable(settings: Settings, version: str) -> bool:
    """Whether ARI calls may use WebSocket media with the Asterisk at ``version`` (``/ari/asterisk/info``).

    ``IVR_MEDIA=websocket`` on an Asterisk without MARK_MEDIA is a :class:`StartupError`; with the default
    AudioSocket it only means a call's ``media=websocket`` gets AudioSocket (one line now, one per call)."""
    supported = marks_supported(version)
    if supported is None:
        log.warning(
            "Asterisk version %r does not say whether it has MARK_MEDIA (%s): WebSocket media allowed; "
            "a call on an Asterisk without it is hung up with one line",
            version,
            requirement(),
        )
        return True
    if supported:
        return True
    if settings.media == "websocket":
        raise StartupError(
            f"IVR_MEDIA=websocket needs {requirement()}; this is Asterisk {version}: "
            "upgrade it, or use IVR_MEDIA=audiosocket"
        )
    log.info(
        "Asterisk %s has no MARK_MEDIA (%s): WebSocket media is off, every call uses AudioSocket",
        version,
        requirement(),
    )
    return False


async def open_websocket_client(settings: Settings, stack: contextlib.AsyncExitStack) -> WebSocketMediaClient:
    """The process's client for Asterisk's ``/media/<id>`` (Asterisk's HTTP server: ``IVR_ARI_URL``);
    closed last, after the calls: it hangs up whatever is left."""
    client = WebSocketMediaClient(settings.ari_url)
    stack.push_async_callback(client.close)
    log.info("WebSocket media: calls connect to %s<id> (Asterisk paces)", client.media_url)
    return client


async def start_websocket_server(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    handler: SessionHandler,
    *,
    reuse_port: bool,
) -> WebSocketMediaServer:
    """The server that ``Dial(WebSocket/<entry>/c(slin16))`` reaches (dialplan-only mode)."""
    host, port = settings.media_websocket
    server = WebSocketMediaServer(
        WebSocketServerConfig(
            host=host,
            port=port,
            path=settings.media_websocket_path,
            username=settings.media_websocket_user,
            password=settings.media_websocket_password.get_secret_value(),
            reuse_port=reuse_port,
        ),
        on_session=handler,
    )
    try:
        await server.start()
    except OSError as exc:
        raise StartupError(
            f"cannot listen for WebSocket media on {host}:{port}: {exc.strerror or exc}"
        ) from None
    stack.push_async_callback(server.close)
    return server
