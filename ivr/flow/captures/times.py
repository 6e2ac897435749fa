"""Times of day said or keyed by callers: "nine thirty", "half past two", "quarter to ten", "9:30 pm",
"noon", "21h30"; keys ``HHMM`` (24 h).

A bare hour without am/pm ("at three") is read in the capture's ``min``/``max`` window when only one
reading fits; otherwise 1 to 6 mean the afternoon (13:00-18:00), as callers booking appointments mean.
"""

from __future__ import annotations

import re

from ivr.flow.captures.words import digitize

_WORDS = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0), "midi": (12, 0), "minuit": (0, 0)}
_PM = ("pm", "p m", "in the afternoon", "in the evening", "at night", "tonight", "du soir", "de l'après-midi")
_AM = ("am", "a m", "in the morning", "du matin")
_RELATIVE = re.compile(r"\b(half|quarter|\d{1,2})\s+(past|after|to|before)\s+(\d{1,2})\b")
_CLOCK = re.compile(r"\b(\d{1,2})\s*(?:[:.h]|\s)\s*(\d{2})\b|\b(\d{1,2})\s*(?:h|o\s*clock|oclock|heures?)?\b")
_COMPACT = re.compile(r"^(\d{3,4})$")


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _fits(hour: int, minute: int, low: str | None, high: str | None) -> bool:
    value = hour * 60 + minute
    return (low is None or value >= _minutes(low)) and (high is None or value <= _minutes(high))


def _resolve(hour: int, minute: int, marker: str | None, low: str | None, high: str | None) -> str | None:
    if not (0 <= hour <= 24 and 0 <= minute < 60) or (hour == 24 and minute):
        return None
    hour %= 24
    if marker == "pm" and hour < 12:
        hour += 12
    elif marker == "am" and hour == 12:
        hour = 0
    elif marker is None and 1 <= hour <= 11:
        fits = [h for h in (hour, hour + 12) if _fits(h, minute, low, high)]
        if len(fits) == 1:
            hour = fits[0]
        elif hour <= 6:
            hour += 12
    return f"{hour:02d}:{minute:02d}"


def parse_time(text: str, *, language: str, low: str | None = None, high: str | None = None) -> str | None:
    """``'HH:MM'`` (24 h) of what the caller said, or None."""
    said = digitize(text, language).lower().replace("o'clock", "oclock")
    said = re.sub(r"(\d)\s*([ap])\.?\s*m\b\.?", r"\1 \2m", said)
    for word, (hour, minute) in _WORDS.items():
        if re.search(rf"\b{word}\b", said):
            return f"{hour:02d}:{minute:02d}"
    marker = (
        "pm"
        if any(m in said for m in _PM)
        else "am"
        if any(re.search(rf"\b{m}\b", said) for m in _AM)
        else None
    )
    relative = _RELATIVE.search(said)
    if relative:
        amount, direction, hour_said = relative.groups()
        minutes = 30 if amount == "half" else 15 if amount == "quarter" else int(amount)
        base = int(hour_said) * 60 + (minutes if direction in ("past", "after") else -minutes)
        return _resolve(base // 60, base % 60, marker, low, high)
    compact = _COMPACT.match(said.strip())
    if compact:
        digits = compact.group(1)
        return _resolve(int(digits[:-2]), int(digits[-2:]), marker, low, high)
    clock = _CLOCK.search(said)
    if clock is None:
        return None
    if clock.group(1) is not None:
        return _resolve(int(clock.group(1)), int(clock.group(2)), marker, low, high)
    return _resolve(int(clock.group(3)), 0, marker, low, high)


def parse_time_keys(keys: str) -> str | None:
    """``HHMM`` keys (24 h): ``0930`` -> ``'09:30'``."""
    if len(keys) != 4 or not keys.isdigit():
        return None
    hour, minute = int(keys[:2]), int(keys[2:])
    return f"{hour:02d}:{minute:02d}" if hour < 24 and minute < 60 else None
