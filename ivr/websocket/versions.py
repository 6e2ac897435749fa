"""Which Asterisk releases can carry WebSocket media for calls, read from their version string.

Prompt ends come from MARK_MEDIA, which chan_websocket answers from 20.18.0 and 22.8.0 on (its
ChangeLogs); before that a prompt would never be reported played. ``ivr run`` checks the version from
``/ari/asterisk/info`` once at startup, so an old Asterisk is refused with one line instead of failing
every call (the session's own probe mark still catches one this table does not know).
"""

from __future__ import annotations

import re
from typing import Final

MARK_MEDIA_SINCE: Final = {20: (20, 18), 22: (22, 8)}
"""Per release branch, the first minor release whose chan_websocket answers MARK_MEDIA."""
NEWEST_CHECKED: Final = 22
"""Branches above this are newer than this table: accepted (the per-call probe is the check there)."""

_VERSION = re.compile(r"(?:certified[/-])?(\d+)\.(\d+)")


def marks_supported(version: str) -> bool | None:
    """True/False for a recognisable ``22.10.1``-style version; None when the string says no number
    (``GIT-master-...``: a development build, accepted with a warning by the caller)."""
    match = _VERSION.match(version.strip())
    if match is None:
        return None
    major, minor = int(match.group(1)), int(match.group(2))
    if major > NEWEST_CHECKED:
        return True
    since = MARK_MEDIA_SINCE.get(major)
    return since is not None and (major, minor) >= since


def requirement() -> str:
    """The rule in words, for error messages and logs."""
    return "Asterisk 22.8 or newer (20.18+ on the 20 branch) for MARK_MEDIA"
