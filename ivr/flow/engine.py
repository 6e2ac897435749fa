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
waiting for the answer to an action it emitted (:attr:`waiting_for`). :meth:`snapshot` gives its state
as plain JSON and :meth:`restore` rebuilds it on another instance (:mod:`ivr.flow.snapshot`). It keeps :attr:`path` (steps
visited and why, without values), :attr:`transcript` (what was said; sensitive captures masked) and
:attr:`recordings` (messages left at ``record`` steps). Time comes in with each event
(``handle(event, now=...)``), never from a clock; questions live in :mod:`ivr.flow.asking`, the
webhook, transfer and record steps in :mod:`ivr.flow.runtime_steps`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ivr.flow.actions import Action, End, HangupCall, Log, Play, PromptPart
from ivr.flow.asking import QuestionsMixin
from ivr.flow.builtins import MASK, empty_last
from ivr.flow.calendar import all_status
from ivr.flow.captures import CaptureContext, allowed_values
from ivr.flow.clock import moment
from ivr.flow.engine_state import Frame, PathRecord, RecordingEntry, TranscriptEntry, Waiting
from ivr.flow.events import (
    BargeIn,
    CallResumed,
    CallStarted,
    DtmfReceived,
    Event,
    Hangup,
    PromptFinished,
    ProviderError,
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
    LanguageStep,
    PlayStep,
    RecordStep,
    ReturnStep,
    SayStep,
    SetStep,
    SubflowStep,
    TransferStep,
    WebhookStep,
)
from ivr.flow.model_types import language_key
from ivr.flow.prompts import speech_part, spoken_text
from ivr.flow.runtime_steps import RuntimeStepsMixin
from ivr.flow.snapshot import SnapshotError, SnapshotMixin
from ivr.flow.templates import (
    TemplateError,
    evaluate,
    render,
    resolve_value,
    template_budget,
    whole_expression,
)
from ivr.flow.variables import sensitive_variables

__all__ = ["FlowEngine", "PathRecord", "RecordingEntry", "SnapshotError", "TranscriptEntry"]

MAX_STEPS_PER_EVENT = 200
MAX_CONSECUTIVE_ERRORS = 3


class FlowEngine(QuestionsMixin, RuntimeStepsMixin, SnapshotMixin):
    """Runs one call through a flow. Construct one per call; it is cheap."""

    def __init__(
        self, flows: FlowLibrary | Flow, *, env: Mapping[str, str] | None = None, version: str = ""
    ) -> None:
        if isinstance(flows, Flow):
            flows = FlowLibrary(flows.name, {flows.name: flows})
        self.library = flows
        self.version = version
        """The flow's version (content hash) this call runs on, whatever is reloaded meanwhile."""
        # A read-only mapping is shared as it is (a catalog's, for every call); anything else is copied.
        self._env: Mapping[str, str] = env if isinstance(env, MappingProxyType) else dict(env or {})
        self._frames: list[Frame] = []
        self._call: dict[str, Any] = {}
        self._last: dict[str, Any] = empty_last()
        self._out: list[Action] = []
        self._typeahead: list[str] = []
        self._step = ""
        self._counts = {"no_input": 0, "no_match": 0}
        self._errors = 0
        self._now = 0.0
        self._started = 0.0
        self._language = flows.main.settings.language
        self._moments: dict[tuple[float, int], dict[str, Any]] = {}
        self.waiting_for: Waiting = "start"
        self.path: list[PathRecord] = []
        self.transcript: list[TranscriptEntry] = []
        self.recordings: list[RecordingEntry] = []
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
    def language(self) -> str:
        """The call's current language."""
        return self._language

    @property
    def variables(self) -> dict[str, Any]:
        """The current flow's variables, real values included: never log this; see :meth:`safe_variables`."""
        return dict(self._frames[-1].vars) if self._frames else {}

    def safe_variables(self) -> dict[str, Any]:
        """The current flow's variables with sensitive captures (and copies of them) masked."""
        secret = sensitive_variables(self.flow)
        return {k: (MASK if k in secret else v) for k, v in self.variables.items()}

    # ------------------------------------------------------------------ event dispatch

    def handle(self, event: Event, *, now: float | None = None) -> list[Action]:
        """Consume one event; return the actions to perform, in order (empty: keep waiting).

        ``now`` is the moment of the event (epoch seconds), seen by templates as ``now``; without it the
        previous event's moment stands (the call's start for the first)."""
        self._out = []
        if self.finished:
            return []
        if now is not None:
            self._now = now
        with template_budget():  # every template this event renders shares one bounded budget
            self._dispatch(event)
        return self._out

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, Hangup):
            self._log("info", "caller hung up")
            self._end(End("caller_hangup", "caller hung up"))
            return
        if self._resuming:
            self._in_resume(event)
            return
        state = self.waiting_for
        if state == "start":
            if isinstance(event, CallStarted) and not self._resume_pending:
                self._begin(event)
            elif isinstance(event, CallResumed) and self._resume_pending:
                self._resume(event)
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
        elif state == "record":
            self._in_record(event)

    def _begin(self, event: CallStarted) -> None:
        main = self.library.main
        self._started = event.started_at if event.started_at is not None else self._now
        if not self._now:
            self._now = self._started
        wanted = event.language or event.args.get("language")
        if wanted:
            known = language_key(main.settings.spoken_languages, wanted)
            if known is not None:
                self._language = known
            else:
                self._log("warning", f"language {wanted!r} from the dialplan is not one the flow speaks")
        self._call = {
            "id": event.call_id,
            "caller_id": event.caller_id,
            "caller_name": event.caller_name,
            "dialed": event.dialed,
            "direction": event.direction,
            "args": dict(event.args),
            "flow": self.library.root,
            "language": self._language,
            "started": moment(self._started, main.settings.timezone),
        }
        variables = copy.deepcopy(dict(main.vars))
        variables.update(event.vars)
        self._frames = [Frame(self.library.root, main, variables)]
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

    # ------------------------------------------------------------------ running steps

    def _current(self) -> AnyStep:
        return self._frames[-1].flow.step(self._step)

    def _current_ask(self) -> AskStep:
        step = self._current()
        assert isinstance(step, AskStep)
        return step

    def _times(self) -> dict[str, Any]:
        """``now`` and ``hours`` of the current flow at the current event's moment (computed once)."""
        flow = self.flow
        key = (self._now, id(flow))
        found = self._moments.get(key)
        if found is None:
            tz = flow.settings.timezone
            found = {"now": moment(self._now, tz), "hours": all_status(flow.hours, self._now, tz)}
            self._moments = {key: found}
        return found

    def _context(self, *, with_env: bool = False) -> dict[str, Any]:
        ctx = dict(self._frames[-1].vars)
        ctx["call"] = self._call
        ctx["last"] = self._last
        ctx.update(self._times())
        if with_env:
            ctx["env"] = self._env
        return ctx

    def _capture_context(self, step: AskStep) -> CaptureContext:
        cap = step.capture
        allowed = None
        if cap is not None and cap.allowed is not None:
            raw: Any = cap.allowed
            if isinstance(raw, str):
                raw = evaluate(whole_expression(raw) or raw, self._context())
            allowed = allowed_values(raw)
            if allowed is None:
                raise TemplateError(f"capture.allowed must give a list, got {type(raw).__name__}")
        return CaptureContext(
            language=self._language,
            timezone=self.settings.timezone,
            started=self._started,
            currency=self.settings.currency,
            allowed=allowed,
        )

    def _reset_errors(self) -> None:
        self._errors = 0

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
            self._say([speech_part(step.say, self._language, self.settings.language, ctx)], step.barge_in)
            self.waiting_for = "prompt"
            return None
        if isinstance(step, PlayStep):
            self._out.append(Play(self._step, None, step.play, self._barge(step.barge_in), True))
            self._say_transcript("ivr", f"[audio {step.play}]")
            self.waiting_for = "prompt"
            return None
        if isinstance(step, RecordStep):
            self._record(step)
            return None
        if isinstance(step, LanguageStep):
            return self._switch_language(step, ctx)
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
            return self._webhook(step, ctx)
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

    def _barge(self, barge_in: bool | None) -> bool:
        return self.settings.barge_in if barge_in is None else barge_in

    def _voice(self) -> dict[str, str | None]:
        """Voice and TTS engine of the current language (its ``settings.languages`` entry over the flow's)."""
        s = self.settings
        own = s.languages.get(language_key(s.languages, self._language) or "")
        keys = ("voice", "tts", "tts_model", "tts_instructions")
        return {k: (getattr(own, k, None) if own is not None else None) or getattr(s, k) for k in keys}

    def fixed_prompt(self, step: str, text: str) -> Play:
        """A fixed text the runtime says on its own (filler, shutdown goodbye), in the call's language
        and voice: cacheable, keyed like ``ivr prerender`` keys it."""
        part = PromptPart(spoken_text(text), True)
        return Play.spoken(step, [part], barge_in=False, language=self._language, **self._voice())

    def filler_text(self) -> str | None:
        """The flow's filler in the call's language (said while a provider is slow), or None."""
        filler = self.settings.filler
        if filler is None or not self._frames:
            return None
        try:
            return speech_part(filler, self._language, self.settings.language, self._context()).text or None
        except TemplateError:
            return None

    def _speech_engines(self) -> tuple[str | None, str | None]:
        """STT engine and model of the current language."""
        s = self.settings
        own = s.languages.get(language_key(s.languages, self._language) or "")
        if own is None:
            return s.stt, s.stt_model
        return own.stt or s.stt, own.stt_model or s.stt_model

    def _say(self, parts: list[PromptPart], barge_in: bool | None) -> None:
        """Speak ``parts`` back to back as one prompt."""
        play = Play.spoken(
            self._step, parts, barge_in=self._barge(barge_in), language=self._language, **self._voice()
        )
        self._out.append(play)
        self._say_transcript("ivr", play.text or "")

    def _switch_language(self, step: LanguageStep, ctx: dict[str, Any]) -> tuple[str, str] | None:
        wanted = spoken_text(render(step.language, ctx))
        known = language_key(self.library.main.settings.spoken_languages, wanted)
        if known is None:
            known = language_key(self.settings.spoken_languages, wanted)
        if known is None:
            return self._error_target(f"language {wanted!r} is not one the flow speaks")
        self._language = known
        self._call["language"] = known
        self._log("info", f"language {known}")
        return step.next, f"language {known}"

    def _say_transcript(self, speaker: Literal["ivr", "caller"], text: str) -> None:
        self.transcript.append(TranscriptEntry(speaker, text, self._step, self._frames[-1].name))

    def _enter_subflow(self, step: SubflowStep, ctx: dict[str, Any]) -> tuple[str, str] | None:
        sub = self.library.flows.get(step.subflow)
        if sub is None:
            return self._error_target(f"subflow {step.subflow} is not loaded (use FlowEngine.from_file)")
        variables = copy.deepcopy(dict(sub.vars))
        variables.update({k: resolve_value(v, ctx) for k, v in step.with_.items()})
        self._frames.append(Frame(step.subflow, sub, variables, return_to=self._step))
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
