"""Moments as flows see them: ``now`` and ``call.started`` in the flow's time zone.

The engine never reads a clock: the runtime passes the moment of each event (epoch seconds) and the
engine turns it into a plain mapping, so conditions such as ``now.hour >= 17`` or
``now.weekday in ['sat', 'sun']`` work in the sandbox without method calls, and tests pin time exactly.
Time zones come from :mod:`zoneinfo` (the system's database, or the ``tzdata`` package where the system
has none).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.flow.model_captures import WEEKDAYS

TIME_FIELDS: dict[str, str] = {
    "iso": "'2026-12-01T09:30:00+00:00'",
    "date": "'2026-12-01'",
    "time": "'09:30' (24 h, zero-padded: compare as text)",
    "hour": "9",
    "minute": "30",
    "weekday": "'mon' .. 'sun'",
    "day": "day of the month, 1..31",
    "month": "1..12",
    "year": "2026",
    "timestamp": "epoch seconds",
    "timezone": "the IANA zone, e.g. 'Europe/London'",
}


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The zone named ``name`` (cached: the database is read once per zone, at load time)."""
    return ZoneInfo(name)


def check_timezone(name: str, where: str) -> None:
    """Raise ValueError naming ``where`` when ``name`` is not an IANA time zone."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        key = where.rsplit(".", 1)[-1]
        raise ValueError(
            f"'{key}' {name!r} is not a time zone; expected an IANA name such as Europe/London or America/New_York"
        ) from None


def local(timestamp: float, timezone: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=zone(timezone))


def moment(timestamp: float, timezone: str) -> dict[str, Any]:
    """The mapping templates see as ``now`` or ``call.started``."""
    when = local(timestamp, timezone)
    return {
        "iso": when.isoformat(timespec="seconds"),
        "date": when.date().isoformat(),
        "time": f"{when.hour:02d}:{when.minute:02d}",
        "hour": when.hour,
        "minute": when.minute,
        "weekday": WEEKDAYS[when.weekday()],
        "day": when.day,
        "month": when.month,
        "year": when.year,
        "timestamp": timestamp,
        "timezone": timezone,
    }
