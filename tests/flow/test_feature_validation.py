"""The validator on the newer parts of the language: each finding at its line, with what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.flow.errors import format_path
from ivr.flow.validate import validate_source

HEAD = """\
name: t
start: q
settings:
  language: en-US
  languages: {fr-FR: {}}
hours:
  office:
    open: {mon-fri: "08:00-18:00"}
steps:
"""


def first_error(steps: str, head: str = HEAD) -> tuple[int, str, str]:
    text = head + textwrap.indent(textwrap.dedent(steps), "  ")
    report = validate_source(text, "<t>")
    assert report.errors, "expected an error"
    issue = report.errors[0]
    return issue.line, format_path(issue.path), issue.message


CASES = {
    "missing language": (
        """
        q:
          say: {en: Hello.}
          next: b
        b: {hangup: }
        """,
        (12, "steps.q.say", "no fr-FR text"),
    ),
    "unknown language key": (
        """
        q:
          say: {en: Hello., fr: Bonjour., de: Hallo.}
          next: b
        b: {hangup: }
        """,
        (12, "steps.q.say.de", "'de' is not a language of this flow"),
    ),
    "language step": (
        """
        q:
          language: de-DE
          next: b
        b: {hangup: }
        """,
        (12, "steps.q.language", "'de-DE' is not a language of this flow"),
    ),
    "now typo": (
        """
        q:
          branch:
            - if: now.weekdya == 'sat'
              next: b
          else: b
        b: {hangup: }
        """,
        (13, "steps.q.branch[0].if", "'now.weekdya' is not a field of now"),
    ),
    "unknown calendar": (
        """
        q:
          branch:
            - if: hours.ofice.open
              next: b
          else: b
        b: {hangup: }
        """,
        (13, "steps.q.branch[0].if", "'hours.ofice' is not a calendar of this flow"),
    ),
    "calendar field": (
        """
        q:
          branch:
            - if: hours.office.is_open
              next: b
          else: b
        b: {hangup: }
        """,
        (13, "steps.q.branch[0].if", "'hours.office.is_open' is not a field of a calendar"),
    ),
    "date limit": (
        """
        q:
          ask: When?
          capture: {slot: d, type: date, min: tomorrow}
          next: b
        b: {hangup: }
        """,
        (13, "steps.q.capture.min", "'YYYY-MM-DD', 'today' or 'today+N'"),
    ),
    "bad pattern": (
        """
        q:
          ask: Ref?
          capture: {slot: r, type: alphanumeric, pattern: "[A-Z"}
          next: b
        b: {hangup: }
        """,
        (13, "steps.q.capture.pattern", "'pattern' is not a regular expression"),
    ),
    "options without save": (
        """
        q:
          ask: Which?
          options: {from: "[1, 2]", label: "{{ item }}", empty: b}
          next: b
        b: {hangup: }
        """,
        (12, "steps.q", "needs 'save'"),
    ),
    "options template": (
        """
        q:
          ask: Which?
          options: {from: slotz, label: "{{ item }}", empty: b}
          save: s
          next: b
        b: {hangup: }
        """,
        (13, "steps.q.options.from", "uses variable 'slotz' that nothing sets"),
    ),
    "bad time zone": (
        """
        q: {hangup: }
        """,
        (5, "settings.timezone", "'Mars/Olympus' is not a time zone"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_new_keys_are_checked_at_their_line(case: str) -> None:
    steps, (line, path, fragment) = CASES[case]
    head = (
        HEAD.replace("languages: {fr-FR: {}}", "timezone: Mars/Olympus") if case == "bad time zone" else HEAD
    )
    if case not in ("missing language", "unknown language key", "language step", "bad time zone"):
        head = head.replace("  languages: {fr-FR: {}}\n", "")
        line -= 1
    got = first_error(steps, head)
    assert (got[0], got[1]) == (line, path), got
    assert fragment in got[2], got


def test_a_global_key_among_the_options_keys(tmp_path: Path) -> None:
    text = """\
name: t
start: q
vars: {items: []}
intents:
  agent: {phrases: [agent], dtmf: "2", next: b}
steps:
  q:
    ask: Which?
    options: {from: items, label: "{{ item }}", empty: b, max: 3}
    save: s
    next: b
  b: {hangup: }
"""
    report = validate_source(text, "<t>")
    [issue] = report.errors
    assert (issue.line, format_path(issue.path)) == (9, "steps.q.options.max")
    assert "key '2' belongs to the global intent 'agent'" in issue.message


def test_offline_engines_without_the_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "bi.yaml"
    flow.write_text(
        HEAD.replace("languages: {fr-FR: {}}", "languages: {fr-FR: {tts: offline}}").replace(
            'hours:\n  office:\n    open: {mon-fri: "08:00-18:00"}\n', ""
        )
        + "  q: {say: {en: Hi., fr: Salut.}, next: b}\n  b: {hangup: }\n"
    )
    monkeypatch.delenv("IVR_TTS", raising=False)
    monkeypatch.delenv("IVR_STT", raising=False)
    assert main(["validate", str(flow)]) == 1
    err = capsys.readouterr().err
    assert (
        "bi.yaml:5:22: error: settings.languages.fr-FR: fr-FR: the offline text-to-speech engine has no fr-FR model"
        in err
    )
    flow.write_text(flow.read_text().replace("tts: offline", "tts: openai"))
    assert main(["validate", str(flow)]) == 0
    monkeypatch.setenv("IVR_STT", "offline")  # the process default decides for a language naming none
    assert main(["validate", str(flow)]) == 1
    assert "the offline speech-to-text engine has no fr-FR model" in capsys.readouterr().err


def test_option_templates_get_the_sandbox_checks_too() -> None:
    text = """\
name: t
start: q
vars: {items: []}
steps:
  q:
    ask: Which?
    options: {from: items, label: "{{ item.__class__ }}", empty: b}
    save: s
    next: b
  b: {hangup: }
"""
    report = validate_source(text, "<t>")
    assert [(i.line, format_path(i.path)) for i in report.errors] == [(7, "steps.q.options.label")]
    assert "__class__" in report.errors[0].message
