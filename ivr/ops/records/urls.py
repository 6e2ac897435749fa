"""Records URLs: which engine a URL names, and how to show it without its password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ivr.ops.records.redaction import REDACTED, redact_text

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() in POSTGRES_SCHEMES


def url_password(url: str) -> str | None:
    return urlsplit(url.strip()).password


def safe_url(url: str) -> str:
    """The URL without its password (for logs and messages); the user name stays."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:{REDACTED}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=redact_text(parts.query)))
