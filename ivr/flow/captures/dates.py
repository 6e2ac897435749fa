"""Dates said or keyed by callers, relative to the call's start in the flow's time zone.

Speech goes through ``dateparser`` (absolute forms in many languages and relative ones: "tomorrow",
"next Tuesday", "in two weeks", "demain"), after number words became digits ("the third of March" ->
"the 3rd of March"); a day alone ("the third") is the next such day. Keys follow a pattern such as
``DDMMYYYY``. Everything is relative to ``base`` (the call's start), never to the wall clock.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ivr.flow.captures.words import digitize, primary
from ivr.flow.model_captures import RELATIVE_DATE

_YEAR = re.compile(r"\b\d{4}\b")
_DAY_ONLY = re.compile(
    r"^(?:(?:on|for|le|el|am|il)\s+)?(?:the\s+)?(\d{1,2})(?:st|nd|rd|th|er|e|º|°|\.)?(?:\s+(?:please|one))?$"
)
_UNITS = {"": 1, "d": 1, "w": 7}


def _settings(base: dt.datetime, prefer: str) -> dict[str, Any]:
    return {
        "RELATIVE_BASE": base,
        "PREFER_DATES_FROM": prefer,
        "RETURN_AS_TIMEZONE_AWARE": False,
        "STRICT_PARSING": False,
    }


def _date_order(language: str) -> str:
    """How numeric dates read: month first in US English, day first almost everywhere else."""
    return "MDY" if language.lower() in ("en-us", "en") else "DMY"


def parse_date(text: str, *, language: str, base: dt.datetime, prefer: str = "future") -> dt.date | None:
    """The date a caller said, or None. ``base`` is the call's start (naive, in the flow's time zone)."""
    import dateparser
    from dateparser.search import search_dates

    said = digitize(text, language).strip().rstrip(".!?")
    if not said:
        return None
    day_only = _DAY_ONLY.match(said.lower())
    if day_only:
        return _day_of_month(int(day_only.group(1)), base.date(), prefer)
    settings = _settings(base, prefer)
    settings["DATE_ORDER"] = _date_order(language)
    languages = [primary(language)]
    try:
        found = dateparser.parse(said, languages=languages, settings=settings)
        if found is None:
            hits = search_dates(said, languages=languages, settings=settings)
            found = hits[0][1] if hits else None
    except (ValueError, OverflowError, TypeError):
        return None
    if found is None:
        return None
    day: dt.date = found.date()
    today = base.date()
    # "December 1st" said on December 1: dateparser's "future" skips today, a caller means today.
    if prefer == "future" and not _YEAR.search(said) and (day.month, day.day) == (today.month, today.day):
        day = today
    return day


def _day_of_month(number: int, today: dt.date, prefer: str) -> dt.date | None:
    """ "The third": the next (or, preferring the past, the last) day with that number, today included."""
    step = 1 if prefer == "future" else -1
    year, month = today.year, today.month
    for _ in range(14):
        try:
            day = dt.date(year, month, number)
        except ValueError:
            day = None
        if day is not None and (day >= today if step > 0 else day <= today):
            return day
        month += step
        if month == 13:
            year, month = year + 1, 1
        elif month == 0:
            year, month = year - 1, 12
    return None


def parse_date_keys(keys: str, pattern: str, base: dt.date) -> dt.date | None:
    """``keys`` in ``pattern`` order (DDMMYYYY, MMDD ...); a missing year is the next such date."""
    if len(keys) != len(pattern) or not keys.isdigit():
        return None
    parts = {"D": "", "M": "", "Y": ""}
    for ch, key in zip(pattern, keys, strict=True):
        parts[ch] += key
    year = int(parts["Y"]) if parts["Y"] else base.year
    if len(parts["Y"]) == 2:
        year += 2000 if year <= (base.year % 100) + 10 else 1900
    try:
        day = dt.date(year, int(parts["M"]), int(parts["D"]))
    except ValueError:
        return None
    if not parts["Y"] and day < base:
        try:
            day = day.replace(year=year + 1)
        except ValueError:
            return None
    return day


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise ValueError(f"no day in {year}-{month}")  # pragma: no cover - day 28 always exists


def date_limit(spec: str | float, base: dt.date) -> dt.date:
    """``'2027-01-31'``, ``'today'``, ``'today+14'`` (days), ``'today+2w'``, ``'today-18y'`` -> a date."""
    text = str(spec).strip().lower().replace(" ", "")
    match = RELATIVE_DATE.match(text)
    if match is None:
        return dt.date.fromisoformat(text)
    sign, amount, unit = match.groups()
    if sign is None:
        return base
    count = int(amount) * (1 if sign == "+" else -1)
    if unit == "m":
        return _add_months(base, count)
    if unit == "y":
        return _add_months(base, 12 * count)
    return base + dt.timedelta(days=count * _UNITS[unit])


def warm(languages: list[str]) -> None:
    """Load dateparser and its data for each language before the first call (~0.1 s the first time)."""
    base = dt.datetime(2026, 1, 1, 12, 0)
    for language in languages:
        parse_date("tomorrow", language=language, base=base)
