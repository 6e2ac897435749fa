"""Amounts of money said or keyed: "twelve fifty", "12.50", "$12.50", "twelve dollars and fifty cents",
"12,50 €", "fifty cents"; keys ``12*50`` (``*`` is the decimal point), cents (``1250``) or whole units.
"""

from __future__ import annotations

import re

from ivr.flow.captures.words import digitize, primary

_CURRENCY_WORDS = (
    "dollars?|bucks?|euros?|pounds?|quid|francs?|yen|pesos?|rupees?|dinars?|kronor|kroner|krona|krone|"
    "usd|eur|gbp|chf|cad|aud"
)
_MINOR_WORDS = "cents?|pence|p|centimes?|céntimos?|centavos?|centesimi|cent"
_SYMBOLS = "$€£¥₹"
_MAJOR_MINOR = re.compile(
    rf"(\d+)\s*(?:{_CURRENCY_WORDS})\s*(?:and\s+|et\s+|y\s+|e\s+|und\s+)?(\d{{1,2}})?\s*(?:{_MINOR_WORDS})?$"
)
_MINOR_ONLY = re.compile(rf"^(\d{{1,2}})\s*(?:{_MINOR_WORDS})$")
_PAIR = re.compile(r"^(\d+)\s+(\d{2})$")
_DECIMAL = re.compile(r"^(\d{1,3}(?:[,.\s]\d{3})*|\d+)(?:([.,])(\d{1,2}))?$")
_FILLER = re.compile(r"\b(about|around|exactly|just|it's|its|it is|that's|the|amount|is|of|please|um|uh)\b")


def _clean(text: str, language: str) -> str:
    said = digitize(text, language).lower()
    for symbol in _SYMBOLS:
        said = said.replace(symbol, " ")
    said = _FILLER.sub(" ", said)
    return " ".join(said.replace("-", " ").split()).strip(" .!?")


def parse_money(text: str, *, language: str, decimals: int = 2) -> float | None:
    """The amount a caller said, rounded to the currency's ``decimals``, or None."""
    said = _clean(text, language)
    if not said:
        return None
    value: float | None = None
    if match := _MINOR_ONLY.match(said):
        value = int(match.group(1)) / 100
    elif match := _MAJOR_MINOR.search(said):
        value = int(match.group(1)) + (int(match.group(2)) / 100 if match.group(2) else 0.0)
    else:
        bare = re.sub(rf"\s*\b(?:{_CURRENCY_WORDS})\b\s*", " ", said).strip()
        if match := _PAIR.match(bare):  # "twelve fifty" -> "12 50"
            value = int(match.group(1)) + int(match.group(2)) / 100
        elif match := _DECIMAL.match(bare):
            whole, point, fraction = match.groups()
            grouping = "," if primary(language) == "en" else ". "
            if point is None and any(sep in whole for sep in ",. ") and len(whole.split(",")[-1]) != 3:
                return None
            whole_digits = "".join(ch for ch in whole if ch.isdigit() or ch not in grouping + ",. ")
            value = float(whole_digits) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
    if value is None:
        return None
    return round(value, decimals)


def parse_money_keys(keys: str, scheme: str, decimals: int = 2) -> float | None:
    """``12*50`` (star), ``1250`` (cents: the last two keys are cents) or ``12`` (none: whole units)."""
    if not keys or set(keys) - set("0123456789*"):
        return None
    if scheme == "star":
        whole, _, fraction = keys.partition("*")
        if "*" in fraction or not (whole or fraction) or len(fraction) > decimals:
            return None
        amount = int(whole or "0") + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
        return round(float(amount), decimals)
    if "*" in keys:
        return None
    if scheme == "cents":
        return round(int(keys) / float(10**decimals), decimals)
    return float(int(keys))
