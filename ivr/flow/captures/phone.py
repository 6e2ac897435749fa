"""Phone numbers said or keyed, normalised to E.164 with ``phonenumbers`` (Google's libphonenumber data:
national and international forms, validity per country).

Speech: digits as words or figures, "double five", "oh", "plus four four ..."; a national number is read
in the capture's ``region`` (default: the language's country, e.g. en-GB -> GB, else US).
"""

from __future__ import annotations

from ivr.flow.captures.words import DIGIT_WORDS, digitize, tokens

_SKIP = frozenset(
    {
        "my",
        "number",
        "is",
        "its",
        "it",
        "the",
        "phone",
        "and",
        "dash",
        "space",
        "um",
        "uh",
        "er",
        "please",
        "call",
        "me",
        "on",
        "at",
    }
)


def default_region(language: str) -> str:
    parts = language.split("-")
    return parts[1].upper() if len(parts) > 1 and len(parts[1]) == 2 else "US"


def spoken_digits(text: str, language: str) -> str | None:
    """The keys a caller said: "four one five, double five" -> "41555"; None if other words remain."""
    words = tokens(digitize(text, language))
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word in ("double", "triple") and (nxt in DIGIT_WORDS or (nxt.isdigit() and len(nxt) == 1)):
            out.append((DIGIT_WORDS.get(nxt, nxt)) * (2 if word == "double" else 3))
            i += 2
            continue
        if word.isdigit():
            out.append(word)
        elif word in DIGIT_WORDS:
            out.append(DIGIT_WORDS[word])
        elif word == "+" or word == "plus":
            out.append("+")
        elif word not in _SKIP:
            return None
        i += 1
    joined = "".join(out)
    return joined if any(ch.isdigit() for ch in joined) else None


def normalise_phone(digits: str, region: str) -> str | None:
    """E.164 (``+14155552671``) when ``digits`` is a valid number in ``region`` (or international)."""
    import phonenumbers

    text = digits
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def grouped(e164: str) -> str:
    """``+14155552671`` read in groups, digit by digit: "4 1 5, 5 5 5, 2 6 7 1" (national form)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(e164, None)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        national = e164
    groups = ["".join(ch for ch in part if ch.isdigit()) for part in national.replace("-", " ").split()]
    return ", ".join(" ".join(group) for group in groups if group)


def warm() -> None:
    normalise_phone("4155552671", "US")
