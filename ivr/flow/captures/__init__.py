"""What a caller's answer means for a ``capture``: a normalised value, a value that breaks a rule, or
nothing understood. Pure functions; see :mod:`ivr.flow.model_captures` for the types and their values.

:func:`from_speech` and :func:`from_keys` return :class:`Understood` (the value passed every rule),
:class:`Rejected` (understood, but it broke a rule: counted as a no_match, with the capture's ``invalid``
prompt) or None (not understood: a no_match). :func:`readback` says a value back for ``confirm``.
Relative dates and limits use the call's start (:attr:`CaptureContext.started`), never the wall clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ivr.flow import spoken
from ivr.flow.captures import alnum, dates, money, phone, times, words
from ivr.flow.clock import local
from ivr.flow.intents import parse_digits, parse_number
from ivr.flow.model_captures import WEEKDAYS, Capture

INVALID_REASONS: dict[str, str] = {
    "too_short": "fewer characters than min_length",
    "too_long": "more characters than max_length",
    "too_small": "below min",
    "too_large": "above max",
    "too_early": "a date or time before min",
    "too_late": "a date or time after max",
    "pattern": "does not match pattern",
    "not_allowed": "not one of the allowed values",
    "weekday": "a date on a weekday not in weekdays",
}


@dataclass(frozen=True)
class CaptureContext:
    """What interpretation needs from the call: its language, time zone and start, defaults."""

    language: str = "en-US"
    timezone: str = "UTC"
    started: float = 0.0
    """Epoch seconds of the call's start: 'tomorrow' and 'today+14' count from here."""
    currency: str = "USD"
    allowed: tuple[str, ...] | None = None
    """The capture's ``allowed`` list, evaluated (it may be an expression)."""

    @property
    def start(self) -> dt.datetime:
        return local(self.started, self.timezone).replace(tzinfo=None)


@dataclass(frozen=True)
class Understood:
    value: Any


@dataclass(frozen=True)
class Rejected:
    value: Any
    reason: str


Result = Understood | Rejected | None


def key_entry(cap: Capture) -> tuple[int | None, str]:
    """(entry length that ends input by itself, terminator) for a keyed capture."""
    terminator = cap.terminator or "#"
    if cap.type == "date":
        return len(cap.dtmf_pattern or "DDMMYYYY"), terminator
    if cap.type == "time":
        return 4, terminator
    if cap.type in ("digits", "alphanumeric"):
        return cap.max_length, terminator
    return None, terminator


def star_is_data(cap: Capture) -> bool:
    """Money keys use ``*`` as the decimal point (unless the capture terminates on ``*``)."""
    return cap.type == "money" and (cap.dtmf_decimal or "star") == "star" and (cap.terminator or "#") != "*"


def _decimals(cap: Capture, ctx: CaptureContext) -> int:
    return spoken.currency_decimals(cap.currency or ctx.currency)


def from_speech(cap: Capture, text: str, ctx: CaptureContext) -> Result:
    """Meaning of an utterance for a capture of any type but enum and yes_no (see questions)."""
    value: Any = None
    if cap.type == "digits":
        value = parse_digits(text)
    elif cap.type == "number":
        number = parse_number(text)
        value = None if number is None else (int(number) if number == int(number) else number)
    elif cap.type == "text":
        said = text.strip().rstrip(".!?,;: ").strip()
        value = said or None
    elif cap.type == "date":
        day = dates.parse_date(text, language=ctx.language, base=ctx.start, prefer=cap.prefer or "future")
        value = day.isoformat() if day else None
    elif cap.type == "time":
        value = times.parse_time(text, language=ctx.language, low=_clock(cap.min), high=_clock(cap.max))
    elif cap.type == "money":
        value = money.parse_money(text, language=ctx.language, decimals=_decimals(cap, ctx))
    elif cap.type == "phone":
        digits = phone.spoken_digits(text, ctx.language)
        value = _phone(cap, digits, ctx)
        if digits and value is None:
            return Rejected(digits, "pattern")
    elif cap.type == "alphanumeric":
        value = alnum.parse_alphanumeric(text)
    return None if value is None else check(cap, value, ctx)


def from_keys(cap: Capture, keys: str, ctx: CaptureContext) -> Result:
    """Meaning of a finished key entry for a keyed capture."""
    value: Any = None
    if cap.type in ("digits", "alphanumeric"):
        value = keys if keys.isdigit() else None
    elif cap.type == "number":
        value = int(keys) if keys.isdigit() else None
    elif cap.type == "date":
        day = dates.parse_date_keys(keys, cap.dtmf_pattern or "DDMMYYYY", ctx.start.date())
        value = day.isoformat() if day else None
    elif cap.type == "time":
        value = times.parse_time_keys(keys)
    elif cap.type == "money":
        value = money.parse_money_keys(keys, cap.dtmf_decimal or "star", _decimals(cap, ctx))
    elif cap.type == "phone":
        value = _phone(cap, keys, ctx) if keys.isdigit() else None
        if keys.isdigit() and value is None:
            return Rejected(keys, "pattern")
    return None if value is None else check(cap, value, ctx)


def _phone(cap: Capture, digits: str | None, ctx: CaptureContext) -> str | None:
    if not digits:
        return None
    return phone.normalise_phone(digits, cap.region or phone.default_region(ctx.language))


def _clock(limit: float | str | None) -> str | None:
    return limit if isinstance(limit, str) else None


def check(cap: Capture, value: Any, ctx: CaptureContext) -> Understood | Rejected:
    """Apply the capture's rules to an understood value."""
    reason = _broken_rule(cap, value, ctx)
    return Understood(value) if reason is None else Rejected(value, reason)


def _broken_rule(cap: Capture, value: Any, ctx: CaptureContext) -> str | None:
    text = str(value)
    if cap.type in ("digits", "alphanumeric", "phone", "text"):
        size = len(text.lstrip("+")) if cap.type == "phone" else len(text)
        if cap.min_length is not None and size < cap.min_length:
            return "too_short"
        if cap.max_length is not None and size > cap.max_length:
            return "too_long"
    if cap.type in ("number", "money"):
        if cap.min is not None and float(value) < float(cap.min):
            return "too_small"
        if cap.max is not None and float(value) > float(cap.max):
            return "too_large"
    if cap.type == "date":
        day = dt.date.fromisoformat(text)
        base = ctx.start.date()
        if cap.min is not None and day < dates.date_limit(cap.min, base):
            return "too_early"
        if cap.max is not None and day > dates.date_limit(cap.max, base):
            return "too_late"
        if cap.weekdays is not None and WEEKDAYS[day.weekday()] not in cap.weekdays:
            return "weekday"
    if cap.type == "time":
        if isinstance(cap.min, str) and text < cap.min:
            return "too_early"
        if isinstance(cap.max, str) and text > cap.max:
            return "too_late"
    if cap.pattern is not None and re.fullmatch(cap.pattern, text) is None:
        return "pattern"
    if ctx.allowed is not None:
        fold = cap.type == "alphanumeric"
        allowed = {a.upper() if fold else a for a in ctx.allowed}
        if (text.upper() if fold else text) not in allowed:
            return "not_allowed"
    return None


def readback(cap: Capture, value: Any, ctx: CaptureContext) -> str:
    """How a captured value is said back (``heard`` in the confirm prompt)."""
    if cap.type == "date":
        return spoken.say_date(value, ctx.language)
    if cap.type == "time":
        return spoken.say_time(value, ctx.language)
    if cap.type == "money":
        return spoken.say_money(value, cap.currency or ctx.currency, ctx.language)
    if cap.type == "phone":
        return spoken.say_phone(value)
    if cap.type in ("digits", "alphanumeric"):
        return spoken.say_chars(value)
    if cap.type == "enum":
        return str(value).replace("_", " ")
    return str(value)


def allowed_values(raw: Sequence[Any] | Any) -> tuple[str, ...] | None:
    """An evaluated ``allowed`` (a list) as strings; None when it is not a list."""
    if isinstance(raw, list | tuple):
        return tuple(str(v) for v in raw)
    return None


def warm(captures: Sequence[Capture], languages: list[str]) -> None:
    """Load the parsers and locale data a flow's captures need, before its first call: their first use
    costs up to a tenth of a second, which must not land on a live call's event loop."""
    kinds = {c.type for c in captures}
    if kinds & {"date", "time", "money", "phone", "digits", "number"}:
        words.warm(languages)
    if "date" in kinds:
        dates.warm(languages)
    if "phone" in kinds:
        phone.warm()
    if kinds & {"date", "time", "money", "phone"} or any(c.confirm for c in captures):
        spoken.warm(languages)
