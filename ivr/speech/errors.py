"""Provider errors: what the flow engine catches to follow a step's error path.

Every message is built here from the status, the provider's error code, its
request id and a redacted, shortened copy of the provider's own message. The
API key never appears: known keys and anything shaped like an OpenAI secret
(``sk-...``) are masked, and provider exceptions are not chained (their
request objects carry the ``Authorization`` header).
"""

from __future__ import annotations

import os
import re
from typing import Final

_SECRET_RE: Final = re.compile(r"\b(sk|rk|pk|sess)-[A-Za-z0-9_\-]{6,}")
_BEARER_RE: Final = re.compile(r"(?i)bearer\s+[A-Za-z0-9_\-.]{6,}")
_MAX_DETAIL: Final = 300


def redact(text: str, *secrets: str | None) -> str:
    """Mask API keys in ``text``: the given secrets, ``OPENAI_API_KEY`` and ``sk-...`` shapes."""
    env_key = os.environ.get("OPENAI_API_KEY")
    for secret in (*secrets, env_key):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _SECRET_RE.sub(lambda m: f"{m.group(1)}-***", text)
    return _BEARER_RE.sub("Bearer ***", text)


def shorten(text: str, limit: int = _MAX_DETAIL) -> str:
    """One line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProviderError(Exception):
    """A speech provider failed for this request; the flow takes its error path.

    ``engine`` names the engine (``openai``, ``offline``, ...), ``status`` is the
    HTTP status when there was one, ``code`` the provider's error code and
    ``request_id`` the provider's request id, for support tickets.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        engine: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.engine = engine
        self.status = status
        self.code = code
        self.request_id = request_id
        self.attempts = attempts
        self.detail = shorten(redact(message))
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.engine}: {self.detail}"]
        extra = []
        if self.status is not None:
            extra.append(f"HTTP {self.status}")
        if self.code:
            extra.append(f"code={self.code}")
        if self.request_id:
            extra.append(f"request_id={self.request_id}")
        if self.attempts > 1:
            extra.append(f"after {self.attempts} attempts")
        if extra:
            parts.append(f"({', '.join(extra)})")
        return " ".join(parts)

    def with_attempts(self, attempts: int) -> ProviderError:
        """Record how many attempts were made; returns ``self``."""
        self.attempts = attempts
        self.args = (self._render(),)
        return self


class TransientProviderError(ProviderError):
    """A failure worth retrying (connection, timeout, 408/409/429, 5xx).

    ``retry_after`` is the provider's requested wait in seconds, if it sent one.
    Raised to callers once the retry layer gives up.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        engine: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, engine=engine, status=status, code=code, request_id=request_id, attempts=attempts
        )


class DeadlineExceededError(TransientProviderError):
    """The request's total deadline passed (including retries and waits)."""


class QuotaExceededError(ProviderError):
    """429 ``insufficient_quota``: billing, not load. Never retried."""


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (401/403). Never retried."""


class ProviderConfigError(ProviderError):
    """Misconfiguration found before any request: no API key, missing extra, unknown engine."""


class RequestRejectedError(ProviderError):
    """The provider rejected the request itself (400, 404, 413, 422, ...). Never retried."""


class StreamInterruptedError(ProviderError):
    """A stream broke after audio had started. It is not replayed from the start."""


class BadResponseError(ProviderError):
    """The provider answered something we cannot use (malformed JSON, no audio, wrong format)."""


_KINDS: tuple[tuple[type[ProviderError], str], ...] = (
    (DeadlineExceededError, "timeout"),  # before TransientProviderError, its base
    (BadResponseError, "bad_response"),
    (StreamInterruptedError, "stream_cut"),
    (ProviderAuthError, "auth"),
    (QuotaExceededError, "quota"),
    (RequestRejectedError, "rejected"),
    (ProviderConfigError, "config"),
)


def error_kind(exc: ProviderError) -> str:
    """A short, bounded label for a failure (the ``kind`` of ``ivr_provider_errors_total``)."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, TransientProviderError):
        if exc.status is not None and exc.status >= 500:
            return "http_5xx"
        if exc.status is not None:
            return f"http_{exc.status}" if exc.status in (408, 409, 429) else "http_other"
        return "timeout" if "timed out" in exc.detail else "connection"
    return "error"
