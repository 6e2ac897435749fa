"""The steps the runtime carries out for the engine: ``webhook``, ``transfer`` and ``record``.

Each emits one action (:class:`~ivr.flow.actions.HttpRequest`, :class:`~ivr.flow.actions.Transfer`,
:class:`~ivr.flow.actions.Record`), waits, and takes the result event the runtime feeds back: the
response saved or the error path, the call handed on or the failure branch, the message measured and
kept. A mixin of :class:`~ivr.flow.engine.FlowEngine` (pure, like the engine; split off only to keep
each module readable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ivr.flow.actions import Action, End, HttpRequest, Record, Transfer
from ivr.flow.engine_state import Frame, RecordingEntry, Waiting
from ivr.flow.events import (
    DtmfReceived,
    Event,
    RecordingFailed,
    RecordingFinished,
    TransferCompleted,
    TransferFailed,
    WebhookFailed,
    WebhookResult,
)
from ivr.flow.model import AnyStep, FlowSettings, RecordStep, TransferStep, WebhookStep
from ivr.flow.prompts import speech_part
from ivr.flow.templates import TemplateError, attribute_uses, parse_source, render, resolve_value


class RuntimeStepsMixin:
    """Webhook, transfer and record steps; the attributes below belong to the engine."""

    _env: Mapping[str, str]
    _out: list[Action]
    _frames: list[Frame]
    _last: dict[str, Any]
    _typeahead: list[str]
    _step: str
    _language: str
    waiting_for: Waiting
    recordings: list[RecordingEntry]

    if TYPE_CHECKING:  # provided by the engine (declared for the type checker only: no stand-ins at run time)

        @property
        def settings(self) -> FlowSettings: ...

        def _current(self) -> AnyStep: ...

        def _context(self, *, with_env: bool = False) -> dict[str, Any]: ...

        def _reset_errors(self) -> None: ...

        def _run(self, target: str, via: str) -> None: ...

        def _end(self, end: End) -> None: ...

        def _log(self, level: Literal["debug", "info", "warning", "error"], message: str) -> None: ...

        def _say_transcript(self, speaker: Literal["ivr", "caller"], text: str) -> None: ...

        def _error_target(
            self, reason: str, explicit: str | None = None, *, expected: bool = False
        ) -> tuple[str, str] | None: ...

        def _fail(self, reason: str, explicit: str | None = None, *, expected: bool = False) -> None: ...

    # ------------------------------------------------------------------ webhook, transfer, record

    def _webhook(self, step: WebhookStep, ctx: dict[str, Any]) -> tuple[str, str] | None:
        spec = step.webhook
        env_ctx = self._context(with_env=True)
        names = attribute_uses(parse_source(spec.url), "env")
        for header in spec.headers.values():
            names |= attribute_uses(parse_source(header), "env")
        missing = sorted(n for n in names if n not in self._env and n != "*")
        if missing:
            # The request cannot be made: this step's own error path, with the reason in one line.
            return self._error_target(
                f"webhook needs the environment variable {missing[0]} (env.{missing[0]}), which is not set",
                step.on_error,
            )
        secrets = tuple(self._env[n] for n in sorted(names) if n in self._env)
        s = self.settings
        filler = step.filler if step.filler is not None else s.filler
        try:
            request = HttpRequest(
                step=self._step,
                method=spec.method,
                url=render(spec.url, env_ctx),
                headers={k: render(v, env_ctx) for k, v in spec.headers.items()},
                json_body=resolve_value(spec.json_body, ctx),
                timeout_ms=spec.timeout_ms,
                filler=(
                    speech_part(filler, self._language, s.language, ctx).text if filler is not None else None
                ),
                filler_after_ms=s.filler_after_ms,
                secrets=secrets,
            )
        except TemplateError as exc:
            return self._error_target(f"template error in step {self._step}: {exc}", step.on_error)
        self._out.append(request)
        self._log("info", f"webhook {spec.method} requested")
        self.waiting_for = "webhook"
        return None

    def _in_webhook(self, event: Event) -> None:
        step = self._current()
        assert isinstance(step, WebhookStep)
        if isinstance(event, WebhookResult):
            self._last["status"] = event.status
            if 200 <= event.status < 300:
                if step.save is not None:
                    self._frames[-1].vars[step.save] = event.body
                self._reset_errors()
                self._run(step.next, f"status {event.status}")
            else:
                self._fail(f"webhook returned status {event.status}", step.on_error)
        elif isinstance(event, WebhookFailed):
            self._last["status"] = 0
            self._fail(f"webhook failed: {event.reason}", step.on_error)
        elif isinstance(event, DtmfReceived):
            self._typeahead.append(event.digit)

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

    def _in_transfer(self, event: Event) -> None:
        step = self._current()
        assert isinstance(step, TransferStep)
        if isinstance(event, TransferCompleted):
            self._end(End("transferred", self._step))
        elif isinstance(event, TransferFailed):
            cause = f" (cause {event.cause})" if event.cause is not None else ""
            self._fail(f"transfer {event.reason}{cause}", step.on_failure)

    def _record(self, step: RecordStep) -> None:
        spec = step.record
        name = f"{self._frames[-1].name}-{self._step}"
        self._out.append(
            Record(
                step=self._step,
                max_ms=spec.max_ms,
                end_silence_ms=spec.end_silence_ms,
                no_input_timeout_ms=(
                    spec.no_input_timeout_ms
                    if spec.no_input_timeout_ms is not None
                    else self.settings.no_input_timeout_ms
                ),
                beep=spec.beep,
                end_key=spec.end_key,
                sensitive=spec.sensitive,
                name=name,
            )
        )
        self._say_transcript("caller", "[recording]")
        self.waiting_for = "record"

    def _in_record(self, event: Event) -> None:
        step = self._current()
        assert isinstance(step, RecordStep)
        if isinstance(event, RecordingFinished):
            kept = event.path is not None and not step.record.sensitive
            entry = RecordingEntry(
                self._step,
                self._frames[-1].name,
                round(event.duration_ms / 1000, 3),
                event.ended_by,
                event.path if kept else None,
            )
            self.recordings.append(entry)
            if step.save is not None:
                self._frames[-1].vars[step.save] = {
                    "duration_s": entry.duration_s,
                    "ended_by": entry.ended_by,
                    "kept": kept,
                }
            self._reset_errors()
            self._log("info", f"recorded {entry.duration_s:.1f} s (ended by {entry.ended_by})")
            self._run(step.next, f"recorded ({event.ended_by})")
        elif isinstance(event, RecordingFailed):
            self._fail(f"recording failed: {event.reason}", step.on_error)
