"""Spoken words to digits and letters, in the caller's language.

Number words become digits with ``text2num`` (English, French, Spanish, Portuguese, German, Dutch,
Danish, Italian): "twelve fifty" -> "12 50", "le trois mars" -> "le 3 mars". Letters come from their
names ("bee", "zed"), the NATO alphabet ("bravo") and "B as in bravo"; "double seven" is "77".
"""

from __future__ import annotations

import re

TEXT2NUM_LANGUAGES = frozenset({"en", "fr", "es", "pt", "de", "nl", "da", "it"})
NATO: dict[str, str] = {
    "alpha": "A",
    "alfa": "A",
    "bravo": "B",
    "charlie": "C",
    "delta": "D",
    "echo": "E",
    "foxtrot": "F",
    "golf": "G",
    "hotel": "H",
    "india": "I",
    "juliet": "J",
    "juliett": "J",
    "kilo": "K",
    "lima": "L",
    "mike": "M",
    "november": "N",
    "oscar": "O",
    "papa": "P",
    "quebec": "Q",
    "romeo": "R",
    "sierra": "S",
    "tango": "T",
    "uniform": "U",
    "victor": "V",
    "whiskey": "W",
    "whisky": "W",
    "xray": "X",
    "yankee": "Y",
    "zulu": "Z",
}
LETTER_NAMES: dict[str, str] = {
    "bee": "B",
    "be": "B",
    "see": "C",
    "sea": "C",
    "cee": "C",
    "dee": "D",
    "ef": "F",
    "eff": "F",
    "gee": "G",
    "aitch": "H",
    "eye": "I",
    "jay": "J",
    "kay": "K",
    "el": "L",
    "ell": "L",
    "em": "M",
    "en": "N",
    "pee": "P",
    "queue": "Q",
    "cue": "Q",
    "are": "R",
    "ar": "R",
    "ess": "S",
    "tee": "T",
    "tea": "T",
    "you": "U",
    "vee": "V",
    "ex": "X",
    "why": "Y",
    "zed": "Z",
    "zee": "Z",
}
DIGIT_WORDS: dict[str, str] = {
    "zero": "0",
    "oh": "0",
    "nought": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_TOKEN = re.compile(r"[a-z]+|\d+|[+*#]")
YES_NO: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "fr": (
        frozenset(
            {"oui", "ouais", "exact", "exactement", "daccord", "dac", "correct", "parfait", "volontiers"}
        ),
        frozenset({"non", "pas", "jamais", "incorrect", "faux"}),
    ),
    "es": (
        frozenset({"si", "sí", "claro", "correcto", "exacto", "vale", "dale"}),
        frozenset({"no", "nunca", "incorrecto"}),
    ),
    "de": (
        frozenset({"ja", "jawohl", "genau", "richtig", "korrekt", "gerne"}),
        frozenset({"nein", "nicht", "falsch", "kein"}),
    ),
    "it": (frozenset({"si", "sì", "certo", "esatto", "giusto"}), frozenset({"no", "non", "sbagliato"})),
    "pt": (frozenset({"sim", "claro", "certo", "exato", "correto"}), frozenset({"nao", "não", "errado"})),
    "nl": (frozenset({"ja", "jawel", "klopt", "correct", "precies"}), frozenset({"nee", "niet", "fout"})),
}
"""Yes and no words beyond English (English is :func:`ivr.flow.intents.parse_yes_no`); any no wins."""


def primary(language: str) -> str:
    return language.split("-")[0].lower()


def digitize(text: str, language: str) -> str:
    """Number words turned into digits where text2num knows the language; the text as is otherwise."""
    lang = primary(language)
    if lang not in TEXT2NUM_LANGUAGES or not text.strip():
        return text
    from text_to_num import alpha2digit

    try:
        return str(alpha2digit(text, lang, threshold=0))
    except (ValueError, RuntimeError):  # a grammar text2num rejects: keep the words
        return text


def tokens(text: str) -> list[str]:
    """Lower-case words, digit runs and the keys + * #; apostrophes and x-ray's hyphen dropped."""
    text = text.lower().replace("'", "").replace("\u2019", "").replace("x-ray", "xray")
    return _TOKEN.findall(text)


def yes_no(text: str, language: str) -> bool | None:
    """True for yes, False for no, None for neither, in ``language`` (English words count everywhere)."""
    from ivr.flow.intents import parse_yes_no

    words = {w.replace("\u00ed", "i") for w in re.findall(r"[^\W\d_]+", text.lower().replace("'", ""))}
    table = YES_NO.get(primary(language))
    if table is not None:
        yes, no = table
        if words & no:
            return False
        if words & yes:
            return True
    return parse_yes_no(text)


def warm(languages: list[str]) -> None:
    """Load text2num before the first call (its first use costs a few milliseconds of import)."""
    if any(primary(lang) in TEXT2NUM_LANGUAGES for lang in languages):
        digitize("one", "en")
