"""The records' second line of defence: values that look like secrets never reach the database.

The flow engine already masks ``sensitive`` captures (and copies of them) and the runtime masks keys
pressed in sensitive steps. On top of that, every record and checkpoint passes through here: variables
named like passwords/tokens/API keys, pydantic ``SecretStr`` values, credentials in URLs, ``token=``-style
query parameters and ``Bearer``/``Basic`` credentials in free text are replaced by :data:`REDACTED`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import SecretBytes, SecretStr

REDACTED = "[redacted]"
"""What a secret-looking value is replaced with (the engine's own mask for sensitive variables)."""

_SECRET_KEY = re.compile(r"passw(?:or)?d|passphrase|secret|token|api[_-]?key|authorization|credential", re.I)
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)
_SECRET_PARAM = re.compile(
    r"\b((?:access_|refresh_|id_|api_?|auth_?|client_)?(?:token|key|password|passwd|secret|signature|sig)=)"
    r"[^&\s\"'#]+",
    re.I,
)
_AUTH_HEADER = re.compile(r"\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}", re.I)
_MAX_DEPTH = 16


def redact_text(text: str) -> str:
    """Remove credentials from free text (error messages): URL user-info, ``token=`` parameters, auth headers."""
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    return _AUTH_HEADER.sub(rf"\1 {REDACTED}", text)


def redact_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of flow variables with secret-looking names and values redacted."""
    cleaned = redact_json(variables)
    return cleaned if isinstance(cleaned, dict) else {}


def redact_json(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` (non-finite floats become null, bytes a length) with secrets redacted."""
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return REDACTED  # absurd nesting: not worth the risk of storing it
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) else redact_json(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_json(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return redact_text(str(value))
