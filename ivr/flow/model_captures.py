"""The schema of what a question collects: ``capture`` slots with their validation rules, reprompts, and
dynamic ``options`` (a menu read from a variable or a webhook result).

Each capture type is answered by speech and by DTMF and stores one normalised, JSON-friendly value:

========== ====================================== =====================================================
type       stores                                 DTMF entry
========== ====================================== =====================================================
digits     ``"00417"`` (a string: zeros survive)  keys until ``#``, ``max_length`` or a pause
number     ``25`` or ``3.5``                      keys until ``#`` or a pause
yes_no     ``true`` / ``false``                   1 yes, 2 no
enum       the value's name                       the value's ``dtmf`` key
text       what was said                          (speech only)
date       ``"2026-12-08"``                       ``dtmf_pattern`` such as ``DDMMYYYY``
time       ``"09:30"``                            ``HHMM`` (24 h)
money      ``12.5``                               ``12*50#`` (``*`` is the decimal point) or cents
phone      ``"+14155552671"`` (E.164)             keys until ``#`` or a pause
alphanumeric ``"AB12C"`` (upper case)             digits only (letters need speech)
========== ====================================== =====================================================
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from ivr.flow.model_types import (
    DtmfKey,
    Expression,
    Millis,
    Name,
    Phrases,
    Prompts,
    Speech,
    StepRef,
    Template,
    Text,
    _Model,
    _one_or_many,
)

CAPTURE_TYPES: tuple[str, ...] = (
    "digits",
    "number",
    "yes_no",
    "enum",
    "text",
    "date",
    "time",
    "money",
    "phone",
    "alphanumeric",
)
KEYED_TYPES: tuple[str, ...] = ("digits", "number", "date", "time", "money", "phone", "alphanumeric")
"""Types entered as a run of keys: every key is data there, so global DTMF intents are suspended."""
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DATE_PATTERNS: tuple[str, ...] = ("DDMMYYYY", "MMDDYYYY", "YYYYMMDD", "DDMMYY", "MMDDYY", "DDMM", "MMDD")
RELATIVE_DATE = re.compile(r"^today(?:\s*([+-])\s*(\d{1,4})\s*([dwmy]?))?$")
"""``today``, ``today+14`` (days), ``today+2w``, ``today-18y``: date limits relative to the call's start."""
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _enum_value(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, list | str):
        return {"synonyms": _one_or_many(value)}
    return value


def _limit(value: Any) -> Any:
    """YAML reads ``2027-01-01`` as a date and ``10:30`` as a number: take limits as written."""
    if hasattr(value, "isoformat") and not isinstance(value, int | float):
        return value.isoformat()
    return value


class EnumValue(_Model):
    synonyms: Phrases = Field(default_factory=list)
    dtmf: DtmfKey | None = None


class Reprompt(_Model):
    """What a failed answer says: ``prompt`` instead of the question, or ``prefix`` and then the question."""

    prompt: Prompts | None = Field(
        default=None, description="Said instead of the question; the n-th failure says the n-th."
    )
    prefix: Prompts | None = Field(
        default=None, description="Said before the question is asked again; the n-th failure says the n-th."
    )

    @model_validator(mode="after")
    def _prompt_or_prefix(self) -> Reprompt:
        if self.prompt is not None and self.prefix is not None:
            raise ValueError(
                "'prompt' replaces the question and 'prefix' comes before it: give one of them, not both"
            )
        return self


class Capture(_Model):
    """A slot filled from the caller's answer, with the rules the value must meet."""

    slot: Name = Field(description="Variable that receives the value.")
    type: Literal[
        "digits", "number", "yes_no", "enum", "text", "date", "time", "money", "phone", "alphanumeric"
    ]
    min_length: int | None = Field(
        default=None, ge=1, le=64, description="digits, alphanumeric, phone, text: fewest characters."
    )
    max_length: int | None = Field(
        default=None, ge=1, le=64, description="digits, alphanumeric, phone, text: most characters."
    )
    terminator: DtmfKey | None = Field(default=None, description="Keyed types: key that ends entry ('#').")
    inter_digit_timeout_ms: Millis | None = None
    min: Annotated[float | str | None, BeforeValidator(_limit)] = Field(
        default=None,
        description="number, money: smallest value; date: 'YYYY-MM-DD' or 'today+N'; time: 'HH:MM'.",
    )
    max: Annotated[float | str | None, BeforeValidator(_limit)] = Field(
        default=None, description="Largest value (like min)."
    )
    values: (
        dict[
            Name,
            Annotated[
                EnumValue,
                BeforeValidator(_enum_value, json_schema_input_type=EnumValue | list[str | int] | None),
            ],
        ]
        | None
    ) = Field(default=None, description="enum: value -> synonyms (list) or {synonyms, dtmf}.")
    pattern: str | None = Field(
        default=None, description="Regular expression the whole normalised value must match."
    )
    allowed: list[Text] | Expression | None = Field(
        default=None, description="The only values accepted: a list, or an expression giving one."
    )
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(
        default=None, description="date: the weekdays accepted."
    )
    prefer: Literal["future", "past"] | None = Field(
        default=None, description="date: what 'Tuesday' or 'the third' means (default future)."
    )
    dtmf_pattern: str | None = Field(default=None, description="date: key order, e.g. DDMMYYYY; time: HHMM.")
    currency: str | None = Field(
        default=None, description="money: ISO 4217 code (default settings.currency)."
    )
    dtmf_decimal: Literal["star", "cents", "none"] | None = Field(
        default=None,
        description="money keys: star ('12*50' is 12.50, default), cents ('1250' is 12.50), none (whole units).",
    )
    region: str | None = Field(
        default=None, description="phone: country for national numbers, e.g. US (default: from the language)."
    )
    confirm: bool | Speech | None = Field(
        default=None,
        description="Read the value back and ask yes/no; true uses settings.confirm_prompt.",
    )
    invalid: Reprompt | None = Field(
        default=None, description="Said when the answer was understood but broke a rule (a no_match)."
    )
    sensitive: bool = Field(default=False, description="Never logged, recorded or spoken back (PINs, cards).")

    _ONLY_FOR: ClassVar[dict[str, tuple[str, ...]]] = {
        "min_length": ("digits", "alphanumeric", "phone", "text"),
        "max_length": ("digits", "alphanumeric", "phone", "text"),
        "terminator": KEYED_TYPES,
        "inter_digit_timeout_ms": KEYED_TYPES,
        "min": ("number", "money", "date", "time"),
        "max": ("number", "money", "date", "time"),
        "values": ("enum",),
        "pattern": ("digits", "alphanumeric", "phone", "text"),
        "allowed": ("digits", "alphanumeric", "phone", "text", "date", "time", "number", "money"),
        "weekdays": ("date",),
        "prefer": ("date",),
        "dtmf_pattern": ("date", "time"),
        "currency": ("money",),
        "dtmf_decimal": ("money",),
        "region": ("phone",),
        "confirm": tuple(t for t in CAPTURE_TYPES if t != "yes_no"),
    }

    @model_validator(mode="after")
    def _keys_fit_type(self) -> Capture:
        for key, types in self._ONLY_FOR.items():
            if getattr(self, key) is not None and self.type not in types:
                raise ValueError(
                    f"'{key}' only applies to capture type {' or '.join(types)}, not {self.type}"
                )
        if self.type == "enum" and not self.values:
            raise ValueError("an enum capture needs 'values' (value -> synonyms)")
        if self.min_length and self.max_length and self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a regular expression: {exc}") from None
        for key in ("min", "max"):
            self._check_limit(key, getattr(self, key))
        if self.dtmf_pattern is not None:
            allowed = DATE_PATTERNS if self.type == "date" else ("HHMM",)
            if self.dtmf_pattern not in allowed:
                raise ValueError(f"'dtmf_pattern' for a {self.type} is one of {', '.join(allowed)}")
        if self.currency is not None and not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ValueError("'currency' is a three-letter ISO 4217 code such as USD or EUR")
        if self.region is not None and not re.fullmatch(r"[A-Z]{2}", self.region):
            raise ValueError("'region' is a two-letter country code such as US or GB")
        if self.sensitive and self.confirm:
            raise ValueError("a sensitive capture cannot be read back: remove 'confirm' or 'sensitive'")
        return self

    def _check_limit(self, key: str, value: float | str | None) -> None:
        if value is None:
            return
        if self.type in ("number", "money"):
            if isinstance(value, str):
                raise ValueError(f"'{key}' of a {self.type} capture is a number")
        elif self.type == "date":
            text = str(value).strip().lower().replace(" ", "")
            if not (ISO_DATE.match(text) or RELATIVE_DATE.match(text)):
                raise ValueError(f"'{key}' of a date capture is 'YYYY-MM-DD', 'today' or 'today+N' (days)")
        elif self.type == "time" and not (isinstance(value, str) and CLOCK_TIME.match(value)):
            raise ValueError(f"'{key}' of a time capture is 'HH:MM' (24 h, quoted)")


class Options(_Model):
    """A menu built at run time from a list (a webhook result, a variable): read out with keys 1-9."""

    from_: Expression = Field(alias="from", description="Expression giving the list, e.g. 'slots.available'.")
    label: Template = Field(
        description="Template naming one item (item is the list element), spoken and matched."
    )
    value: Expression | None = Field(
        default=None, description="Expression for what 'save' receives (default: the item itself)."
    )
    phrases: list[Template] = Field(
        default_factory=list, description="More templates per item that pick it when said."
    )
    say: Speech | None = Field(
        default=None,
        description="How each option is read out (label, key, item); default settings.option_prompt.",
    )
    max: int = Field(default=9, ge=1, le=9, description="At most this many options are offered.")
    empty: StepRef = Field(description="Where to go when the list is empty.")
