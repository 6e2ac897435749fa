"""The retry layer on its own: what is retried, waits, deadline, bugs and cancellation pass through."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest

from ivr.speech.errors import (
    DeadlineExceededError,
    ProviderError,
    QuotaExceededError,
    RequestRejectedError,
    TransientProviderError,
    redact,
)
from ivr.speech.retry import RetryPolicy, call_with_retry, parse_retry_after

POLICY = RetryPolicy(deadline=2.0, max_attempts=4, backoff_initial=0.01, backoff_max=0.02)


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert 8.0 < (parse_retry_after({"retry-after": date}, now=now) or 0) <= 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_redact_masks_keys():
    text = redact("key sk-proj-abcdefghijkl and Bearer abc.def-ghi123 and mysecret", "mysecret")
    assert "abcdefghijkl" not in text
    assert "abc.def-ghi123" not in text
    assert "mysecret" not in text


async def test_transient_then_success_counts_attempts():
    calls = []

    async def attempt(left: float) -> str:
        calls.append(left)
        if len(calls) < 3:
            raise TransientProviderError("busy", engine="t", status=503)
        return "ok"

    assert await call_with_retry(attempt, engine="t", policy=POLICY) == "ok"
    assert len(calls) == 3
    assert calls[0] > calls[1] > calls[2]  # each attempt gets what is left of one deadline


@pytest.mark.parametrize(
    "error",
    [
        QuotaExceededError("quota", engine="t", status=429),
        RequestRejectedError("bad", engine="t", status=400),
    ],
)
async def test_permanent_errors_are_not_retried(error: ProviderError):
    calls = 0

    async def attempt(left: float) -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await call_with_retry(attempt, engine="t", policy=POLICY)
    assert calls == 1


async def test_bugs_propagate_unchanged():
    async def attempt(left: float) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retry(attempt, engine="t", policy=POLICY)


async def test_cancellation_is_not_swallowed():
    started = asyncio.Event()

    async def attempt(left: float) -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(call_with_retry(attempt, engine="t", policy=POLICY))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadline_with_injected_clock_and_sleep():
    now = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    async def attempt(left: float) -> None:
        now[0] += 0.5
        raise TransientProviderError("busy", engine="t", status=500, retry_after=0.6)

    policy = RetryPolicy(deadline=2.0, max_attempts=10)
    with pytest.raises(DeadlineExceededError, match="deadline") as info:
        await call_with_retry(attempt, engine="t", policy=policy, clock=lambda: now[0], sleep=sleep)
    assert slept == [0.6]  # 0.5 + 0.6 + 0.5 = 1.6; another 0.6 wait would end at 2.2 > 2.0
    assert info.value.attempts == 2


@pytest.mark.virtual_time
async def test_an_attempt_that_hangs_is_given_up_at_its_first_byte_timeout_and_retried():
    policy = RetryPolicy(deadline=8.0, first_byte_timeout=2.0, backoff_initial=0.01, backoff_max=0.02)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def attempt(left: float) -> str:
        starts.append(loop.time())
        assert left <= 2.0, "each attempt is told its own limit"
        if len(starts) == 1:
            await asyncio.sleep(3600)  # the provider accepted the request and never answers
        return "transcript"

    assert await call_with_retry(attempt, engine="t", policy=policy) == "transcript"
    assert len(starts) == 2
    assert 2.0 <= starts[1] - starts[0] < 2.5, "retried after 2 s, not after the 8 s deadline"


@pytest.mark.virtual_time
async def test_hanging_attempts_end_at_the_deadline_on_the_loops_clock():
    policy = RetryPolicy(deadline=8.0, first_byte_timeout=4.0, backoff_initial=0.01, backoff_max=0.02)
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def attempt(left: float) -> str:
        await asyncio.sleep(3600)
        return ""

    with pytest.raises(DeadlineExceededError):
        await call_with_retry(attempt, engine="t", policy=policy)
    assert 7.9 <= loop.time() - began < 8.5, "virtual seconds: the deadline follows the loop's clock"
