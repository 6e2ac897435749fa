"""Values read back to the caller in the call's language: dates, times, money, phone numbers, codes.

Locale data comes from ``babel`` (CLDR), so "2026-12-08" is "Tuesday, December 8, 2026" in English and
"mardi 8 décembre 2026" in French. The same functions are the template filters ``say_date``,
``say_time``, ``say_money``, ``say_phone`` and ``say_chars``; they read the call's language from the
template context (``call.language``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import jinja2

DEFAULT_LANGUAGE = "en-US"


def _locale(language: str) -> str:
    return language.replace("-", "_")


def say_date(value: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """``'2026-12-08'`` (or a moment such as ``now``) -> "Tuesday, December 8, 2026"."""
    from babel.dates import format_date

    if isinstance(value, Mapping):
        value = value.get("date")
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    try:
        return str(format_date(day, format="full", locale=_locale(language)))
    except (ValueError, LookupError):
        return str(format_date(day, format="full", locale="en_US"))


def say_time(value: Any, language: str = DEFAULT_LANGUAGE) -> str:
    """``'21:30'`` -> "9:30 PM" (en-US), "21:30" (fr-FR)."""
    from babel.dates import format_time

    if isinstance(value, Mapping):
        value = value.get("time")
    hours, minutes = str(value).split(":")[:2]
    clock = dt.time(int(hours) % 24, int(minutes))
    try:
        return str(format_time(clock, format="short", locale=_locale(language)))
    except (ValueError, LookupError):
        return str(format_time(clock, format="short", locale="en_US"))


def say_money(value: Any, currency: str = "USD", language: str = DEFAULT_LANGUAGE) -> str:
    """``12.5`` -> "$12.50" (en-US), "12,50 €" (fr-FR, EUR)."""
    from babel.numbers import format_currency

    try:
        return str(format_currency(float(value), currency, locale=_locale(language)))
    except (ValueError, LookupError):
        return f"{float(value):.2f} {currency}"


def currency_decimals(currency: str) -> int:
    from babel.numbers import get_currency_precision

    try:
        return int(get_currency_precision(currency))
    except (ValueError, LookupError):
        return 2


def say_chars(value: Any) -> str:
    """``'AB12'`` -> "A B 1 2": codes read character by character."""
    return " ".join(str(value).replace(" ", ""))


def say_phone(value: Any) -> str:
    from ivr.flow.captures.phone import grouped

    return grouped(str(value))


def _language(context: Any) -> str:
    call = context.get("call") if hasattr(context, "get") else None
    language = call.get("language") if isinstance(call, Mapping) else None
    return str(language or DEFAULT_LANGUAGE)


def template_filters() -> dict[str, Callable[..., str]]:
    """The read-back filters, in the call's language (``{{ when | say_date }}``)."""

    @jinja2.pass_context
    def date_filter(context: Any, value: Any) -> str:
        return say_date(value, _language(context))

    @jinja2.pass_context
    def time_filter(context: Any, value: Any) -> str:
        return say_time(value, _language(context))

    @jinja2.pass_context
    def money_filter(context: Any, value: Any, currency: str = "USD") -> str:
        return say_money(value, currency, _language(context))

    return {
        "say_date": date_filter,
        "say_time": time_filter,
        "say_money": money_filter,
        "say_phone": say_phone,
        "say_chars": say_chars,
    }


def warm(languages: list[str]) -> None:
    """Load babel's locale data for the flow's languages before the first call."""
    for language in languages:
        say_date("2026-01-01", language)
        say_time("09:30", language)
        say_money(1, "USD", language)
