"""The ARI events WebSocket: one long-lived connection per application, kept alive and reconnected.

* Reconnects with ``tenacity``: a short jittered wait after a connection that was up (a flapping link
  reconnects within a fraction of a second every time: calls entering ``Stasis()`` meanwhile fail at
  once), and exponential backoff with jitter, capped near 2 s, while connects fail. The backoff starts
  over at every successful connect; every wait is at least half of ``backoff_initial``, so a server
  that accepts and drops at once never causes a tight loop.
* aiohttp's WebSocket heartbeat (ping every ``heartbeat`` seconds, pong due within half of it) notices a
  dead peer within ``1.5 * heartbeat`` seconds instead of the minutes TCP would take.
* ``on_connected(reconnected)`` runs in its own task after each successful connect so the application can
  reconcile its calls with ``GET /channels`` (events were lost while the socket was down).
* Asterisk allows one events connection per application name and the newest wins: the older one gets
  ``ApplicationReplaced``. The stream then stops with :class:`ApplicationReplacedError` instead of
  reconnecting (which would steal the name back and make two processes flap).
* Wrong credentials (401) or a rejected request (400) stop it too: retrying cannot fix them.

Events are handed to ``on_event`` synchronously, in order, from the reader task; it must not block
(use :class:`ivr.ari.dispatcher.EventDispatcher`, which queues them per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from ivr.ari.client import AriClient
from ivr.ari.errors import ApplicationReplacedError, AriConnectionError, error_for_status
from ivr.ari.models import ApplicationReplaced, Event, parse_event
from ivr.bounded_json import loads_bounded

log = logging.getLogger("ivr.ari.events")

EventCallback = Callable[[Event], None]
ConnectedHook = Callable[[bool], Awaitable[None]]


def _jittered(seconds: float) -> float:
    """``seconds`` minus up to half of it at random, so many instances never reconnect in lockstep."""
    return seconds * random.uniform(0.5, 1.0)


class ConnectionLost(AriConnectionError):
    """The events WebSocket could not be opened (retried with backoff)."""


class EventStream:
    """Keeps the events WebSocket of ``app`` open and feeds every event to ``on_event``.

    Run it with :meth:`start` (an owned task) or ``await stream.run()``; stop it with :meth:`close`.
    ``run`` returns after ``close`` and raises :class:`ApplicationReplacedError` or
    :class:`~ivr.ari.errors.Unauthorized` / :class:`~ivr.ari.errors.BadRequest` when it must give up.
    """

    def __init__(
        self,
        client: AriClient,
        app: str,
        on_event: EventCallback,
        *,
        on_connected: ConnectedHook | None = None,
        heartbeat: float = 4.0,
        backoff_initial: float = 0.25,
        backoff_max: float = 2.0,
        connect_timeout: float = 10.0,
        subscribe_all: bool = False,
    ) -> None:
        if heartbeat <= 0 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("heartbeat and backoff_initial must be > 0 and backoff_max >= backoff_initial")
        self.client = client
        self.app = app
        self._on_event = on_event
        self._on_connected = on_connected
        self.heartbeat = heartbeat
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.subscribe_all = subscribe_all
        self.connections = 0
        """Successful connects so far (the first one plus every reconnect)."""
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()
        self._running = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the WebSocket is open (raises ``TimeoutError``; re-raises if the stream failed)."""
        waiter = asyncio.ensure_future(self._connected.wait())
        pending: set[asyncio.Future[Any]] = {waiter}
        if self._task is not None:
            pending.add(self._task)
        try:
            done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._connected.is_set():
            return
        if self._task is not None and self._task in done:
            self._task.result()
            raise AriConnectionError("the events stream stopped")
        raise TimeoutError(f"events WebSocket for {self.app!r} not connected after {timeout} s")

    def start(self) -> asyncio.Task[None]:
        """Run the stream in a task owned by this object (cancelled by :meth:`close`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"ari-events-{self.app}")
        return self._task

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def close(self) -> None:
        """Stop reconnecting, close the socket and wait for the owned tasks to finish."""
        self._stopping.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()
        for task in list(self._hook_tasks):
            task.cancel()
        if self._hook_tasks:
            await asyncio.gather(*self._hook_tasks, return_exceptions=True)
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.connect_timeout)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            except Exception:
                pass  # the failure is reported by run() / task.result()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        if self._running:
            raise RuntimeError("EventStream.run() is already running")
        self._running = True
        try:
            while not self._stopping.is_set():
                retrying = AsyncRetrying(
                    wait=self._backoff,
                    retry=retry_if_exception_type(ConnectionLost),
                    sleep=self._sleep,
                    before_sleep=self._log_retry,
                    reraise=True,
                )
                async for attempt in retrying:
                    with attempt:
                        if not self._stopping.is_set():
                            await self._serve_once()
                if not self._stopping.is_set():
                    # A connection that was up was lost: reconnect soon, the backoff starts over.
                    await self._sleep(_jittered(self.backoff_initial))
        finally:
            self._running = False
            self._connected.clear()

    def _backoff(self, state: RetryCallState) -> float:
        """Failed connect n (1, 2, ...): min(initial * 2**n, max), jittered down to half of it."""
        return _jittered(min(self.backoff_initial * 2.0 ** min(state.attempt_number, 30), self.backoff_max))

    async def _sleep(self, seconds: float) -> None:
        """Backoff sleep that ends early when the stream is closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "ARI events for app %r: %s; retrying in %.1f s (attempt %d)",
            self.app,
            exc,
            delay,
            state.attempt_number,
        )

    async def _serve_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await self.client.connect_events(
                    self.app,
                    subscribe_all=self.subscribe_all,
                    heartbeat=self.heartbeat,
                    timeout=self.connect_timeout,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (400, 401, 403):
                raise error_for_status(
                    exc.status,
                    f"events WebSocket rejected: {exc.message or exc.status}",
                    method="GET",
                    path="/events",
                ) from exc
            raise ConnectionLost(f"events WebSocket handshake failed: HTTP {exc.status}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        if self._stopping.is_set():
            await ws.close()
            return
        started = loop.time()
        self._ws = ws
        self.connections += 1
        reconnected = self.connections > 1
        log.info("ARI events connected for app %r%s", self.app, " (reconnected)" if reconnected else "")
        self._connected.set()
        if self._on_connected is not None:
            hook = loop.create_task(self._run_hook(reconnected), name=f"ari-connected-{self.app}")
            self._hook_tasks.add(hook)
            hook.add_done_callback(self._hook_tasks.discard)
        replaced = False
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    if self._handle_text(msg.data):
                        replaced = True
                        break
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    log.warning("ARI events for app %r: WebSocket error: %s", self.app, ws.exception())
                    break
        finally:
            self._connected.clear()
            self._ws = None
            await ws.close()
        if replaced:
            raise ApplicationReplacedError(self.app)
        if self._stopping.is_set():
            return
        reason = ws.exception() or f"closed by Asterisk (code {ws.close_code})"
        lasted = loop.time() - started
        log.warning("ARI events for app %r: connection lost after %.1f s: %s", self.app, lasted, reason)

    def _handle_text(self, text: str) -> bool:
        """Parse and deliver one message; True when it says the application was replaced."""
        try:
            data = loads_bounded(text)  # a ValueError when deeper than any event, not a RecursionError
        except ValueError:
            log.warning("ARI events: ignoring a message that is not JSON (%d bytes)", len(text))
            return False
        if not isinstance(data, dict):
            log.warning("ARI events: ignoring a JSON message that is not an object")
            return False
        event = parse_event(data)
        try:
            self._on_event(event)
        except Exception:
            log.exception("ARI events: on_event failed for %s", event.type)
        if isinstance(event, ApplicationReplaced):
            log.error("ARI application %r was replaced by another connection; stopping", self.app)
            return True
        return False

    async def _run_hook(self, reconnected: bool) -> None:
        assert self._on_connected is not None
        try:
            await self._on_connected(reconnected)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ARI events: on_connected hook failed")
