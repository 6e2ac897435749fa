"""The engine's questions: prompting, listening, answers, read-back confirmation and reprompts.

A mixin of :class:`~ivr.flow.engine.FlowEngine` (one engine, one call; split off only to keep each
module readable). Reprompt semantics (VoiceXML's noinput/nomatch model, made explicit):

* a handler's ``prompt`` is said **instead of** the question; its ``prefix`` is said **before** the
  question; without either, ``settings.no_input_prompt``/``no_match_prompt`` is the prefix;
* an answer that was understood but broke a capture rule is a no_match with the capture's ``invalid``
  reprompt (else the no_match handler's, else ``settings.invalid_prompt`` as the prefix);
* "repeat that" (the built-in ``repeat`` intent) says the question again and counts as nothing.

Every prompt is a list of parts (prefix, question, options) so fixed parts stay cacheable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from ivr.flow.actions import Action, Classify, ClassifyOption, PromptPart
from ivr.flow.builtins import MASK
from ivr.flow.captures import CaptureContext, readback
from ivr.flow.completion import answer_complete, confident_enough
from ivr.flow.engine_state import Frame, Waiting
from ivr.flow.events import (
    ClassificationResult,
    DigitTimeout,
    DtmfReceived,
    Event,
    NoInput,
    ProviderError,
    SpeechRecognized,
)
from ivr.flow.model import AskStep, Flow, FlowSettings, Reprompt
from ivr.flow.model_types import phrases_for
from ivr.flow.prompts import nth, speech_part
from ivr.flow.questions import (
    REPEAT,
    Answer,
    Captured,
    Chosen,
    Confirmed,
    IntentHit,
    Invalid,
    NeedsModel,
    NoMatch,
    Option,
    Picked,
    interpret_digits,
    interpret_key,
    interpret_speech,
    is_digit_capture,
    listen_for,
)
from ivr.flow.template_budget import template_budget
from ivr.flow.templates import TemplateError, evaluate, render, whole_expression

RetryKind = Literal["no_input", "no_match", "invalid", "rejected"]


class QuestionsMixin:
    """Question handling; the attributes below belong to the engine."""

    _out: list[Action]
    _frames: list[Frame]
    _last: dict[str, Any]
    _typeahead: list[str]
    _step: str
    _language: str
    waiting_for: Waiting

    # state of the current question
    _prompt: tuple[PromptPart, ...] = ()
    _question: tuple[PromptPart, ...] = ()
    _digits: str = ""
    _counts: dict[str, int]
    _options: tuple[Option, ...] = ()
    _pending: Captured | None = None
    """A value read back for confirmation, until the caller says yes or no."""

    # provided by the engine
    @property
    def flow(self) -> Flow:
        raise NotImplementedError

    @property
    def settings(self) -> FlowSettings:
        raise NotImplementedError

    def _current_ask(self) -> AskStep:
        raise NotImplementedError

    def _context(self, *, with_env: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def _capture_context(self, step: AskStep) -> CaptureContext:
        raise NotImplementedError

    def _run(self, target: str, via: str) -> None:
        raise NotImplementedError

    def _fail(self, reason: str, explicit: str | None = None, *, expected: bool = False) -> None:
        raise NotImplementedError

    def _log(self, level: Literal["debug", "info", "warning", "error"], message: str) -> None:
        raise NotImplementedError

    def _say(self, parts: list[PromptPart], barge_in: bool | None) -> None:
        raise NotImplementedError

    def _say_transcript(self, speaker: Literal["ivr", "caller"], text: str) -> None:
        raise NotImplementedError

    def _speech_engines(self) -> tuple[str | None, str | None]:
        raise NotImplementedError

    # ------------------------------------------------------------------ events while listening

    def _in_input(self, event: Event) -> None:
        if isinstance(event, SpeechRecognized):
            self._on_speech(event)
        elif isinstance(event, DtmfReceived):
            self._on_dtmf(event.digit)
        elif isinstance(event, NoInput | DigitTimeout):
            if self._digits:
                self._finish_digits()
            else:
                self._retry("no_input")
        elif isinstance(event, ProviderError):
            self._fail(f"{event.provider} provider error while listening")

    def _in_classify(self, event: Event) -> None:
        step = self._current_ask()
        if isinstance(event, ClassificationResult):
            self.waiting_for = "input"
            if event.choice and step.choices and event.choice in step.choices:
                self._apply(step, Picked(event.choice), f"{event.source} classified")
            elif event.choice and step.global_intents and event.choice in self.flow.intents:
                self._intent(step, event.choice)
            else:
                self._retry("no_match")
        elif isinstance(event, ProviderError):
            # the keyword matcher already had its chance before Classify was emitted
            self._log("warning", "llm matcher failed; keyword matcher found nothing")
            self.waiting_for = "input"
            self._retry("no_match")

    # ------------------------------------------------------------------ asking

    def _start_ask(self, step: AskStep, ctx: dict[str, Any]) -> None:
        self._counts = {"no_input": 0, "no_match": 0}
        self._digits = ""
        self._pending = None
        self._options = ()
        parts = [speech_part(step.ask, self._language, self.settings.language, ctx)]
        if step.options is not None:
            self._options = self._build_options(step, ctx)
            if not self._options:
                self._log("info", f"no options for step {self._step}")
                self._run(step.options.empty, "no options")
                return
            read = step.options.say if step.options.say is not None else self.settings.option_prompt
            for option in self._options:
                option_ctx = {**ctx, "label": option.label, "key": option.key}
                parts.append(speech_part(read, self._language, self.settings.language, option_ctx))
        self._question = self._prompt = tuple(parts)
        self.waiting_for = "input"
        if self._typeahead and step.input != "speech" and self._use_typeahead(step):
            return
        self._ask_again(step, list(self._prompt))

    def _build_options(self, step: AskStep, ctx: dict[str, Any]) -> tuple[Option, ...]:
        spec = step.options
        assert spec is not None
        items = evaluate(whole_expression(spec.from_) or spec.from_, ctx)
        if isinstance(items, Mapping) or not isinstance(items, list | tuple):
            raise TemplateError(f"options.from must give a list, got {type(items).__name__}")
        out = []
        for index, item in enumerate(items[: spec.max]):
            item_ctx = {**ctx, "item": item, "index": index + 1}
            label = " ".join(render(spec.label, item_ctx).split())
            value = (
                item if spec.value is None else evaluate(whole_expression(spec.value) or spec.value, item_ctx)
            )
            phrases = tuple(" ".join(render(p, item_ctx).split()) for p in spec.phrases)
            out.append(Option(str(index + 1), label, value, tuple(p for p in phrases if p)))
        return tuple(out)

    def _ask_again(self, step: AskStep, parts: list[PromptPart]) -> None:
        self._say(parts, step.barge_in)
        stt, stt_model = self._speech_engines()
        self._out.append(
            listen_for(
                self.flow,
                step,
                self._step,
                self.settings,
                language=self._language,
                stt=stt,
                stt_model=stt_model,
                options=self._options,
                confirming=self._pending is not None,
            )
        )

    def _use_typeahead(self, step: AskStep) -> bool:
        """Apply keys pressed during earlier prompts; True if they settled the question (or reprompted)."""
        keys, self._typeahead = self._typeahead, []
        before = len(self._out)
        if is_digit_capture(step):
            for key in keys:
                self._on_dtmf(key)
                if len(self._out) > before:
                    return True
            return False  # partial entry: kept in self._digits, the prompt plays and entry continues
        answer = interpret_key(self.flow, step, keys[0], self._options, language=self._language)
        if isinstance(answer, NoMatch):
            return False  # a stray key: ask properly instead of counting a failure
        self._on_dtmf(keys[0])
        return True

    def answer_complete(self, text: str, confidence: float | None = None) -> bool:
        """Would ``text`` already answer the question being asked (a choice, a yes or no, a digit string
        of the capture's ``min_length``...)? Asked at a pause in the caller's speech; changes nothing.
        False when no question is listening, or heard with too little confidence (:mod:`ivr.flow.completion`)."""
        if self.waiting_for != "input":
            return False
        step = self._current_ask()
        if step.input == "dtmf":
            return False
        if not confident_enough(self.flow, step, confidence, confirming=self._pending is not None):
            return False
        with template_budget():  # a capture's `allowed` may be a template
            try:
                ctx = self._capture_context(step)
            except TemplateError:
                return True  # the answer itself will meet the error; no reason to wait for more words
            return answer_complete(
                self.flow, step, text, ctx, self._options, confirming=self._pending is not None
            )

    def _masked(self, step: AskStep, value: str) -> str:
        return MASK if step.capture is not None and step.capture.sensitive else value

    def _on_speech(self, event: SpeechRecognized) -> None:
        step = self._current_ask()
        if step.input == "dtmf":
            return
        text = event.text.strip()
        if not text:
            self._retry("no_input")
            return
        shown = self._masked(step, text)
        self._say_transcript("caller", shown)
        self._last.update(text=shown, confidence=event.confidence, dtmf="")
        if event.confidence < self.settings.min_confidence:
            self._log("info", f"low confidence {event.confidence:.2f}")
            self._retry("no_match")
            return
        try:
            answer = interpret_speech(
                self.flow,
                step,
                text,
                self._capture_context(step),
                self._options,
                confirming=self._pending is not None,
            )
        except TemplateError as exc:
            self._fail(f"template error in step {self._step}: {exc}")
            return
        if isinstance(answer, NeedsModel):
            self._classify(step, text)
        else:
            self._apply(step, answer, "speech")

    def _on_dtmf(self, key: str) -> None:
        step = self._current_ask()
        if step.input == "speech":
            return
        cap = step.capture
        if cap is not None and is_digit_capture(step) and self._pending is None:
            from ivr.flow.captures import key_entry, star_is_data

            max_digits, terminator = key_entry(cap)
            if key == terminator and not (key == "*" and star_is_data(cap)):
                if not self._digits:
                    # A bare terminator answers nothing: typically the '#' after an entry that already
                    # ended itself at max_length, landing on the next question. Keep listening.
                    return
                self._finish_digits()
                return
            if (key == "*" and not star_is_data(cap)) or (key in "#ABCD" and key != terminator):
                return  # not data for this capture: ignored, like a stray key
            self._digits += key
            if max_digits is not None and len(self._digits) >= max_digits:
                self._finish_digits()
            return
        shown = self._masked(step, key)
        self._say_transcript("caller", f"DTMF {shown}")
        self._last.update(dtmf=shown, text="", confidence=1.0)
        answer = interpret_key(
            self.flow, step, key, self._options, language=self._language, confirming=self._pending is not None
        )
        self._apply(step, answer, "dtmf")

    def _finish_digits(self) -> None:
        step = self._current_ask()
        digits, self._digits = self._digits, ""
        shown = self._masked(step, digits)
        self._say_transcript("caller", f"DTMF {shown}")
        self._last.update(dtmf=shown, text="", confidence=1.0)
        try:
            answer = interpret_digits(step, digits, self._capture_context(step))
        except TemplateError as exc:
            self._fail(f"template error in step {self._step}: {exc}")
            return
        self._apply(step, answer, "dtmf")

    # ------------------------------------------------------------------ answers

    def _apply(self, step: AskStep, answer: Answer, how: str) -> None:
        """Act on what an answer means: go on, confirm, take an intent, or count a no_match."""
        if self._pending is not None and not isinstance(answer, IntentHit):
            self._confirmed(step, answer)
            return
        if isinstance(answer, Picked):
            assert step.choices is not None
            if step.save is not None:
                self._frames[-1].vars[step.save] = answer.name
            self._last["choice"] = answer.name
            self._reset_errors()
            self._run(step.choices[answer.name].next, f"choice {answer.name} ({how})")
        elif isinstance(answer, Chosen):
            assert step.save is not None
            assert step.next is not None
            option = self._options[answer.index]
            self._frames[-1].vars[step.save] = option.value
            self._last["choice"] = option.key
            self._reset_errors()
            self._run(step.next, f"option {option.key} ({how})")
        elif isinstance(answer, Captured):
            assert step.capture is not None
            if step.capture.confirm and step.capture.type != "yes_no":
                self._read_back(step, answer)
                return
            self._store(step, answer.value)
        elif isinstance(answer, Confirmed):
            assert step.confirm is not None
            self._last["choice"] = "yes" if answer.yes else "no"
            self._reset_errors()
            self._run(step.confirm.yes if answer.yes else step.confirm.no, self._last["choice"])
        elif isinstance(answer, IntentHit):
            self._intent(step, answer.name)
        elif isinstance(answer, Invalid):
            sensitive = step.capture is not None and step.capture.sensitive
            self._last.update(value=MASK if sensitive else answer.value, invalid=answer.reason)
            self._log("info", f"answer broke the rule {answer.reason} in step {self._step}")
            self._retry("invalid")
        else:
            self._retry("no_match")

    def _store(self, step: AskStep, value: Any) -> None:
        cap = step.capture
        assert cap is not None
        assert step.next is not None
        self._frames[-1].vars[cap.slot] = value
        self._last.update(value=MASK if cap.sensitive else value, invalid="")
        if cap.type == "enum":
            self._last["choice"] = value
        self._reset_errors()
        self._log("info", f"captured {cap.slot}")
        self._run(step.next, f"captured {cap.slot}")

    def _read_back(self, step: AskStep, answer: Captured) -> None:
        """Say the understood value back and ask yes/no before storing it."""
        cap = step.capture
        assert cap is not None
        self._pending = answer
        self._last.update(value=answer.value, invalid="")
        ctx = self._context()
        ctx.update(heard=readback(cap, answer.value, self._capture_context(step)), value=answer.value)
        template = cap.confirm if isinstance(cap.confirm, str | dict) else self.settings.confirm_prompt
        try:
            self._prompt = (speech_part(template, self._language, self.settings.language, ctx),)
        except TemplateError as exc:
            self._pending = None
            self._fail(f"template error in step {self._step}: {exc}")
            return
        # the question's counters go on: a caller who keeps saying "no" still runs out of retries
        self._ask_again(step, list(self._prompt))

    def _confirmed(self, step: AskStep, answer: Answer) -> None:
        pending = self._pending
        assert pending is not None
        if isinstance(answer, Confirmed) and answer.yes:
            self._pending = None
            self._store(step, pending.value)
        elif isinstance(answer, Confirmed):
            self._pending = None
            self._prompt = self._question
            self._log("info", f"the caller said the value heard was wrong in step {self._step}")
            self._retry("rejected")
        else:
            self._retry("no_match")

    def _intent(self, step: AskStep, name: str) -> None:
        intent = self.flow.intents.get(name)
        self._last["choice"] = name
        if intent is None or intent.repeat:
            assert intent is not None or name == REPEAT
            self._digits = ""
            self._ask_again(step, list(self._prompt))
            return
        assert intent.next is not None
        self._pending = None
        self._run(intent.next, f"intent {name}")

    def _classify(self, step: AskStep, text: str) -> None:
        assert step.choices is not None
        lang = self._language
        options = [
            ClassifyOption(n, c.description, phrases_for(c.phrases, lang)) for n, c in step.choices.items()
        ]
        if step.global_intents:
            options += [
                ClassifyOption(n, i.description, phrases_for(i.phrases, lang))
                for n, i in self.flow.intents.items()
            ]
        self._out.append(Classify(self._step, text, tuple(options), self.settings.llm_model, lang))
        self.waiting_for = "classify"

    def _reset_errors(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ reprompts

    def _retry(self, kind: RetryKind) -> None:
        """Count a failure; reprompt, or leave through the handler's ``next`` (or on_error) when exhausted.

        ``invalid`` (a broken rule) and ``rejected`` (the caller said the read-back was wrong) count as
        no_match; they differ only in what is said."""
        step = self._current_ask()
        counter = "no_input" if kind == "no_input" else "no_match"
        handler = step.no_input if counter == "no_input" else step.no_match
        self._counts[counter] += 1
        count = self._counts[counter]
        retries = handler.retries if handler and handler.retries is not None else self.settings.max_retries
        self._digits = ""
        if count > retries:
            self._pending = None
            reason = f"{counter}: {retries} retries used up in step {self._step}"
            if handler is not None and handler.next is not None:
                self._last["error"] = counter
                self._log("info", reason)
                self._run(handler.next, f"{counter} {count}")
            else:
                self._fail(reason, expected=True)  # the caller's doing, not a fault
            return
        self._log("info", f"{kind} {count}/{retries} in step {self._step}")
        try:
            parts = self._reprompt(step, kind, handler, count)
        except TemplateError as exc:
            self._fail(f"template error in step {self._step}: {exc}")
            return
        self._ask_again(step, parts)

    def _reprompt(
        self, step: AskStep, kind: RetryKind, handler: Reprompt | None, count: int
    ) -> list[PromptPart]:
        question = list(self._prompt)
        if kind == "rejected":
            return question
        if self._pending is not None:
            handler = None  # the read-back's own reprompt: the default prefix, then the read-back again
        elif kind == "invalid" and step.capture is not None and step.capture.invalid is not None:
            handler = step.capture.invalid
        ctx = self._context()
        s = self.settings
        if handler is not None and handler.prompt:
            return [speech_part(nth(handler.prompt, count), self._language, s.language, ctx)]
        if handler is not None and handler.prefix:
            return [speech_part(nth(handler.prefix, count), self._language, s.language, ctx), *question]
        default = {
            "no_input": s.no_input_prompt,
            "no_match": s.no_match_prompt,
            "invalid": s.invalid_prompt,
        }[kind]
        return [speech_part(default, self._language, s.language, ctx), *question]
