"""The side port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for orchestrators.

* ``GET /metrics``: the private registry of :class:`ivr.ops.metrics.Metrics`, in the text format
  the scraper's ``Accept`` header asks for (Prometheus text, or OpenMetrics);
* ``GET /healthz``: 200 while the process serves HTTP at all (liveness);
* ``GET /readyz``: 200 when the ``ready`` check says so (e.g. the ARI WebSocket is connected), 503
  with ``{"ready": false, "reason": "..."}`` otherwise, and always 503 once :meth:`HealthServer.drain`
  was called (SIGTERM: take no new calls).

It binds 127.0.0.1:9464 by default (9100 is node_exporter's); nothing here is meant for the internet.
Requests are not access-logged (a scrape every few seconds is noise, not information). A request that
is not HTTP, or too large, costs one WARNING line naming the peer and what was wrong (never aiohttp's
traceback; repeats are rate-limited by :mod:`ivr.logs`), and its connection.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ivr.config import parse_hostport

log = logging.getLogger(__name__)

DEFAULT_HEALTH_HOST = "127.0.0.1"
DEFAULT_HEALTH_PORT = 9464

ReadyCheck = Callable[[], bool | tuple[bool, str]]


class Exposition(Protocol):
    """What ``/metrics`` serves: :class:`ivr.ops.metrics.Metrics`, or a supervisor's merged view."""

    def exposition(self, accept: str = "") -> tuple[bytes, str]: ...


"""Cheap, non-blocking: ``True``/``False``, or ``(ready, reason)`` to say why not."""

MAX_LINE_BYTES = 4096
"""Request line and each header line (aiohttp's default is 8190)."""
MAX_HEADERS = 32
MAX_BODY_BYTES = 1024
"""Every endpoint is a GET: a body is never needed."""
KEEPALIVE_SECONDS = 30.0
"""An idle connection is closed after this (aiohttp keeps one for an hour by default)."""


class _PeerErrors(logging.LoggerAdapter[logging.Logger]):
    """The ``logger`` aiohttp's request handler logs through: a request it could not parse (the peer's
    fault) becomes one WARNING line with the peer and the reason; everything else passes unchanged."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, HttpProcessingError):
            peer = args[0] if args else "?"
            log.warning("metrics port: bad request from %s: %s", peer, _reason(exc))
            return
        self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


def _reason(exc: HttpProcessingError) -> str:
    """aiohttp's message quotes the junk it got; keep its first words, printable and short."""
    text = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else ""
    text = "".join(c if c.isprintable() else "?" for c in text.split(":")[0])[:100]
    return f"{type(exc).__name__} ({text})" if text else type(exc).__name__


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on their own aiohttp server.

    ::

        health = HealthServer(metrics, ready=lambda: (app.connected, "ARI disconnected"))
        await health.start()       # OSError with the address if the port is taken
        ...
        health.drain()             # /readyz -> 503 "shutting down"
        await health.close()
    """

    def __init__(
        self,
        metrics: Exposition,
        *,
        ready: ReadyCheck | None = None,
        host: str = DEFAULT_HEALTH_HOST,
        port: int = DEFAULT_HEALTH_PORT,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.before_scrape = before_scrape
        """Runs before each ``/metrics`` answer (a supervisor gathers its workers' metrics there)."""
        self.host = host
        self._port = port
        self._draining = False
        self._runner: web.AppRunner | None = None

    @classmethod
    def from_listen(
        cls,
        listen: str,
        metrics: Exposition,
        *,
        ready: ReadyCheck | None = None,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> HealthServer:
        """From a ``host:port`` setting (``metrics_listen``); port 0 picks a free port."""
        host, port = parse_hostport(listen, default_port=DEFAULT_HEALTH_PORT, allow_zero=True)
        return cls(metrics, ready=ready, host=host, port=port, before_scrape=before_scrape)

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("health server already started")
        runner = web.AppRunner(
            self.build_app(),
            access_log=None,
            handle_signals=False,
            logger=_PeerErrors(logging.getLogger("aiohttp.server")),
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            code = exc.errno if exc.errno is not None else errno.EADDRNOTAVAIL
            raise OSError(
                code, f"metrics/health port {self.host}:{self._port}: {exc.strerror or exc}"
            ) from None
        self._runner = runner
        log.info("metrics and health on http://%s:%d (/metrics /healthz /readyz)", self.host, self.port)

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple) and len(address) >= 2:
                    return int(address[1])
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def drain(self) -> None:
        """From now on ``/readyz`` answers 503: the process is shutting down."""
        self._draining = True

    def readiness(self) -> tuple[bool, str]:
        """What ``/readyz`` would answer now: (ready, reason when not)."""
        if self._draining:
            return False, "shutting down"
        if self.ready is None:
            return True, ""
        try:
            answer = self.ready()
        except Exception as exc:
            return False, f"readiness check failed: {type(exc).__name__}"
        if isinstance(answer, tuple):
            ok, reason = answer
            return bool(ok), ("" if ok else str(reason) or "not ready")
        return bool(answer), ("" if answer else "not ready")

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.before_scrape is not None:
            await self.before_scrape()
        body, content_type = self.metrics.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, reason = self.readiness()
        return _json(200, {"ready": True}) if ok else _json(503, {"ready": False, "reason": reason})


def _json(status: int, payload: dict[str, object]) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
