"""Does what the caller has said so far already make a whole answer for the question?

VoiceXML's complete and incomplete timeouts: an utterance that the question's grammar accepts may end on a
short silence, one it does not accept yet ("Let me think", "I'd like", four digits of a card number whose
capture wants eight) waits longer for the caller to go on. The runtime asks this at a pause in the
caller's speech, with the transcript of the audio so far, and ends the turn early only when the answer is
whole (and the end-of-turn model, where one runs, agrees). Pure: the same interpretation the engine
applies to the finished answer (:func:`ivr.flow.questions.interpret_speech`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr.flow.captures import CaptureContext
from ivr.flow.model import AskStep, Flow
from ivr.flow.questions import (
    Captured,
    Chosen,
    Confirmed,
    IntentHit,
    NeedsModel,
    Option,
    Picked,
    end_of_turn,
    interpret_speech,
)
from ivr.flow.templates import TemplateError


def confident_enough(
    flow: Flow, step: AskStep, confidence: float | None, *, confirming: bool = False
) -> bool:
    """May words heard with ``confidence`` end the turn at a pause? Not below ``min_confidence`` (the
    answer itself would be a no_match), nor below the question's ``end_of_turn.words_min_confidence``:
    biased towards the choices, Whisper writes a filler's "uhm" as "Medium." with low confidence, and
    ending there would take the wrong answer while waiting costs only silence."""
    if confidence is None:
        return True
    floor = end_of_turn(step, flow.settings, confirming=confirming).words_min_confidence
    return confidence >= max(flow.settings.min_confidence, floor)


WHOLE = Picked | Chosen | Captured | Confirmed | IntentHit | NeedsModel
"""Answers the question takes as they are: a choice, an option, a value that passed every rule, a yes or
a no, a global intent; and free speech for the LLM matcher, which keywords cannot judge."""


def answer_complete(
    flow: Flow,
    step: AskStep,
    text: str,
    ctx: CaptureContext | None = None,
    options: Sequence[Option] = (),
    *,
    confirming: bool = False,
    confidence: float | None = None,
) -> bool:
    """True when ``text`` is already an answer ``step`` accepts (see the module docstring).

    Not whole: nothing understood, heard with too little confidence (:func:`confident_enough`), or a
    value that breaks a rule (a digit string shorter than the capture's ``min_length``: the caller may
    still be reading it out). A question the keywords cannot judge (the LLM matcher's, or a template
    error) counts as whole: the words give no reason to wait and the end-of-turn model's judgement stands.
    """
    if not text.strip() or not confident_enough(flow, step, confidence, confirming=confirming):
        return False
    try:
        answer = interpret_speech(flow, step, text, ctx, options, confirming=confirming)
    except TemplateError:
        return True
    return isinstance(answer, WHOLE)
