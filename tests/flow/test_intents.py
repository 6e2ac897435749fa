"""Normalisation, number words and keyword matching."""

from __future__ import annotations

import pytest

from ivr.flow.intents import Candidate, match, match_dtmf, normalise, parse_digits, parse_number, parse_yes_no


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("One", ["1"]),
        ("twenty five", ["25"]),
        ("two hundred and five", ["205"]),
        ("three thousand four hundred", ["3400"]),
        ("nineteen five", ["19", "5"]),
        ("I'd like option TWO, please!", ["id", "like", "option", "2", "please"]),
        ("the first one", ["the", "1", "1"]),
        ("double five", ["5", "5"]),
    ],
)
def test_normalise(text: str, tokens: list[str]) -> None:
    assert normalise(text) == tokens


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("one two three four", "1234"),
        ("12 34", "1234"),
        ("oh five double seven", "0577"),
        ("my dog", None),
        ("", None),
        ("nine eight seven six five four three two", "98765432"),
    ],
)
def test_parse_digits(text: str, digits: str | None) -> None:
    assert parse_digits(text) == digits


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("twenty five", 25),
        ("3.5", 3.5),
        ("minus two", -2),
        ("one hundred twenty three", 123),
        ("12", 12),
        ("lots", None),
        ("twenty one twenty two", None),
    ],
)
def test_parse_number(text: str, number: float | None) -> None:
    assert parse_number(text) == number


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", True),
        ("Yeah, sure.", True),
        ("that's right", True),
        ("no", False),
        ("nope", False),
        ("yes, no wait, don't", False),
        ("maybe", None),
        ("", None),
    ],
)
def test_parse_yes_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(text) is answer


CANDIDATES = [
    Candidate("balance", ("balance", "how much money"), "1"),
    Candidate("transfer_money", ("transfer", "send money"), "2"),
    Candidate("lost_card", ("lost my card", "stolen card"), "3"),
]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("balance please", "balance"),
        ("How much money do I have?", "balance"),
        ("I need to send money to my son", "transfer_money"),
        ("transfer money", "transfer_money"),  # the choice name counts as a phrase
        ("I lost my card", "lost_card"),
        ("two", "transfer_money"),
        ("press three", "lost_card"),
        ("option 1", "balance"),
        ("one more thing about my balance", "balance"),
        ("pizza", None),
        ("", None),
    ],
)
def test_match(text: str, name: str | None) -> None:
    assert match(text, CANDIDATES) == name


def test_longest_phrase_wins_and_ties_go_to_the_first() -> None:
    cands = [Candidate("card", ("card",)), Candidate("lost", ("lost card",))]
    assert match("I lost card", cands) == "lost"
    assert match("card", cands) == "card"
    assert match("balance and transfer", CANDIDATES) == "balance"


def test_match_dtmf() -> None:
    assert match_dtmf("2", CANDIDATES) == "transfer_money"
    assert match_dtmf("9", CANDIDATES) is None


def test_mishearings_match_the_clearly_closest_phrase() -> None:
    from ivr.flow.intents import Candidate, match

    crusts = [
        Candidate("thin", ("thin crust", "crispy")),
        Candidate("classic", ("regular", "hand tossed")),
        Candidate("stuffed", ("stuffed crust", "cheese crust")),
    ]
    assert match("Then crust.", crusts) == "thin"
    assert match("hand tost please", crusts) == "classic"
    assert match("something else entirely", crusts) is None
    # short words never match by likeness, and a near tie stays a no-match
    assert match("know", [Candidate("no", ("no",)), Candidate("yes", ("yes",))]) is None
    assert match("stuffed thin crust", crusts) in ("thin", "stuffed")  # exact phrases still win first
    tie = [Candidate("a", ("pine tree",)), Candidate("b", ("pine trees",))]
    assert match("pane tree", tie) is None


SIZES = [Candidate("small", ()), Candidate("medium", ()), Candidate("large", ())]
CRUSTS = [
    Candidate("thin", ("thin crust", "crispy")),
    Candidate("classic", ("regular", "hand tossed")),
    Candidate("stuffed", ("stuffed crust", "cheese crust")),
]


@pytest.mark.parametrize(
    ("text", "cands", "name"),
    [
        ("then", CRUSTS, "thin"),  # whisper tiny.en on "thin" (issue 14)
        ("Then.", CRUSTS, "thin"),
        ("barge", SIZES, "large"),  # whisper tiny.en on "large" (issue 14)
        ("a barge please", SIZES, "large"),
        ("median", SIZES, "medium"),
        ("smell", SIZES, "small"),
        ("media.", SIZES, "medium"),  # measured on the turn corpus
    ],
)
def test_short_answers_that_sound_like_one_choice_match_it(text, cands, name) -> None:
    assert match(text, cands) == name


@pytest.mark.parametrize(
    ("text", "cands"),
    [
        ("lodge", SIZES),  # one sound off and spelled unlike "large": too far
        ("tin", CRUSTS),  # two-sound keys never match by one sound off
        ("the", CRUSTS),
        ("meeting", SIZES),
        ("then I would like to talk to somebody about my order please", CRUSTS),  # not a short answer
        ("know", [Candidate("no", ("no",)), Candidate("yes", ("yes",))]),  # short words never match by sound
        ("then", [Candidate("thin", ()), Candidate("than", ())]),  # sounds like two choices: no match
        ("pane tree", [Candidate("a", ("pine tree",)), Candidate("b", ("pine trees",))]),  # spelled like both
        ("2", [Candidate("to", ()), Candidate("from", ())]),  # digits never match by sound
    ],
)
def test_sound_matching_stays_conservative(text, cands) -> None:
    assert match(text, cands) is None


def test_exact_words_still_win_over_sound() -> None:
    cands = [Candidate("thin", ()), Candidate("then_what", ("then",))]
    assert match("then", cands) == "then_what"


def test_a_phrase_with_one_word_slipped_in_still_matches() -> None:
    menu = [Candidate("lost_card", ("lost card", "stolen card")), Candidate("balance", ("balance",))]
    assert match("I lost my card.", menu) == "lost_card"
    assert match("my card was stolen", menu) is None  # order matters
    assert match("lost my old card", menu) is None  # one word at most
    # the exact phrase of another choice outranks a spread one of the same length
    cands = [Candidate("a", ("lost card",)), Candidate("b", ("my card",))]
    assert match("lost my card", cands) == "b"
