"""Validation of the flow language's newer parts: languages, dynamic options, capture read-backs and
rules, business hours (and their include files), ``now``/``hours`` references, ``language`` steps.

Run from :func:`ivr.flow.checks.check_flow` on a schema-valid flow; every finding has its line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.flow.builtins import RESERVED_NAMES
from ivr.flow.calendar import HOURS_FIELDS, IncludeError, read_include
from ivr.flow.clock import TIME_FIELDS, check_timezone
from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean
from ivr.flow.model import AskStep, Flow, LanguageStep, Reprompt, SayStep, WebhookStep
from ivr.flow.model_types import language_key
from ivr.flow.sites import speech_sites, template_sites
from ivr.flow.source import SourceMap
from ivr.flow.template_checks import static_findings
from ivr.flow.templates import (
    SANDBOX,
    TemplateError,
    attribute_uses,
    is_template,
    parse_source,
    referenced_names,
    whole_expression,
)
from ivr.flow.variables import assigned_variables

OPTION_NAMES = frozenset({"item", "index"})
READ_OUT_NAMES = frozenset({"item", "index", "label", "key"})
CONFIRM_NAMES = frozenset({"heard", "value"})
_DEFAULT_TEXTS = ("no_input_prompt", "no_match_prompt", "invalid_prompt", "confirm_prompt", "option_prompt")


def _known(flow: Flow) -> set[str]:
    return set(assigned_variables(flow)) | RESERVED_NAMES | set(SANDBOX.globals)


def _template(
    smap: SourceMap, path: KeyPath, source: str, known: set[str], *, expression: bool = False
) -> list[FlowIssue]:
    """Syntax and unknown names of one template or expression that checks.py does not see."""
    try:
        tree = parse_source(source, expression=expression)
    except TemplateError as exc:
        return [smap.issue(path, str(exc))]
    out = [smap.issue(path, finding) for finding in static_findings(tree)]  # unsafe attributes, bombs
    for name in sorted(referenced_names(tree) - known):
        out.append(
            smap.issue(
                path,
                f"uses variable '{name}' that nothing sets",
                hint=did_you_mean(name, known - set(SANDBOX.globals)),
            )
        )
    return out


def _expression(source: str) -> str:
    return whole_expression(source) or source


def _options(flow: Flow, smap: SourceMap, known: set[str]) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    intent_keys = {i.dtmf: n for n, i in flow.intents.items() if i.dtmf}
    for name, step in flow.steps.items():
        if not isinstance(step, AskStep) or step.options is None:
            continue
        spec = step.options
        b: KeyPath = ("steps", name, "options")
        out += _template(smap, (*b, "from"), _expression(spec.from_), known, expression=True)
        item_known = known | OPTION_NAMES
        out += _template(smap, (*b, "label"), spec.label, item_known)
        if spec.value is not None:
            out += _template(smap, (*b, "value"), _expression(spec.value), item_known, expression=True)
        for i, phrase in enumerate(spec.phrases):
            out += _template(smap, (*b, "phrases", i), phrase, item_known)
        if spec.say is not None:
            for path, text in speech_sites((*b, "say"), spec.say):
                out += _template(smap, path, text, known | READ_OUT_NAMES)
        if step.global_intents:
            for key in sorted(k for k in intent_keys if k in "123456789"[: spec.max]):
                out.append(
                    smap.issue(
                        (*b, "max"),
                        f"options are read out with keys 1-{spec.max}, but key '{key}' belongs to the "
                        f"global intent '{intent_keys[key]}'",
                        hint="lower options.max, move the intent's key, or set global_intents: false",
                    )
                )
    return out


def _captures(flow: Flow, smap: SourceMap, known: set[str]) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    for name, step in flow.steps.items():
        if not isinstance(step, AskStep) or step.capture is None:
            continue
        cap = step.capture
        b: KeyPath = ("steps", name, "capture")
        if isinstance(cap.confirm, str | dict):
            for path, text in speech_sites((*b, "confirm"), cap.confirm):
                out += _template(smap, path, text, known | CONFIRM_NAMES)
        if isinstance(cap.allowed, str):
            out += _template(smap, (*b, "allowed"), _expression(cap.allowed), known, expression=True)
        if (
            cap.type == "alphanumeric"
            and step.input == "dtmf"
            and cap.pattern
            and any(ch.isalpha() for ch in cap.pattern.replace("\\d", "").replace("\\w", ""))
        ):
            out.append(
                smap.issue(
                    (*b, "pattern"),
                    "this pattern wants letters, but the question only listens for keys (input: dtmf)",
                    severity="warning",
                    hint="letters can only be spelled by speech; use input: both",
                )
            )
    return out


def _languages(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    """Per-language texts name the flow's languages and cover all of them."""
    out: list[FlowIssue] = []
    languages = flow.settings.spoken_languages
    for path, value in _spoken_values(flow):
        if not isinstance(value, Mapping):
            continue
        for tag in value:
            if language_key(languages, tag) is None:
                out.append(
                    smap.issue(
                        (*path, tag),
                        f"'{tag}' is not a language of this flow",
                        expected=f"one of {', '.join(languages)} (settings.language and settings.languages)",
                        hint=did_you_mean(tag, languages),
                        at_key=True,
                    )
                )
        for language in languages:
            if language_key(value, language) is None:
                out.append(
                    smap.issue(
                        path,
                        f"no {language} text: callers in {language} would hear nothing here",
                        hint=f"add '{language}: ...' (or a text for '{language.split('-')[0]}')",
                    )
                )
    if len(languages) > 1:
        defaults = type(flow.settings)()
        for key in _DEFAULT_TEXTS:
            value = getattr(flow.settings, key)
            if isinstance(value, str) and value == getattr(defaults, key):
                out.append(
                    smap.issue(
                        ("settings",),
                        f"settings.{key} is the built-in English text, said in every language",
                        severity="warning",
                        hint=f"give one per language: {key}: {{{', '.join(f'{t}: ...' for t in languages)}}}",
                        at_key=True,
                    )
                )
    for name, step in flow.steps.items():
        if (
            isinstance(step, LanguageStep)
            and not is_template(step.language)
            and language_key(languages, step.language) is None
        ):
            out.append(
                smap.issue(
                    ("steps", name, "language"),
                    f"'{step.language}' is not a language of this flow",
                    expected=f"one of {', '.join(languages)}",
                    hint="add it to settings.languages",
                )
            )
    return out


def _spoken_values(flow: Flow) -> Iterable[tuple[KeyPath, object]]:
    s = flow.settings
    for key in (*_DEFAULT_TEXTS, "filler", "resume_prompt"):
        yield ("settings", key), getattr(s, key)
    for name, step in flow.steps.items():
        b: KeyPath = ("steps", name)
        if isinstance(step, SayStep):
            yield (*b, "say"), step.say
        elif isinstance(step, WebhookStep) and step.filler is not None:
            yield (*b, "filler"), step.filler
        elif isinstance(step, AskStep):
            yield (*b, "ask"), step.ask
            handlers: list[tuple[str, Reprompt | None]] = [
                ("no_input", step.no_input),
                ("no_match", step.no_match),
            ]
            if step.capture is not None:
                handlers.append(("capture.invalid", step.capture.invalid))
                if isinstance(step.capture.confirm, dict):
                    yield (*b, "capture", "confirm"), step.capture.confirm
            for where, handler in handlers:
                for field in ("prompt", "prefix"):
                    for i, text in enumerate(getattr(handler, field, None) or []):
                        yield (*b, *where.split("."), field, i), text
            if step.options is not None and step.options.say is not None:
                yield (*b, "options", "say"), step.options.say


def _time_references(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    """``now.X``, ``call.started.X`` and ``hours.NAME.X`` name real fields and calendars."""
    out: list[FlowIssue] = []
    sites = [(s.path, s.source, s.expression) for s in template_sites(flow)]
    for path, source, expression in sites:
        try:
            tree = parse_source(source, expression=expression)
        except TemplateError:
            continue  # reported by checks.py
        for attr in sorted(attribute_uses(tree, "now") - set(TIME_FIELDS) - {"*"}):
            out.append(
                smap.issue(
                    path,
                    f"'now.{attr}' is not a field of now",
                    expected=f"one of {', '.join(f'now.{f}' for f in TIME_FIELDS)}",
                    hint=did_you_mean(attr, TIME_FIELDS),
                )
            )
        for calendar in sorted(attribute_uses(tree, "hours") - {"*"}):
            if calendar not in flow.hours:
                out.append(
                    smap.issue(
                        path,
                        f"'hours.{calendar}' is not a calendar of this flow",
                        expected=f"one of {', '.join(flow.hours) or '(none: add a top-level hours: mapping)'}",
                        hint=did_you_mean(calendar, flow.hours),
                    )
                )
        out += _calendar_fields(smap, path, source)
    return out


def _calendar_fields(smap: SourceMap, path: KeyPath, source: str) -> list[FlowIssue]:
    import re

    out = []
    for calendar, field in re.findall(r"\bhours\.(\w+)\.(\w+)", source):
        if field not in HOURS_FIELDS:
            out.append(
                smap.issue(
                    path,
                    f"'hours.{calendar}.{field}' is not a field of a calendar",
                    expected=f"one of {', '.join(HOURS_FIELDS)}",
                    hint=did_you_mean(field, HOURS_FIELDS),
                )
            )
    return out


def _hours(flow: Flow, smap: SourceMap, flows_dir: Path | None) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    for name, calendar in flow.hours.items():
        b: KeyPath = ("hours", name)
        if calendar.timezone is not None:
            try:
                check_timezone(calendar.timezone, f"hours.{name}.timezone")
            except ValueError as exc:
                out.append(smap.issue((*b, "timezone"), str(exc)))
        if flows_dir is None:
            continue
        for i, file in enumerate(calendar.include):
            try:
                read_include(flows_dir / file)
            except IncludeError as exc:
                out.append(
                    smap.issue(
                        (*b, "include", i), str(exc), expected="a YAML list of dates or {date, hours, name}"
                    )
                )
    return out


def feature_checks(flow: Flow, smap: SourceMap, flows_dir: Path | None = None) -> list[FlowIssue]:
    known = _known(flow)
    return [
        *_options(flow, smap, known),
        *_captures(flow, smap, known),
        *_languages(flow, smap),
        *_time_references(flow, smap),
        *_hours(flow, smap, flows_dir),
    ]


def offline_language_issues(
    flow: Flow, smap: SourceMap, installed: Mapping[str, frozenset[str] | None], defaults: Mapping[str, str]
) -> list[FlowIssue]:
    """Languages whose STT or TTS engine is ``offline`` where no installed offline model speaks them.

    ``installed`` maps ``stt``/``tts`` to the languages (primary subtags) the offline models speak (None:
    any); ``defaults`` holds the process defaults (``IVR_STT``/``IVR_TTS``) for languages naming none."""
    out: list[FlowIssue] = []
    s = flow.settings
    for language in s.spoken_languages:
        own = s.languages.get(language_key(s.languages, language) or "")
        for kind in ("stt", "tts"):
            engine = (
                (getattr(own, kind) if own is not None else None) or getattr(s, kind) or defaults.get(kind)
            )
            speaks = installed.get(kind)
            if engine != "offline" or speaks is None or language.split("-")[0].lower() in speaks:
                continue
            have = ", ".join(sorted(speaks)) or "none installed"
            path: KeyPath = (
                ("settings", "languages", language) if own is not None else ("settings", "language")
            )
            out.append(
                smap.issue(
                    path,
                    f"{language}: the offline {'speech-to-text' if kind == 'stt' else 'text-to-speech'} "
                    f"engine has no {language} model (offline languages: {have})",
                    hint=f"set {kind}: openai for {language} (settings.languages.{language}.{kind})",
                )
            )
    return out
