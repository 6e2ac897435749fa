"""A call's flow state as plain JSON, and the engine rebuilt from it on another instance.

When the instance serving a call dies, another one resumes the call at the step it was at. What that
needs is small and has no values a caller must not see stored: the current step and what the engine
waits for, every flow frame's variables **except sensitive ones** (sensitive captures and what was copied
from them), the retry counters, the subflow stack, the call facts (``call.*``), the language, and the
path, transcript and recordings so far (the record the resuming instance writes covers the whole call).

What is deliberately not kept: keys pressed as type-ahead, a half-entered digit string, a value read
back and waiting for "yes", the options built for a question: the resumed step is entered again, so its
question (with the options) is asked again. The retry counters of that question are kept, so a caller
who already used up two no-inputs does not get two more.

A mixin of :class:`~ivr.flow.engine.FlowEngine` (pure, like the engine): :meth:`snapshot` after any
event, :meth:`restore` on a fresh engine of the same flow, then ``handle(CallResumed(...))`` says the
flow's ``resume_prompt`` (if any) and enters the step again.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ivr.flow.actions import Action, PromptPart
from ivr.flow.builtins import MASK, empty_last
from ivr.flow.clock import moment
from ivr.flow.engine_state import Frame, PathRecord, RecordingEntry, TranscriptEntry, Waiting
from ivr.flow.events import BargeIn, CallResumed, DtmfReceived, Event, PromptFinished, ProviderError
from ivr.flow.loader import FlowLibrary
from ivr.flow.model import AskStep, FlowSettings
from ivr.flow.prompts import speech_part
from ivr.flow.templates import TemplateError
from ivr.flow.variables import sensitive_variables

SNAPSHOT_VERSION = 1
"""Bumped when the snapshot's shape changes; a snapshot of another version is refused."""
RESUMABLE: frozenset[str] = frozenset({"prompt", "input", "classify", "webhook", "transfer", "record"})
"""What the engine may wait for at a step it can enter again (``start`` has no step, ``done`` ended)."""
CALL_KEYS = ("id", "caller_id", "caller_name", "dialed", "direction", "args", "flow", "language")
MAX_DEPTH = 64


class SnapshotError(ValueError):
    """A snapshot this engine cannot resume from (another version, another flow, a step that is gone)."""


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON types: mappings with string keys, lists, str, finite numbers, bool, None;
    anything else (a date, a template's markup) becomes its text."""
    if depth > MAX_DEPTH:
        raise SnapshotError("a flow variable is nested too deep to snapshot")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    return str(value)


class SnapshotMixin:
    """Snapshot and restore; the attributes below belong to the engine."""

    library: FlowLibrary
    _frames: list[Frame]
    _call: dict[str, Any]
    _last: dict[str, Any]
    _typeahead: list[str]
    _out: list[Action]
    _step: str
    _counts: dict[str, int]
    _errors: int
    _now: float
    _started: float
    _language: str
    _moments: dict[tuple[float, int], dict[str, Any]]
    _digits: str
    waiting_for: Waiting
    path: list[PathRecord]
    transcript: list[TranscriptEntry]
    recordings: list[RecordingEntry]

    _resume_pending: bool = False
    """Restored, waiting for :class:`CallResumed`."""
    _resuming: bool = False
    """The resume prompt plays; when it ends the step is entered again."""
    _secret_names: dict[int, set[str]] | None = None

    # provided by the engine
    @property
    def settings(self) -> FlowSettings:
        raise NotImplementedError

    def _run(self, target: str, via: str) -> None:
        raise NotImplementedError

    def _say(self, parts: list[PromptPart], barge_in: bool | None) -> None:
        raise NotImplementedError

    def _log(self, level: Literal["debug", "info", "warning", "error"], message: str) -> None:
        raise NotImplementedError

    def _context(self, *, with_env: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ snapshot

    @property
    def resumable(self) -> bool:
        """The engine waits at a step another instance could enter again."""
        return self.waiting_for in RESUMABLE and bool(self._frames)

    @property
    def retries(self) -> dict[str, int]:
        """The current question's retry counters (``{"no_input": 1, "no_match": 0}``)."""
        return dict(self._counts)

    @property
    def progress(self) -> tuple[int, int, int, str]:
        """Changes whenever the engine enters a step or counts a retry: when to save a checkpoint."""
        return (len(self.path), self._counts["no_input"], self._counts["no_match"], self.waiting_for)

    def _secrets(self, frame: Frame) -> set[str]:
        if self._secret_names is None:
            self._secret_names = {}
        key = id(frame.flow)
        found = self._secret_names.get(key)
        if found is None:
            found = self._secret_names[key] = sensitive_variables(frame.flow)
        return found

    def checkpoint_variables(self) -> dict[str, Any]:
        """The current flow's variables without sensitive ones (not masked: left out), as JSON types."""
        if not self._frames:
            return {}
        frame = self._frames[-1]
        secret = self._secrets(frame)
        return {k: plain(v) for k, v in frame.vars.items() if k not in secret}

    def snapshot(self) -> dict[str, Any]:
        """The call's flow state as plain JSON (see the module docstring for what it holds)."""
        frames = []
        for frame in self._frames:
            secret = self._secrets(frame)
            frames.append(
                {
                    "flow": frame.name,
                    "vars": {k: plain(v) for k, v in frame.vars.items() if k not in secret},
                    "return_to": frame.return_to,
                }
            )
        last = plain(self._last)
        step = self._frames[-1].flow.steps.get(self._step) if self._frames else None
        if isinstance(step, AskStep) and step.capture is not None and step.capture.sensitive:
            last["value"] = MASK if last.get("value") is not None else None
        return {
            "v": SNAPSHOT_VERSION,
            "flow": self.library.root,
            "step": self._step,
            "waiting": self.waiting_for,
            "language": self._language,
            "started": self._started,
            "now": self._now,
            "call": {k: plain(self._call.get(k)) for k in CALL_KEYS},
            "frames": frames,
            "last": last,
            "counts": dict(self._counts),
            "errors": self._errors,
            "path": [[p.flow, p.step, p.kind, p.via] for p in self.path],
            "transcript": [[t.speaker, t.text, t.step, t.flow] for t in self.transcript],
            "recordings": [[r.step, r.flow, r.duration_s, r.ended_by, r.path] for r in self.recordings],
        }

    # ------------------------------------------------------------------ restore

    def restore(self, state: Mapping[str, Any]) -> None:
        """Rebuild this (fresh) engine from :meth:`snapshot`; then ``handle(CallResumed(...))``.

        Raises :class:`SnapshotError` when the snapshot is of another version or flow, or names a step
        or subflow this flow (perhaps reloaded since) no longer has.
        """
        if self.waiting_for != "start":
            raise SnapshotError("restore() needs a fresh engine")
        try:
            self._restore(state)
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SnapshotError(f"malformed flow snapshot: {type(exc).__name__}: {exc}") from None

    def _restore(self, state: Mapping[str, Any]) -> None:
        if state.get("v") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"flow snapshot version {state.get('v')!r}, this ivr reads {SNAPSHOT_VERSION}"
            )
        if state["flow"] != self.library.root:
            raise SnapshotError(f"snapshot of flow {state['flow']!r}, this engine runs {self.library.root!r}")
        waiting = str(state["waiting"])
        if waiting not in RESUMABLE:
            raise SnapshotError(f"the call was not at a step it can resume ({waiting})")
        frames: list[Frame] = []
        for item in _list(state["frames"]):
            name = str(item["flow"])
            flow = self.library.flows.get(name)
            if flow is None:
                raise SnapshotError(f"subflow {name!r} is not part of this flow any more")
            return_to = item.get("return_to")
            frames.append(Frame(name, flow, dict(item["vars"]), str(return_to) if return_to else None))
        if not frames:
            raise SnapshotError("a flow snapshot without frames")
        step = str(state["step"])
        if step not in frames[-1].flow.steps:
            raise SnapshotError(f"step {step!r} of {frames[-1].name!r} does not exist any more")
        for outer, inner in itertools.pairwise(frames):
            if inner.return_to not in outer.flow.steps:
                raise SnapshotError(f"step {inner.return_to!r} of {outer.name!r} does not exist any more")
        self._frames = frames
        self._step = step
        self._language = str(state["language"])
        self._started = float(state["started"])
        self._now = float(state["now"])
        timezone = self.library.main.settings.timezone
        self._call = {k: state["call"].get(k) for k in CALL_KEYS}
        self._call["args"] = dict(self._call.get("args") or {})
        self._call["started"] = moment(self._started, timezone)
        self._last = {**empty_last(), **dict(state["last"])}
        counts = state["counts"]
        self._counts = {"no_input": int(counts["no_input"]), "no_match": int(counts["no_match"])}
        self._errors = int(state["errors"])
        self.path = [PathRecord(*map(str, p)) for p in _list(state["path"])]
        self.transcript = [
            TranscriptEntry(_speaker(t[0]), str(t[1]), str(t[2]), str(t[3]))
            for t in _list(state["transcript"])
        ]
        self.recordings = [
            RecordingEntry(str(r[0]), str(r[1]), float(r[2]), str(r[3]), None if r[4] is None else str(r[4]))
            for r in _list(state["recordings"])
        ]
        self._moments = {}
        self._resume_pending = True

    # ------------------------------------------------------------------ resuming

    def _resume(self, event: CallResumed) -> None:
        """The first event of a restored engine: the apology, then the step again."""
        self._resume_pending = False
        self._log("info", f"call resumed at step {self._step}")
        apology = self.settings.resume_prompt
        if apology is not None:
            try:
                part = speech_part(apology, self._language, self.settings.language, self._context())
            except TemplateError as exc:
                self._log("warning", f"resume_prompt not said: template error: {exc}")
                part = None
            if part is not None and part.text:
                self._say([part], False)  # heard to the end: keys pressed meanwhile are type-ahead
                self._resuming = True
                self.waiting_for = "prompt"
                return
        self._enter_again()

    def _in_resume(self, event: Event) -> None:
        """While the resume prompt plays."""
        if isinstance(event, PromptFinished | BargeIn | ProviderError):
            self._resuming = False
            self._enter_again()
        elif isinstance(event, DtmfReceived):
            self._typeahead.append(event.digit)

    def _enter_again(self) -> None:
        """Enter the step the call was at, keeping its question's retry counters."""
        counts = dict(self._counts)
        target = self._step
        self._digits = ""
        self._run(target, "resumed")
        if self._step == target and self.waiting_for == "input":
            self._counts = counts


def _list(value: Any) -> Sequence[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _speaker(value: Any) -> Literal["ivr", "caller"]:
    if value not in ("ivr", "caller"):
        raise ValueError(f"transcript speaker {value!r}")
    return "ivr" if value == "ivr" else "caller"
