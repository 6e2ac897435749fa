"""Every validation error, with the exact line, column and key path an author would need."""

from __future__ import annotations

import pytest

from ivr.flow.errors import FlowError, FlowIssue, format_path
from ivr.flow.loader import load_flow, load_library, resolve_flow
from ivr.flow.validate import validate_file, validate_source

from .helpers import DATA_DIR, FLOWS_DIR

# file stem -> (line, column, key path, message fragment, hint fragment or None)
ERRORS: dict[str, tuple[int, int, str, str, str | None]] = {
    "unknown_key": (6, 5, "steps.greet.nxt", "unknown key 'nxt'", "did you mean 'next'?"),
    "missing_start": (1, 1, "start", "missing required key 'start'", "add 'start: NAME'"),
    "bad_start": (2, 8, "start", "start step 'welcom' does not exist", "did you mean 'welcome'?"),
    "bad_target": (
        9,
        15,
        "steps.menu.choices.one.next",
        "target step 'byee' does not exist",
        "did you mean 'bye'?",
    ),
    "no_way_out": (4, 3, "steps.a", "has no way out", "loop forever"),
    "unknown_variable": (
        7,
        10,
        "steps.a.say",
        "uses variable 'balanse' that nothing sets",
        "did you mean 'balance'?",
    ),
    "dtmf_twice": (11, 15, "steps.menu.choices.uno.dtmf", "DTMF key '1' is used twice", None),
    "dtmf_clashes_with_intent": (13, 15, "steps.menu.choices.zero.dtmf", "by global intent 'operator'", None),
    "hash_comment": (
        9,
        18,
        "steps.pin.capture.terminator",
        "'terminator' is empty",
        "unquoted # starts a YAML comment",
    ),
    # at the '#' itself (line 7), not where PyYAML notices the unclosed mapping (line 8): issue 15
    "hash_in_flow_mapping": (
        7,
        21,
        "<top level>",
        "cut short by a comment",
        "unquoted # starts a YAML comment",
    ),
    "star_alias": (8, 16, "<top level>", "YAML syntax error", "unquoted * starts a YAML alias"),
    "yes_boolean": (
        8,
        25,
        "steps.menu.choices.agree.phrases[1]",
        "got the boolean true",
        "unquoted yes as a boolean",
    ),
    "yes_key": (7, 7, "steps.menu.choices.True", "key yes is not text", "unquoted yes as a boolean"),
    # the runtime sandbox refuses these; the validator reports them first (issue 15)
    "unsafe_attribute": (5, 10, "steps.a.say", "'__mro__' is not allowed in flow templates", None),
    # yes (line 7) and on (line 10) are both the key True; YAML keeps the second: issue 15
    "yes_on_collision": (
        10,
        7,
        "steps.menu.choices.True",
        "'on' is the same key as 'yes' on line 7",
        "quotes: 'yes' and 'on'",
    ),
    "octal": (6, 18, "steps.t.transfer.extension", "reads 0100 as the octal number 64", "'0100'"),
    "base60": (4, 12, "vars.opening", "reads 9:30 as the base-60 number 570", "'9:30'"),
    "duplicate_key": (9, 3, "steps.a", "duplicate key 'a' (first defined on line 4)", None),
    "secret_in_prompt": (
        5,
        10,
        "steps.a.say",
        "secrets (env.X) may only be used in a webhook",
        "speak or leak",
    ),
    "sensitive_in_prompt": (12, 10, "steps.read_back.say", "could speak the sensitive value 'pin'", None),
    "no_kind": (4, 3, "steps.a", "step 'a' has no kind key", "did you mean 'say'?"),
    "two_kinds": (4, 3, "steps.a", "several kind keys (say, ask)", "split it"),
    "sensitive_in_transfer": (
        16,
        19,
        "steps.agent.transfer.variables.IVR_CODE",
        "sensitive value 'code'",
        None,
    ),
    "bad_expression": (8, 13, "steps.a.branch[0].if", "expression syntax error", None),
    "bad_template": (5, 10, "steps.a.say", "template syntax error", None),
    "wrong_type": (10, 16, "steps.a.no_input.retries", "wrong type: got 'many'", None),
    "bad_dtmf": (8, 15, "steps.menu.choices.twelve.dtmf", "'12' is not a DTMF key", None),
    "ask_without_answers": (
        5,
        5,
        "steps.a",
        "exactly one of 'choices', 'capture', 'confirm' or 'options'",
        None,
    ),
    "bad_capture_type": (8, 13, "steps.a.capture.type", "'datetime' is not allowed here", None),
    "key_for_other_type": (9, 7, "steps.a.capture.min", "only applies to capture type number", None),
    "subflow_missing": (5, 14, "steps.a.subflow", "subflow 'adress' not found", None),
    "subflow_cycle": (5, 14, "steps.a.subflow", "subflow cycle: subflow_cycle -> subflow_cycle", None),
    "with_unknown_var": (
        7,
        17,
        "steps.a.with.questoin",
        "has no variable 'questoin'",
        "did you mean 'question'?",
    ),
    "builtin_typo": (5, 10, "steps.a.say", "'call.callerid' is not a built-in", "did you mean 'caller_id'?"),
    "reserved_var": (4, 9, "vars.call", "'call' is a built-in name", None),
    "two_documents": (6, 1, "<top level>", "more than one YAML document", None),
    "not_a_mapping": (1, 1, "<top level>", "must be a mapping", None),
    "empty": (1, 1, "<top level>", "the file is empty", None),
    "step_not_mapping": (4, 6, "steps.a", "a step must be a mapping", None),
    "missing_next": (5, 5, "steps.a.next", "missing required key 'next'", None),
    "bad_name": (7, 13, "steps.a.capture.slot", "'2nd-number' is not a valid name", None),
    "dtmf_only_choice_without_key": (12, 9, "steps.menu.choices.two", "has no dtmf key", None),
}


@pytest.mark.parametrize("stem", sorted(ERRORS))
def test_validation_error_points_at_the_spot(stem: str) -> None:
    line, column, path, fragment, hint = ERRORS[stem]
    report = validate_file(DATA_DIR / f"{stem}.yaml")
    assert not report.ok
    assert report.flow is None
    first = report.errors[0]
    assert (first.line, first.column, format_path(first.path)) == (line, column, path), str(first)
    assert fragment in first.message, str(first)
    if hint is not None:
        assert first.hint is not None, str(first)
        assert hint in first.hint, str(first)
    assert first.file.endswith(f"{stem}.yaml")
    assert str(first).startswith(f"{first.file}:{line}:{column}: error: {path}: ")


def test_every_error_fixture_is_covered() -> None:
    stems = {p.stem for p in DATA_DIR.glob("*.yaml")} - {"unreachable", "sub_ok", "sensitive_in_url"}
    assert stems == set(ERRORS)


def test_unreachable_step_is_only_a_warning() -> None:
    report = validate_file(DATA_DIR / "unreachable.yaml")
    assert report.ok
    assert report.flow is not None
    [warning] = report.warnings
    assert (warning.line, warning.column, warning.severity) == (6, 3, "warning")
    assert "can never be reached" in warning.message


def test_sensitive_value_in_a_url_is_a_warning() -> None:
    report = validate_file(DATA_DIR / "sensitive_in_url.yaml")
    assert report.ok
    [warning] = report.warnings
    assert (warning.line, warning.column) == (10, 12)
    assert "can end up in server and proxy logs" in warning.message


def test_unknown_key_does_not_also_report_the_missing_key_it_suggests() -> None:
    report = validate_file(DATA_DIR / "unknown_key.yaml")
    assert len(report.errors) == 1


def test_issue_formatting() -> None:
    issue = FlowIssue("error", "f.yaml", 3, 7, ("steps", "menu", "choices", 0, "next"), "bad", "x", "try y")
    assert str(issue) == "f.yaml:3:7: error: steps.menu.choices[0].next: bad; expected x (hint: try y)"


def test_confirm_yes_no_keys_survive_yaml_booleans() -> None:
    report = validate_source(
        "name: t\nstart: q\nsteps:\n  q:\n    ask: OK?\n    confirm:\n      yes: a\n      no: a\n  a:\n    hangup:\n",
        "t.yaml",
    )
    assert report.ok, report.issues


@pytest.mark.parametrize("name", ["bank", "pizza", "reminder", "address"])
def test_example_flows_validate_cleanly(name: str) -> None:
    report = validate_file(FLOWS_DIR / f"{name}.yaml")
    assert report.issues == []
    assert report.flow is not None


def test_load_library_includes_subflows_and_rejects_broken_files() -> None:
    library = load_library(FLOWS_DIR / "pizza.yaml")
    assert library.root == "pizza"
    assert set(library.flows) == {"pizza", "address"}
    with pytest.raises(FlowError) as excinfo:
        load_flow(DATA_DIR / "bad_start.yaml")
    assert "bad_start.yaml:2:8" in str(excinfo.value)


def test_resolve_flow_by_stem() -> None:
    assert resolve_flow(FLOWS_DIR, "pizza") == FLOWS_DIR / "pizza.yaml"
    assert resolve_flow(FLOWS_DIR / "bank.yaml") == FLOWS_DIR / "bank.yaml"
    with pytest.raises(FileNotFoundError, match="no flow 'pasta'"):
        resolve_flow(FLOWS_DIR, "pasta")


def test_every_key_error_has_a_position_inside_the_file() -> None:
    for path in DATA_DIR.glob("*.yaml"):
        lines = max(1, len(path.read_text().splitlines()))
        for issue in validate_file(path).issues:
            assert 1 <= issue.line <= lines + 1, issue


def test_colliding_boolean_keys_are_explained_at_the_key_yaml_keeps() -> None:
    report = validate_file(DATA_DIR / "yes_on_collision.yaml")
    about_yes = [i for i in report.errors if "unquoted yes" in (i.hint or "")]
    about_on = [i for i in report.errors if "unquoted on" in (i.hint or "")]
    assert not about_yes, [str(i) for i in about_yes]  # 'yes' was dropped by YAML: no hint about its value
    assert [(i.line, i.column) for i in about_on] == [(10, 7)], [str(i) for i in report.errors]


def test_every_unsafe_attribute_of_a_template_is_reported() -> None:
    report = validate_file(DATA_DIR / "unsafe_attribute.yaml")
    named = sorted(i.message.split("'")[1] for i in report.errors)
    assert named == ["__class__", "__globals__", "__mro__"], [str(i) for i in report.errors]
