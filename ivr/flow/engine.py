"""The pure flow engine: events in, actions out, one engine per call.

No I/O, no clocks, no randomness: given the same flow and the same events it returns the same actions,
so every flow can be unit-tested step by step. The call runtime performs the actions (speech, HTTP,
transfers) and feeds results back as events; see :mod:`ivr.flow.events` and :mod:`ivr.flow.actions`.

Usage::

    engine = FlowEngine.from_file(Path("flows/bank.yaml"), env=os.environ)
    actions = engine.handle(CallStarted(call_id="c1", caller_id="+15551234567"))
    ...                          # perform actions, then for each result:
    actions = engine.handle(PromptFinished())

After every ``handle`` the engine is either :attr:`finished` (the last action was :class:`End`) or
waiting for the answer to an action it emitted (:attr:`waiting_for`). It keeps :attr:`path` (steps
visited and why, without values) and :attr:`transcript` (what was said; sensitive captures masked).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ivr.flow.actions import (
    Action,
    Classify,
    ClassifyOption,
    End,
    HangupCall,
    HttpRequest,
    Log,
    Play,
    Transfer,
)
from ivr.flow.builtins import MASK, empty_last
from ivr.flow.checks import sensitive_variables
from ivr.flow.events import (
    BargeIn,
    CallStarted,
    ClassificationResult,
    DigitTimeout,
    DtmfReceived,
    Event,
    Hangup,
    NoInput,
    PromptFinished,
    ProviderError,
    SpeechRecognized,
    TransferCompleted,
    TransferFailed,
    WebhookFailed,
    WebhookResult,
)
from ivr.flow.loader import FlowLibrary, load_library
from ivr.flow.model import (
    AnyStep,
    AskStep,
    BranchStep,
    Flow,
    FlowSettings,
    GotoStep,
    HangupStep,
    PlayStep,
    ReturnStep,
    SayStep,
    SetStep,
    SubflowStep,
    TransferStep,
    WebhookStep,
)
from ivr.flow.questions import (
    Answer,
    Captured,
    Confirmed,
    IntentHit,
    NeedsModel,
    NoMatch,
    Picked,
    interpret_digits,
    interpret_key,
    interpret_speech,
    is_digit_capture,
    listen_for,
)
from ivr.flow.templates import (
    TemplateError,
    attribute_uses,
    evaluate,
    is_template,
    parse_source,
    render,
    resolve_value,
    template_budget,
)

Waiting = Literal["start", "prompt", "input", "classify", "webhook", "transfer", "done"]
MAX_STEPS_PER_EVENT = 200
MAX_CONSECUTIVE_ERRORS = 3


@dataclass(frozen=True)
class PathRecord:
    """One visited step and how the engine got there (never a value)."""

    flow: str
    step: str
    kind: str
    via: str


@dataclass(frozen=True)
class TranscriptEntry:
    speaker: Literal["ivr", "caller"]
    text: str
    step: str
    flow: str


@dataclass
class _Frame:
    name: str
    flow: Flow
    vars: dict[str, Any]
    return_to: str | None = None  # the parent's subflow step


class FlowEngine:
    """Runs one call through a flow. Construct one per call; it is cheap."""

    def __init__(self, flows: FlowLibrary | Flow, *, env: Mapping[str, str] | None = None) -> None:
        if isinstance(flows, Flow):
            flows = FlowLibrary(flows.name, {flows.name: flows})
        self.library = flows
        self._env = dict(env or {})
        self._frames: list[_Frame] = []
        self._call: dict[str, Any] = {}
        self._last: dict[str, Any] = empty_last()
        self._out: list[Action] = []
        self._typeahead: list[str] = []
        self._step = ""
        self._prompt = ""
        self._digits = ""
        self._counts = {"no_input": 0, "no_match": 0}
        self._errors = 0
        self.waiting_for: Waiting = "start"
        self.path: list[PathRecord] = []
        self.transcript: list[TranscriptEntry] = []
        self.outcome: End | None = None

    @classmethod
    def from_file(cls, path: Path, *, env: Mapping[str, str] | None = None) -> FlowEngine:
        """Load ``path`` with its subflows (raises :class:`~ivr.flow.errors.FlowError`)."""
        return cls(load_library(path), env=env)

    # ------------------------------------------------------------------ public state

    @property
    def finished(self) -> bool:
        return self.waiting_for == "done"

    @property
    def current_step(self) -> str:
        return self._step

    @property
    def flow(self) -> Flow:
        return self._frames[-1].flow if self._frames else self.library.main

    @property
    def settings(self) -> FlowSettings:
        return self.flow.settings

    @property
    def variables(self) -> dict[str, Any]:
        """The current flow's variables, real values included: never log this; see :meth:`safe_variables`."""
        return dict(self._frames[-1].vars) if self._frames else {}

    def safe_variables(self) -> dict[str, Any]:
        """The current flow's variables with sensitive captures (and copies of them) masked."""
        secret = sensitive_variables(self.flow)
        return {k: (MASK if k in secret else v) for k, v in self.variables.items()}

    # ------------------------------------------------------------------ event dispatch

    def handle(self, event: Event) -> list[Action]:
        """Consume one event; return the actions to perform, in order (empty: keep waiting)."""
        self._out = []
        if self.finished:
            return []
        with template_budget():  # every template this event renders shares one bounded budget
            self._dispatch(event)
        return self._out

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Hangup):
            self._log("info", "caller hung up")
            self._end(End("caller_hangup", "caller hung up"))
            return
        state = self.waiting_for
        if state == "start":
            if isinstance(event, CallStarted):
                self._begin(event)
        elif state == "prompt":
            self._in_prompt(event)
        elif state == "input":
            self._in_input(event)
        elif state == "classify":
            self._in_classify(event)
        elif state == "webhook":
            self._in_webhook(event)
        elif state == "transfer":
            self._in_transfer(event)

    def _begin(self, event: CallStarted) -> None:
        main = self.library.main
        self._call = {
            "id": event.call_id,
            "caller_id": event.caller_id,
            "caller_name": event.caller_name,
            "dialed": event.dialed,
            "direction": event.direction,
            "args": dict(event.args),
            "flow": self.library.root,
        }
        variables = copy.deepcopy(dict(main.vars))
        variables.update(event.vars)
        self._frames = [_Frame(self.library.root, main, variables)]
        self._run(main.start, "start")

    def _in_prompt(self, event: Event) -> None:
        if isinstance(event, PromptFinished | BargeIn):
            step = self._current()
            assert isinstance(step, SayStep | PlayStep)
            self._run(step.next, "barge-in" if isinstance(event, BargeIn) else "")
        elif isinstance(event, DtmfReceived):
            self._typeahead.append(event.digit)
        elif isinstance(event, ProviderError):
            self._fail(f"{event.provider} provider error while playing")

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
        step = self._ask()
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

    def _in_webhook(self, event: Event) -> None:
        step = self._current()
        assert isinstance(step, WebhookStep)
        if isinstance(event, WebhookResult):
            self._last["status"] = event.status
            if 200 <= event.status < 300:
                if step.save is not None:
                    self._frames[-1].vars[step.save] = event.body
                self._errors = 0
                self._run(step.next, f"status {event.status}")
            else:
                self._fail(f"webhook returned status {event.status}", step.on_error)
        elif isinstance(event, WebhookFailed):
            self._last["status"] = 0
            self._fail(f"webhook failed: {event.reason}", step.on_error)
        elif isinstance(event, DtmfReceived):
            self._typeahead.append(event.digit)

    def _in_transfer(self, event: Event) -> None:
        step = self._current()
        assert isinstance(step, TransferStep)
        if isinstance(event, TransferCompleted):
            self._end(End("transferred", self._step))
        elif isinstance(event, TransferFailed):
            cause = f" (cause {event.cause})" if event.cause is not None else ""
            self._fail(f"transfer {event.reason}{cause}", step.on_failure)

    # ------------------------------------------------------------------ running steps

    def _current(self) -> AnyStep:
        return self._frames[-1].flow.step(self._step)

    def _ask(self) -> AskStep:
        step = self._current()
        assert isinstance(step, AskStep)
        return step

    def _context(self, *, with_env: bool = False) -> dict[str, Any]:
        ctx = dict(self._frames[-1].vars)
        ctx["call"] = self._call
        ctx["last"] = self._last
        if with_env:
            ctx["env"] = self._env
        return ctx

    def _run(self, target: str, via: str) -> None:
        """Enter ``target`` and keep going through instant steps until something waits or ends."""
        for _ in range(MAX_STEPS_PER_EVENT):
            frame = self._frames[-1]
            step = frame.flow.step(target)
            self._step = target
            self.path.append(PathRecord(frame.name, target, step.kind, via))
            try:
                following = self._enter(step)
            except TemplateError as exc:  # one log line: _error_target logs the reason
                following = self._error_target(f"template error in step {target}: {exc}")
            if following is None:
                return
            target, via = following
        self._log(
            "error", f"flow passed {MAX_STEPS_PER_EVENT} steps without waiting for the caller; hanging up"
        )
        self._hangup("error", End("error", "loop without input"))

    def _enter(self, step: AnyStep) -> tuple[str, str] | None:
        """Run one step; return the next (target, via) for instant steps, None if waiting or ended."""
        ctx = self._context()
        if isinstance(step, SayStep):
            text = render(step.say, ctx)
            self._play(text, None, step.barge_in, cacheable=not is_template(step.say))
            self.waiting_for = "prompt"
            return None
        if isinstance(step, PlayStep):
            self._play(None, step.play, step.barge_in, cacheable=True)
            self.waiting_for = "prompt"
            return None
        if isinstance(step, AskStep):
            self._start_ask(step, ctx)
            return None
        if isinstance(step, BranchStep):
            for cond in step.branch:
                if evaluate(cond.if_, ctx):
                    return cond.next, f"if {cond.if_}"
            return step.else_, "else"
        if isinstance(step, SetStep):
            frame = self._frames[-1]
            for key, value in step.set.items():
                frame.vars[key] = resolve_value(value, self._context())
            return step.next, ""
        if isinstance(step, GotoStep):
            return step.goto, "goto"
        if isinstance(step, WebhookStep):
            self._webhook(step, ctx)
            return None
        if isinstance(step, TransferStep):
            self._transfer(step, ctx)
            return None
        if isinstance(step, HangupStep):
            reason = step.hangup.reason if step.hangup else "normal"
            self._hangup(reason, End("hangup", reason))
            return None
        if isinstance(step, SubflowStep):
            return self._enter_subflow(step, ctx)
        if isinstance(step, ReturnStep):
            return self._return(step, ctx)
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover

    def _play(self, text: str | None, audio: str | None, barge_in: bool | None, *, cacheable: bool) -> None:
        s = self.settings
        text = " ".join(text.split()) if text is not None else None
        self._out.append(
            Play(
                self._step,
                text,
                audio,
                s.barge_in if barge_in is None else barge_in,
                cacheable,
                s.language,
                s.voice,
                s.tts,
                s.tts_model,
                s.tts_instructions,
            )
        )
        self._say_transcript("ivr", text if text is not None else f"[audio {audio}]")

    def _say_transcript(self, speaker: Literal["ivr", "caller"], text: str) -> None:
        self.transcript.append(TranscriptEntry(speaker, text, self._step, self._frames[-1].name))

    def _webhook(self, step: WebhookStep, ctx: dict[str, Any]) -> None:
        spec = step.webhook
        env_ctx = self._context(with_env=True)
        names = attribute_uses(parse_source(spec.url), "env")
        for header in spec.headers.values():
            names |= attribute_uses(parse_source(header), "env")
        secrets = tuple(self._env[n] for n in sorted(names) if n in self._env)
        s = self.settings
        self._out.append(
            HttpRequest(
                step=self._step,
                method=spec.method,
                url=render(spec.url, env_ctx),
                headers={k: render(v, env_ctx) for k, v in spec.headers.items()},
                json_body=resolve_value(spec.json_body, ctx),
                timeout_ms=spec.timeout_ms,
                filler=step.filler if step.filler is not None else s.filler,
                filler_after_ms=s.filler_after_ms,
                secrets=secrets,
            )
        )
        self._log("info", f"webhook {spec.method} requested")
        self.waiting_for = "webhook"

    def _transfer(self, step: TransferStep, ctx: dict[str, Any]) -> None:
        t = step.transfer

        def opt(value: str | None) -> str | None:
            return render(value, ctx) if value is not None else None

        self._out.append(
            Transfer(
                step=self._step,
                endpoint=opt(t.endpoint),
                context=opt(t.context),
                extension=opt(t.extension),
                priority=t.priority,
                timeout_s=t.timeout_s,
                caller_id=opt(t.caller_id),
                variables={k: render(v, ctx) for k, v in t.variables.items()},
            )
        )
        self.waiting_for = "transfer"

    def _enter_subflow(self, step: SubflowStep, ctx: dict[str, Any]) -> tuple[str, str] | None:
        sub = self.library.flows.get(step.subflow)
        if sub is None:
            return self._error_target(f"subflow {step.subflow} is not loaded (use FlowEngine.from_file)")
        variables = copy.deepcopy(dict(sub.vars))
        variables.update({k: resolve_value(v, ctx) for k, v in step.with_.items()})
        self._frames.append(_Frame(step.subflow, sub, variables, return_to=self._step))
        return sub.start, f"subflow from {self._frames[-2].name}.{self._step}"

    def _return(self, step: ReturnStep, ctx: dict[str, Any]) -> tuple[str, str] | None:
        values = resolve_value(step.return_ or {}, ctx)
        if len(self._frames) == 1:
            self._hangup("normal", End("hangup", "flow returned"))
            return None
        done = self._frames.pop()
        parent = self._frames[-1]
        call_step = parent.flow.step(done.return_to or "")
        assert isinstance(call_step, SubflowStep)
        if call_step.save is not None:
            parent.vars[call_step.save] = values
        self._step = done.return_to or ""
        return call_step.next, f"return from {done.name}"

    def _hangup(self, reason: str, end: End) -> None:
        self._out.append(HangupCall(reason))
        self._end(end)

    def _end(self, end: End) -> None:
        self._out.append(end)
        self.outcome = end
        self.waiting_for = "done"

    def _log(self, level: Literal["debug", "info", "warning", "error"], message: str) -> None:
        self._out.append(Log(level, message, self._step or None))

    # ------------------------------------------------------------------ errors

    def _error_target(
        self, reason: str, explicit: str | None = None, *, expected: bool = False
    ) -> tuple[str, str] | None:
        """Where an error leads: ``explicit``, else the nearest flow's on_error, else hang up.

        Logged once: at ERROR for faults (a template, a provider) the flow did not plan for, at WARNING
        for planned ones (``explicit``) and for ``expected`` outcomes such as a caller who never answers.
        """
        self._last["error"] = reason
        self._errors += 1
        level: Literal["warning", "error"] = "warning" if explicit or expected else "error"
        if self._errors > MAX_CONSECUTIVE_ERRORS:
            self._log(level, f"{reason}; too many errors in a row, hanging up")
            self._hangup("error", End("error", reason))
            return None
        self._log(level, reason)
        if explicit is not None:
            return explicit, "error"
        while self._frames[-1].flow.on_error is None and len(self._frames) > 1:
            self._frames.pop()
        on_error = self._frames[-1].flow.on_error
        if on_error is None or (on_error == self._step and self._errors > 1):
            self._hangup("error", End("error", reason))
            return None
        return on_error, "error"

    def _fail(self, reason: str, explicit: str | None = None, *, expected: bool = False) -> None:
        target = self._error_target(reason, explicit, expected=expected)
        if target is not None:
            self._run(*target)

    # ------------------------------------------------------------------ questions

    def _start_ask(self, step: AskStep, ctx: dict[str, Any]) -> None:
        self._counts = {"no_input": 0, "no_match": 0}
        self._digits = ""
        self._prompt = render(step.ask, ctx)
        self.waiting_for = "input"
        if self._typeahead and step.input != "speech" and self._use_typeahead(step):
            return
        self._ask_again(step, self._prompt, cacheable=not is_template(step.ask))

    def _ask_again(self, step: AskStep, text: str, *, cacheable: bool = False) -> None:
        self._play(text, None, step.barge_in, cacheable=cacheable)
        self._out.append(listen_for(self.flow, step, self._step, self.settings))

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
        if isinstance(interpret_key(self.flow, step, keys[0]), NoMatch):
            return False  # a stray key: ask properly instead of counting a failure
        self._on_dtmf(keys[0])
        return True

    def _masked(self, step: AskStep, value: str) -> str:
        return MASK if step.capture is not None and step.capture.sensitive else value

    def _on_speech(self, event: SpeechRecognized) -> None:
        step = self._ask()
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
        answer = interpret_speech(self.flow, step, text)
        if isinstance(answer, NeedsModel):
            self._classify(step, text)
        else:
            self._apply(step, answer, "speech")

    def _on_dtmf(self, key: str) -> None:
        step = self._ask()
        if step.input == "speech":
            return
        cap = step.capture
        if cap is not None and is_digit_capture(step):
            if key == (cap.terminator or "#"):
                if not self._digits:
                    # A bare terminator answers nothing: typically the '#' after an entry that already
                    # ended itself at max_length, landing on the next question. Keep listening.
                    return
                self._finish_digits()
                return
            self._digits += key
            if cap.max_length is not None and len(self._digits) >= cap.max_length:
                self._finish_digits()
            return
        shown = self._masked(step, key)
        self._say_transcript("caller", f"DTMF {shown}")
        self._last.update(dtmf=shown, text="", confidence=1.0)
        self._apply(step, interpret_key(self.flow, step, key), "dtmf")

    def _finish_digits(self) -> None:
        step = self._ask()
        digits, self._digits = self._digits, ""
        shown = self._masked(step, digits)
        self._say_transcript("caller", f"DTMF {shown}")
        self._last.update(dtmf=shown, text="", confidence=1.0)
        self._apply(step, interpret_digits(step, digits), "dtmf")

    def _apply(self, step: AskStep, answer: Answer, how: str) -> None:
        """Act on what an answer means: go on, take an intent, or count a no_match."""
        if isinstance(answer, Picked):
            assert step.choices is not None
            if step.save is not None:
                self._frames[-1].vars[step.save] = answer.name
            self._last["choice"] = answer.name
            self._errors = 0
            self._run(step.choices[answer.name].next, f"choice {answer.name} ({how})")
        elif isinstance(answer, Captured):
            assert step.capture is not None
            assert step.next is not None
            self._frames[-1].vars[step.capture.slot] = answer.value
            if step.capture.type == "enum":
                self._last["choice"] = answer.value
            self._errors = 0
            self._log("info", f"captured {step.capture.slot}")
            self._run(step.next, f"captured {step.capture.slot}")
        elif isinstance(answer, Confirmed):
            assert step.confirm is not None
            self._last["choice"] = "yes" if answer.yes else "no"
            self._errors = 0
            self._run(step.confirm.yes if answer.yes else step.confirm.no, self._last["choice"])
        elif isinstance(answer, IntentHit):
            self._intent(step, answer.name)
        else:
            self._retry("no_match")

    def _intent(self, step: AskStep, name: str) -> None:
        intent = self.flow.intents[name]
        self._last["choice"] = name
        if intent.repeat:
            self._digits = ""
            self._ask_again(step, self._prompt, cacheable=not is_template(step.ask))
            return
        assert intent.next is not None
        self._run(intent.next, f"intent {name}")

    def _classify(self, step: AskStep, text: str) -> None:
        assert step.choices is not None
        options = [ClassifyOption(n, c.description, tuple(c.phrases)) for n, c in step.choices.items()]
        if step.global_intents:
            options += [
                ClassifyOption(n, i.description, tuple(i.phrases)) for n, i in self.flow.intents.items()
            ]
        self._out.append(
            Classify(self._step, text, tuple(options), self.settings.llm_model, self.settings.language)
        )
        self.waiting_for = "classify"

    def _retry(self, kind: Literal["no_input", "no_match"]) -> None:
        """Count a failure; reprompt, or leave through the handler's ``next`` (or on_error) when exhausted."""
        step = self._ask()
        handler = step.no_input if kind == "no_input" else step.no_match
        self._counts[kind] += 1
        count = self._counts[kind]
        retries = handler.retries if handler and handler.retries is not None else self.settings.max_retries
        self._digits = ""
        if count > retries:
            reason = f"{kind}: {retries} retries used up in step {self._step}"
            if handler is not None and handler.next is not None:
                self._last["error"] = kind
                self._log("info", reason)
                self._run(handler.next, f"{kind} {count}")
            else:
                self._fail(reason, expected=True)  # the caller's doing, not a fault
            return
        self._log("info", f"{kind} {count}/{retries} in step {self._step}")
        if handler is not None and handler.prompt:
            try:
                text = render(handler.prompt[min(count, len(handler.prompt)) - 1], self._context())
            except TemplateError as exc:
                self._fail(f"template error in step {self._step}: {exc}")
                return
        else:
            default = self.settings.no_input_prompt if kind == "no_input" else self.settings.no_match_prompt
            text = f"{default} {self._prompt}"
        self._ask_again(step, text)
