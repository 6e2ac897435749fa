"""The one retry layer for speech providers (tenacity), and error classification.

SDK clients are built with ``max_retries=0`` so that attempts are not multiplied:
this module alone decides. Per request there is a total deadline covering every
attempt and every wait; only transient failures are retried (connection errors,
timeouts, HTTP 408/409/429 unless the 429 is ``insufficient_quota``, and 5xx);
a provider's ``Retry-After`` / ``retry-after-ms`` is honoured when it fits in the
time left, otherwise we give up at once instead of sleeping past the deadline.

Streams are retried only until their first audio arrives: the synthesizers open
the stream and read the first chunk inside :func:`call_with_retry`; once audio
has started, a break raises :class:`StreamInterruptedError` and nothing is replayed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx2
import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ivr.speech.errors import (
    BadResponseError,
    DeadlineExceededError,
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    RequestRejectedError,
    TransientProviderError,
)

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request.

    ``deadline``: total seconds for the request, all attempts and waits included (for a
    stream: until its first audio). ``first_byte_timeout``: one attempt's limit until its answer
    starts (a transcript, an event, the first audio): an attempt that hangs is given up and
    retried within the deadline, instead of eating all of it. ``max_attempts``: attempts in all.
    Backoff between attempts is ``backoff_initial * 2**n`` capped at ``backoff_max`` with
    +-``jitter`` (fraction), unless the provider asked for a specific wait. ``stall_timeout``: once
    a stream has started, the longest silence between two chunks before it counts as broken.
    """

    deadline: float = 8.0
    max_attempts: int = 4
    backoff_initial: float = 0.25
    backoff_max: float = 2.0
    jitter: float = 0.2
    stall_timeout: float = 5.0
    first_byte_timeout: float = 4.0

    def __post_init__(self) -> None:
        if (
            self.deadline <= 0
            or self.max_attempts < 1
            or self.stall_timeout <= 0
            or self.first_byte_timeout <= 0
        ):
            raise ValueError(
                "deadline, stall_timeout and first_byte_timeout must be positive, max_attempts >= 1"
            )


DEFAULT_POLICY = RetryPolicy()


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date), if any."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = -1.0
        if ms >= 0:
            return ms / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)


def _status_details(exc: openai.APIStatusError) -> tuple[str, str | None]:
    body = exc.body
    message = ""
    if isinstance(body, Mapping):
        raw = body.get("message")
        if isinstance(raw, str):
            message = raw
    elif isinstance(body, str):
        message = body
    code = exc.code or (exc.type if exc.type else None)
    return message or exc.message, code


def classify(exc: BaseException, *, engine: str) -> ProviderError | None:
    """Map an exception from a provider call to a :class:`ProviderError`, or None if it is a bug.

    Cancellation is never classified (``None`` for ``CancelledError``): callers must let it through.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, asyncio.CancelledError):
        return None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message, code = _status_details(exc)
        request_id = exc.request_id
        headers = exc.response.headers
        if exc.type == "insufficient_quota":
            code = "insufficient_quota"
        return _status_error(status, message, code, headers, engine, request_id)
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return TransientProviderError("request timed out", engine=engine)
    if isinstance(exc, openai.APIConnectionError | httpx2.RequestError | ssl.SSLError | ConnectionError):
        return TransientProviderError(f"connection failed ({type(exc).__name__})", engine=engine)
    ws = _classify_websocket(exc, engine)
    if ws is not None:
        return ws
    if isinstance(exc, openai.WebSocketConnectionClosedError):
        return TransientProviderError("realtime connection closed", engine=engine)
    if isinstance(exc, openai.APIResponseValidationError):
        return BadResponseError("unexpected response from the provider", engine=engine)
    if isinstance(exc, openai.OpenAIError):
        return ProviderConfigError(f"client error: {exc}", engine=engine)
    if isinstance(exc, OSError):
        return TransientProviderError(f"connection failed ({type(exc).__name__})", engine=engine)
    return None


def _status_error(
    status: int,
    message: str,
    code: str | None,
    headers: Mapping[str, str],
    engine: str,
    request_id: str | None,
) -> ProviderError:
    if status == 429 and code == "insufficient_quota":
        return QuotaExceededError(f"quota exhausted: {message}", engine=engine, status=status, code=code)
    if status in TRANSIENT_STATUS or status >= 500:
        return TransientProviderError(
            message or "temporarily unavailable",
            engine=engine,
            status=status,
            code=code,
            request_id=request_id,
            retry_after=parse_retry_after(headers),
        )
    if status in (401, 403):
        return ProviderAuthError(
            f"credentials refused: {message}", engine=engine, status=status, code=code, request_id=request_id
        )
    return RequestRejectedError(
        f"request rejected: {message}", engine=engine, status=status, code=code, request_id=request_id
    )


def _classify_websocket(exc: BaseException, engine: str) -> ProviderError | None:
    """Realtime handshake and socket errors (``websockets``, from the ``realtime`` extra)."""
    try:
        from websockets.exceptions import (  # type: ignore[import-not-found,unused-ignore]
            InvalidStatus,
            WebSocketException,
        )
    except ImportError:  # pragma: no cover - extra not installed
        return None
    if isinstance(exc, InvalidStatus):
        response = exc.response
        message, code = "", None
        try:
            data = json.loads(response.body or b"{}")
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            err = data.get("error", data)
            if isinstance(err, Mapping):
                message = str(err.get("message") or "")
                raw_code = err.get("code") or err.get("type")
                code = str(raw_code) if raw_code else None
        headers = {k.lower(): v for k, v in response.headers.raw_items()}
        return _status_error(
            response.status_code,
            message or response.reason_phrase,
            code,
            headers,
            engine,
            headers.get("x-request-id"),
        )
    if isinstance(exc, WebSocketException):
        return TransientProviderError(f"realtime connection failed ({type(exc).__name__})", engine=engine)
    return None


class _Deadline:
    """Stop retrying when attempts run out or the next wait would cross the deadline."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], end: float) -> None:
        self.policy = policy
        self.clock = clock
        self.end = end

    def __call__(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.policy.max_attempts:
            return True
        return self.clock() + state.upcoming_sleep >= self.end


class _Wait:
    """Provider's Retry-After if given, else capped exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, TransientProviderError) and exc.retry_after is not None:
            return exc.retry_after
        p = self.policy
        base: float = min(p.backoff_max, p.backoff_initial * 2.0 ** (state.attempt_number - 1))
        return max(0.0, base * (1 + self.rng.uniform(-p.jitter, p.jitter)))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientProviderError) and not isinstance(exc, DeadlineExceededError)


async def call_with_retry(
    attempt: Callable[[float], Awaitable[T]],
    *,
    engine: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str = "request",
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``attempt(time_left)`` until it succeeds, under ``policy``; raise a ProviderError if not.

    ``attempt`` gets the seconds it may take (what is left before the deadline, at most
    ``first_byte_timeout``: pass it to the SDK as its ``timeout``) and runs under an
    ``asyncio.timeout`` of that length as well. Non-provider
    exceptions (bugs) and cancellation propagate unchanged.
    """
    if clock is None:
        clock = asyncio.get_running_loop().time  # the clock asyncio's own timeouts and sleeps use
    start = clock()
    end = start + policy.deadline
    attempts = 0
    retrying = AsyncRetrying(
        stop=_Deadline(policy, clock, end),
        wait=_Wait(policy, rng or random.Random()),
        retry=retry_if_exception(_retryable),
        sleep=sleep,
        reraise=True,
    )
    try:
        async for state in retrying:
            with state:
                attempts += 1
                left = end - clock()
                if left <= 0:
                    raise DeadlineExceededError(
                        f"{what}: no time left in the {policy.deadline:g} s deadline", engine=engine
                    )
                failure: ProviderError | None = None
                budget = min(left, policy.first_byte_timeout)
                try:
                    async with asyncio.timeout(budget):
                        return await attempt(budget)
                except TimeoutError as e:
                    if clock() >= end - 1e-3:
                        failure = DeadlineExceededError(
                            f"{what}: deadline of {policy.deadline:g} s exceeded", engine=engine
                        )
                    elif budget < left:
                        failure = TransientProviderError(
                            f"{what}: no answer within {budget:g} s", engine=engine
                        )
                    else:
                        failure = _classified(e, engine)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    failure = classify(e, engine=engine)
                    if failure is None:
                        raise
                # Raised outside the handler so the SDK exception (whose request carries the
                # Authorization header) is not even kept as __context__.
                raise failure
    except TransientProviderError as e:
        if isinstance(e, DeadlineExceededError):
            raise e.with_attempts(attempts) from None
        wait = e.retry_after or 0.0
        if attempts < policy.max_attempts and clock() + wait >= end:
            raise DeadlineExceededError(
                f"{what}: gave up, next try would pass the {policy.deadline:g} s deadline; last error: {e.detail}",
                engine=engine,
                status=e.status,
                code=e.code,
                request_id=e.request_id,
                attempts=attempts,
            ) from None
        raise e.with_attempts(attempts) from None
    raise AssertionError("unreachable: tenacity ended without result")  # pragma: no cover


def _classified(exc: BaseException, engine: str) -> ProviderError:
    return classify(exc, engine=engine) or TransientProviderError("request timed out", engine=engine)
