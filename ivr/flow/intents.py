"""Deterministic matching of what the caller said: normalisation, number words, keyword/phrase choices.

Transcripts and phrases are normalised the same way (lower case, punctuation dropped, number words
turned into digits: "one" == "1", "twenty five" == "25"), then a choice matches when one of its phrases
appears as a whole-word sequence in the transcript (a phrase of several words also with one extra word
slipped in: "lost my card" says "lost card", scored below the exact phrase). The longest matching phrase wins, ties go to the
earlier choice. A choice whose DTMF key is said on its own ("two", "option 2", "press two") matches too.
When nothing matches exactly, a phrase that the words said closely resemble (a typical STT mishearing,
"then crust" for "thin crust") matches if it is clearly closer than any other; failing that, a short answer
that *sounds* like exactly one of the step's phrases ("then" for "thin", "barge" for "large": same or
nearly the same Metaphone key) matches it. Both are conservative: a wrong match is worse than a reprompt.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import jellyfish

_UNITS = {
    "zero": 0,
    "oh": 0,
    "o": 0,
    "nought": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_ORDINALS = {
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "sixth": "6",
    "seventh": "7",
    "eighth": "8",
    "ninth": "9",
}
_KEY_WORDS = {"star": "*", "asterisk": "*", "hash": "#", "pound": "#", "hashtag": "#"}
_FILLER = frozenset(
    {
        "option",
        "number",
        "press",
        "pressing",
        "i",
        "choose",
        "pick",
        "select",
        "want",
        "the",
        "please",
        "um",
        "uh",
        "er",
        "erm",
        "like",
        "ok",
        "okay",
        "so",
        "well",
        "key",
        "digit",
        "would",
        "to",
        "id",
        "a",
    }
)
YES_WORDS = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "yup",
        "ya",
        "yah",
        "sure",
        "correct",
        "right",
        "affirmative",
        "absolutely",
        "definitely",
        "certainly",
        "ok",
        "okay",
        "confirm",
        "confirmed",
        "true",
        "indeed",
        "alright",
    }
)
NO_WORDS = frozenset(
    {
        "no",
        "nope",
        "nah",
        "not",
        "dont",
        "don't",
        "incorrect",
        "wrong",
        "negative",
        "never",
        "cancel",
        "false",
    }
)


def tokens(text: str) -> list[str]:
    """Lower-cased words without punctuation (apostrophes dropped: "don't" -> "dont")."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return re.findall(r"[a-z]+|\d+|[*#]", text)


def _number_run(words: Sequence[str], start: int) -> tuple[int, int] | None:
    """Parse a cardinal like "two hundred and five" at ``start``; return (value, words used)."""
    total, current, used, seen = 0, 0, 0, False
    i = start
    while i < len(words):
        w = words[i]
        if w in _UNITS and w != "o":
            rest = current % 100
            if seen and rest and not (rest >= 20 and rest % 10 == 0):
                break
            current += _UNITS[w]
        elif w in _TENS:
            if seen and current % 100:
                break
            current += _TENS[w]
        elif w in _SCALES and seen:
            scale = _SCALES[w]
            if scale == 100:
                current *= 100
            else:
                total += current * scale
                current = 0
        elif w == "and" and seen and i + 1 < len(words) and (words[i + 1] in _UNITS or words[i + 1] in _TENS):
            pass
        else:
            break
        seen = True
        i += 1
        used = i - start
    return (total + current, used) if seen else None


def normalise(text: str) -> list[str]:
    """Tokens with number words folded into digits: "twenty five" -> ["25"], "one two" -> ["1", "2"]."""
    words = tokens(text)
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _ORDINALS:
            out.append(_ORDINALS[w])
            i += 1
            continue
        if (
            w in ("double", "triple")
            and i + 1 < len(words)
            and words[i + 1] in _UNITS
            and _UNITS[words[i + 1]] < 10
        ):
            out.extend([str(_UNITS[words[i + 1]])] * (2 if w == "double" else 3))
            i += 2
            continue
        if (
            w in _UNITS
            and _UNITS[w] < 10
            and w != "o"
            and not (i + 1 < len(words) and words[i + 1] in _SCALES)
        ):
            out.append(str(_UNITS[w]))
            i += 1
            continue
        run = _number_run(words, i) if (w in _UNITS or w in _TENS) else None
        if run is not None:
            value, used = run
            out.append(str(value))
            i += used
            continue
        out.append(w)
        i += 1
    return out


def parse_digits(text: str) -> str | None:
    """Spoken digit strings: "one two three four", "12 34", "double five oh" -> "12345500"... None if words."""
    parts: list[str] = []
    for tok in normalise(text):
        if tok.isdigit():
            parts.append(tok)
        elif tok in _KEY_WORDS or tok in ("and", "dash", "space") or tok in _FILLER:
            continue
        else:
            return None
    return "".join(parts) or None


def parse_number(text: str) -> float | None:
    """A spoken or written number: "twenty five" -> 25, "3.5" -> 3.5, "minus two" -> -2."""
    raw = text.strip().lower().replace(",", "")
    try:
        return float(raw)
    except ValueError:
        pass
    words = [w for w in tokens(raw) if w not in _FILLER]
    if not words:
        return None
    sign = 1.0
    if words[0] in ("minus", "negative"):
        sign, words = -1.0, words[1:]
    if len(words) == 1 and words[0].isdigit():
        return sign * float(words[0])
    if words and all(w in _UNITS or w in _TENS or w in _SCALES or w == "and" for w in words):
        run = _number_run(words, 0)
        if run is not None and run[1] == len(words):
            return sign * float(run[0])
    return None


def parse_yes_no(text: str) -> bool | None:
    """True for yes, False for no, None if neither; any negation wins ("yes, no wait" -> no)."""
    words = tokens(text)
    if any(w in NO_WORDS for w in words):
        return False
    if any(w in YES_WORDS for w in words):
        return True
    return None


@dataclass(frozen=True)
class Candidate:
    """Something the caller can pick: a menu choice, an enum value or a global intent."""

    name: str
    phrases: tuple[str, ...]
    dtmf: str | None = None


@functools.lru_cache(maxsize=4096)
def _phrase(phrase: str) -> tuple[str, ...]:
    """A flow's phrase normalised once: the phrases are the flow's (a bounded set), the transcripts are not."""
    return tuple(normalise(phrase))


@functools.lru_cache(maxsize=4096)
def _content_phrase(phrase: str) -> tuple[str, ...]:
    words = _phrase(phrase)
    return tuple(w for w in words if w not in _FILLER) or words


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _contains_spread(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """A phrase of several words said with one word slipped in between ("lost my card" for "lost card")."""
    if len(needle) < 2:
        return False
    for i in range(len(haystack)):
        j, k, extra = i, 0, 0
        while j < len(haystack) and k < len(needle):
            if haystack[j] == needle[k]:
                k += 1
            elif k == 0 or extra:
                break
            else:
                extra += 1
            j += 1
        if k == len(needle):
            return True
    return False


def match(text: str, candidates: Iterable[Candidate]) -> str | None:
    """Name of the best matching candidate for a transcript, or None."""
    said = tuple(normalise(text))
    if not said:
        return None
    best: tuple[int, str] | None = None
    content = tuple(w for w in said if w not in _FILLER)
    for cand in candidates:
        score = 0
        for phrase in (*cand.phrases, cand.name.replace("_", " ")):
            needle = _phrase(phrase)
            if _contains(said, needle):
                score = max(score, len(needle) * 10)
            elif _contains_spread(said, needle):
                score = max(score, len(needle) * 10 - 6)  # below the same phrase said as written
        if cand.dtmf is not None:
            key = _KEY_WORDS.get(content[0], content[0]) if len(content) == 1 else None
            if key == cand.dtmf:
                score = max(score, 5)
        if score and (best is None or score > best[0]):
            best = (score, cand.name)
    if best is not None:
        return best[1]
    cands = list(candidates)
    return _near_match(said, cands) or _sounds_like(content, cands)


FUZZY_MIN_RATIO = 0.8
"""How alike a phrase and the words said must be to count as a mishearing of it ("then crust")."""
_FUZZY_MARGIN = 0.1
_FUZZY_MIN_CHARS = 5


_NEAR_FLOOR = FUZZY_MIN_RATIO - _FUZZY_MARGIN
"""A likeness at or below this can neither win nor block a winner (which needs FUZZY_MIN_RATIO and a margin)."""


def _near_match(said: Sequence[str], candidates: Iterable[Candidate]) -> str | None:
    """STT mishears short words; when nothing matched exactly, accept one clearly closest phrase.

    Only phrases of five characters or more take part ("no" and "yes" never match by likeness), and the
    winner must beat every other candidate by a margin, so an unclear answer stays a no-match.

    Cost: the flow engine runs this for every answer that matched nothing, on a thread sharing the GIL with
    the calls' audio, so each phrase is analysed once (``SequenceMatcher``'s second sequence) and a window
    whose cheap upper bounds cannot beat what is known is never compared in full; the result is the same.
    """
    scores: dict[str, float] = {}
    for cand in candidates:
        for phrase in (*cand.phrases, cand.name.replace("_", " ")):
            needle = _phrase(phrase)
            joined = " ".join(needle)
            if len(joined) < _FUZZY_MIN_CHARS or not needle or len(needle) > len(said):
                continue
            n = len(needle)
            matcher = difflib.SequenceMatcher(None, b=joined)
            for i in range(len(said) - n + 1):
                floor = max(scores.get(cand.name, 0.0), _NEAR_FLOOR)
                matcher.set_seq1(" ".join(said[i : i + n]))
                if matcher.real_quick_ratio() <= floor or matcher.quick_ratio() <= floor:
                    continue
                ratio = matcher.ratio()
                if ratio > scores.get(cand.name, 0.0):
                    scores[cand.name] = ratio
    return near_winner(scores)


def near_winner(scores: dict[str, float]) -> str | None:
    """The candidate whose best likeness reaches FUZZY_MIN_RATIO and beats every other by the margin."""
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    if not ranked or ranked[0][1] < FUZZY_MIN_RATIO:
        return None
    if len(ranked) > 1 and ranked[1][1] > ranked[0][1] - _FUZZY_MARGIN:
        return None
    return ranked[0][0]


PHONETIC_MAX_WORDS = 4
"""Only answers of at most this many content words are matched by sound (a short answer misheard)."""
_PHONETIC_NEAR_SIMILARITY = 0.8


@functools.lru_cache(maxsize=8192)
def _key(word: str) -> str:
    return jellyfish.metaphone(word) if word.isalpha() else word


def _sound_tier(said: Sequence[str], phrase: Sequence[str]) -> int:
    """2: every word has the same Metaphone key; 1: one key differs by one sound (keys of two sounds or
    more, one of them three or more) and the spellings stay alike (Jaro-Winkler >= 0.8); 0: not alike."""
    if list(said) == list(phrase) or len("".join(phrase)) < 4:
        return 0
    off = 0
    for a, b in zip(said, phrase, strict=True):
        if a == b:
            continue
        if a.isdigit() or b.isdigit():
            return 0
        ka, kb = _key(a), _key(b)
        if ka == kb:
            continue
        near = (
            max(len(ka), len(kb)) >= 3
            and min(len(ka), len(kb)) >= 2
            and jellyfish.levenshtein_distance(ka, kb) == 1
            and jellyfish.jaro_winkler_similarity(a, b) >= _PHONETIC_NEAR_SIMILARITY
        )
        if not near:
            return 0
        off += 1
    return 2 if off == 0 else 1 if off == 1 else 0


def _sounds_like(content: Sequence[str], candidates: Iterable[Candidate]) -> str | None:
    """The one candidate a short answer sounds like; None when none does or several do equally."""
    if not content or len(content) > PHONETIC_MAX_WORDS:
        return None
    tiers: dict[str, int] = {}
    spelled: dict[str, float] = {}
    for cand in candidates:
        for phrase in (*cand.phrases, cand.name.replace("_", " ")):
            needle = _content_phrase(phrase)
            n = len(needle)
            matcher = difflib.SequenceMatcher(None, b=" ".join(needle))
            for i in range(len(content) - n + 1):
                window = content[i : i + n]
                tier = _sound_tier(window, needle)
                if tier > tiers.get(cand.name, 0):
                    tiers[cand.name] = tier
                matcher.set_seq1(" ".join(window))
                # only a likeness of FUZZY_MIN_RATIO or more counts below: skip what cannot reach it
                if matcher.real_quick_ratio() < FUZZY_MIN_RATIO or matcher.quick_ratio() < FUZZY_MIN_RATIO:
                    continue
                spelled[cand.name] = max(spelled.get(cand.name, 0.0), matcher.ratio())
    return sound_winner(tiers, spelled)


def sound_winner(tiers: dict[str, int], spelled: dict[str, float]) -> str | None:
    """The one candidate of the best sound tier, unless another is spelled as closely (too close to call)."""
    if not tiers:
        return None
    top = max(tiers.values())
    winners = [name for name, tier in tiers.items() if tier == top]
    if len(winners) != 1:
        return None
    rivals = [name for name, ratio in spelled.items() if name != winners[0] and ratio >= FUZZY_MIN_RATIO]
    return None if rivals else winners[0]


def match_dtmf(digit: str, candidates: Iterable[Candidate]) -> str | None:
    return next((c.name for c in candidates if c.dtmf is not None and c.dtmf == digit), None)
