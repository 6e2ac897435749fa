"""The fuzzy matching's shortcuts (phrases analysed once, windows skipped by upper bounds) change nothing:
every answer matches what the plain comparison of every window with every phrase gives."""

from __future__ import annotations

import difflib

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.flow import intents
from ivr.flow.intents import Candidate, normalise


def plain_near_match(said: list[str], candidates: list[Candidate]) -> str | None:
    scores: dict[str, float] = {}
    for cand in candidates:
        for phrase in (*cand.phrases, cand.name.replace("_", " ")):
            needle = normalise(phrase)
            joined = " ".join(needle)
            if len(joined) < 5 or not needle or len(needle) > len(said):
                continue
            n = len(needle)
            for i in range(len(said) - n + 1):
                ratio = difflib.SequenceMatcher(None, " ".join(said[i : i + n]), joined).ratio()
                if ratio > scores.get(cand.name, 0.0):
                    scores[cand.name] = ratio
    return intents.near_winner(scores)  # the same decision on the plainly computed scores


def plain_sounds_like(content: list[str], candidates: list[Candidate]) -> str | None:
    if not content or len(content) > intents.PHONETIC_MAX_WORDS:
        return None
    tiers: dict[str, int] = {}
    spelled: dict[str, float] = {}
    for cand in candidates:
        for phrase in (*cand.phrases, cand.name.replace("_", " ")):
            needle = [w for w in normalise(phrase) if w not in intents._FILLER] or normalise(phrase)
            n = len(needle)
            for i in range(len(content) - n + 1):
                window = content[i : i + n]
                tier = intents._sound_tier(window, needle)
                if tier > tiers.get(cand.name, 0):
                    tiers[cand.name] = tier
                ratio = difflib.SequenceMatcher(None, " ".join(window), " ".join(needle)).ratio()
                spelled[cand.name] = max(spelled.get(cand.name, 0.0), ratio)
    return intents.sound_winner(tiers, spelled)


CHOICES = [
    Candidate("thin", ("thin crust", "thin")),
    Candidate("thick", ("thick crust", "deep dish")),
    Candidate("small", ("small",), "1"),
    Candidate("medium", ("medium", "regular"), "2"),
    Candidate("large", ("large", "family size"), "3"),
    Candidate("lost_card", ("lost card", "stolen card")),
    Candidate("balance", ("account balance", "balance")),
]
WORDS = [
    "then",
    "thin",
    "crest",
    "crust",
    "thick",
    "dish",
    "deep",
    "small",
    "smoll",
    "medium",
    "meat",
    "regular",
    "large",
    "barge",
    "lodge",
    "family",
    "size",
    "lost",
    "my",
    "card",
    "cart",
    "stolen",
    "account",
    "balance",
    "ballots",
    "uh",
    "um",
    "please",
    "a",
    "the",
    "I",
    "want",
    "two",
    "one",
    "ballast",
    "mediums",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=6),
    st.sets(st.integers(0, len(CHOICES) - 1), min_size=2),
)
def test_the_shortcuts_give_the_plain_answer(words: list[str], picked: set[int]) -> None:
    candidates = [CHOICES[i] for i in sorted(picked)]
    said = normalise(" ".join(words))
    content = [w for w in said if w not in intents._FILLER]
    assert intents._near_match(tuple(said), candidates) == plain_near_match(said, candidates)
    assert intents._sounds_like(tuple(content), candidates) == plain_sounds_like(content, candidates)
