"""Alphanumeric references spelled out: "B as in bravo", the NATO alphabet, letter names ("bee", "zed"),
digits as words ("double seven" is 77), already-written runs ("AB12"). Stored upper case, no spaces.
"""

from __future__ import annotations

from ivr.flow.captures.words import DIGIT_WORDS, LETTER_NAMES, NATO, tokens

_AS_IN = frozenset({"as", "in", "for", "like"})
_SKIP = frozenset(
    {
        "my",
        "reference",
        "ref",
        "number",
        "code",
        "booking",
        "order",
        "account",
        "id",
        "is",
        "its",
        "it",
        "the",
        "and",
        "then",
        "dash",
        "hyphen",
        "space",
        "um",
        "uh",
        "er",
        "please",
        "capital",
        "letter",
        "that",
        "thats",
    }
)
_NUMBERS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
    "twenty": "20",
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "sixty": "60",
    "seventy": "70",
    "eighty": "80",
    "ninety": "90",
}


def _unit(word: str) -> str | None:
    """One letter or digit string a word stands for, or None."""
    if word in NATO:
        return NATO[word]
    if word in LETTER_NAMES:
        return LETTER_NAMES[word]
    if word in DIGIT_WORDS:
        return DIGIT_WORDS[word]
    if word in _NUMBERS:
        return _NUMBERS[word]
    if word.isdigit():
        return word
    if word.isalpha() and (len(word) == 1 or word.upper() == word):
        return word.upper()
    return None


def parse_alphanumeric(text: str) -> str | None:
    """The reference a caller spelled (upper case), or None if words other than letters and digits remain."""
    raw = text.replace("x-ray", "xray").replace("X-ray", "xray").replace("-", " ")
    # Runs the STT already wrote as a code ("AB12C") keep their case information: upper-case tokens.
    words = [
        w if any(c.isdigit() for c in w) or (w.isupper() and len(w) > 1) else w.lower() for w in raw.split()
    ]
    items = [
        t for w in words for t in (tokens(w) if not (w.isupper() or any(c.isdigit() for c in w)) else [w])
    ]
    out: list[str] = []
    i = 0
    while i < len(items):
        word = items[i]
        low = word.lower()
        nxt = items[i + 1].lower() if i + 1 < len(items) else ""
        if low == "double" and nxt in ("u", "you"):
            out.append("W")
            i += 2
            continue
        if low in ("double", "triple") and nxt:
            unit = _unit(nxt)
            if unit is not None and len(unit) == 1:
                out.append(unit * (2 if low == "double" else 3))
                i += 2
                continue
        if low in _AS_IN:
            # "B as in bravo", "B for bravo": the example word names the letter already taken
            j = i
            while j < len(items) and items[j].lower() in _AS_IN:
                j += 1
            if out and j < len(items) and len(out[-1]) == 1 and out[-1].isalpha():
                i = j + 1
                continue
            i = j
            continue
        unit = _unit(word if any(c.isdigit() for c in word) or word.isupper() else low)
        if unit is not None:
            out.append(unit)
        elif any(c.isdigit() for c in word) and word.isalnum():
            out.append(word.upper())
        elif low not in _SKIP:
            return None
        i += 1
    value = "".join(out)
    return value or None
