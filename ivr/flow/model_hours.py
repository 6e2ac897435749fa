"""The schema of business hours: weekly opening times, holidays and special days, per named calendar.

::

    hours:
      office:
        timezone: Europe/London          # default: settings.timezone
        open:
          mon-fri: "08:00-18:00"
          sat: ["09:00-12:00"]
        closed:                          # holidays (the whole day) or special hours
          - 2026-12-25
          - {date: 2026-12-24, hours: "08:00-12:00", name: Christmas Eve}
        include: [uk-holidays.yaml]      # more 'closed' entries from files beside the flow

Flows read a calendar as ``hours.office.open`` (a boolean, at the moment of the event) and friends; see
:mod:`ivr.flow.calendar`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from ivr.flow.model_captures import ISO_DATE, WEEKDAYS
from ivr.flow.model_types import _Model

DAY_SPEC = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?$")
SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-4]):([0-5]\d)$")


def _iso(value: Any) -> Any:
    """YAML reads an unquoted 2026-12-25 as a date: take it as written."""
    if hasattr(value, "isoformat") and not isinstance(value, str | int | float):
        return value.isoformat()
    return value


def _spans(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _closed_entry(value: Any) -> Any:
    value = _iso(value)
    return {"date": value} if isinstance(value, str) else value


IsoDate = Annotated[str, BeforeValidator(_iso)]
Spans = Annotated[list[str], BeforeValidator(_spans)]


def check_span(span: str) -> str:
    match = SPAN.match(span.strip())
    if not match:
        raise ValueError(f"{span!r} is not a time span; expected 'HH:MM-HH:MM', e.g. '08:00-18:00'")
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if end <= start or end > 24 * 60:
        raise ValueError(f"{span!r} ends before it starts (spans past midnight: split them per day)")
    return span


def expand_days(spec: str) -> list[str]:
    """``mon-fri`` -> [mon, tue, wed, thu, fri]; ``mon,wed`` -> [mon, wed]; ``sat`` -> [sat]."""
    days: list[str] = []
    for part in spec.replace(" ", "").lower().split(","):
        match = DAY_SPEC.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a day; expected mon..sun, a range such as mon-fri, or a list")
        first = WEEKDAYS.index(match.group(1))
        last = WEEKDAYS.index(match.group(3)) if match.group(3) else first
        if last < first:
            raise ValueError(f"{part!r}: a day range runs forward within one week (mon-fri, not fri-mon)")
        days.extend(WEEKDAYS[first : last + 1])
    return days


class ClosedDay(_Model):
    """A holiday (closed all day) or a day with special hours."""

    date: IsoDate = Field(description="The day, YYYY-MM-DD.")
    hours: Spans | None = Field(default=None, description="Opening hours that day instead of closing.")
    name: str | None = Field(default=None, description="What the day is (readable as hours.X.holiday).")

    @field_validator("date")
    @classmethod
    def _date(cls, value: str) -> str:
        if not ISO_DATE.match(value):
            raise ValueError(f"{value!r} is not a date; expected YYYY-MM-DD")
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[str] | None) -> list[str] | None:
        return [check_span(s) for s in value] if value is not None else None


class Hours(_Model):
    """One named calendar: weekly opening hours, holidays and special days, in one time zone."""

    timezone: str | None = Field(default=None, description="IANA time zone (default settings.timezone).")
    open: dict[str, Spans] = Field(
        description="Weekly hours: {mon-fri: '08:00-18:00', sat: ['09:00-12:00']}; days not named are closed."
    )
    closed: list[Annotated[ClosedDay, BeforeValidator(_closed_entry)]] = Field(
        default_factory=list, description="Holidays (YYYY-MM-DD) and special days ({date, hours, name})."
    )
    include: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+\.ya?ml$")]] = Field(
        default_factory=list, description="Files beside the flow with more 'closed' entries."
    )

    @field_validator("open")
    @classmethod
    def _open(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for spec, spans in value.items():
            for day in expand_days(spec):
                if day in seen:
                    raise ValueError(f"{day} is named twice: in {seen[day]!r} and {spec!r}")
                seen[day] = spec
            for span in spans:
                check_span(span)
        return value
