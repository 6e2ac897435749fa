"""Caller-script loading: what YAML really reads, and errors that name the file, the step and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.simulation import script as sc


def load(tmp_path: Path, text: str) -> sc.CallerScript:
    path = tmp_path / "call.caller.yaml"
    path.write_text(text, encoding="utf-8")
    return sc.load_script(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(sc.ScriptError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "call.caller.yaml"))
    return message


def test_every_step_kind_loads(tmp_path: Path) -> None:
    script = load(
        tmp_path,
        """
caller: {name: Bob, number: "5550100"}
args: {lang: en}
env: {API_TOKEN: t0ken}
webhooks:
  - {match: POST https://api.example.com/orders, status: 201, json: {id: 7}}
steps:
  - {wait_for: order, timeout_s: 5}
  - say: large
  - barge_in: medium
  - press: "1#"
  - silence: 500
  - expect_prompt: Thanks
  - expect_step: confirm
  - expect_barge_in: ask_size
  - expect_var: {size: large}
  - expect_end: transfer
  - hangup:
""",
    )
    kinds = [type(s) for s in script.steps]
    assert kinds == [
        sc.WaitFor,
        sc.Say,
        sc.BargeIn,
        sc.Press,
        sc.Silence,
        sc.ExpectPrompt,
        sc.ExpectStep,
        sc.ExpectBargeIn,
        sc.ExpectVar,
        sc.ExpectEnd,
        sc.HangupStep,
    ]
    assert script.steps[0] == sc.WaitFor(wait_for="order", timeout_s=5)
    assert script.env == {"API_TOKEN": "t0ken"}
    assert script.webhooks[0].json_body == {"id": 7}


def test_unknown_step_key_lists_the_known_ones(tmp_path: Path) -> None:
    message = error(tmp_path, "steps:\n  - say: hello\n  - sya: hi\n")
    assert "step 2" in message
    assert "sya" in message
    assert "expected one of barge_in, expect_barge_in, expect_end" in message


def test_two_step_keys_in_one_step(tmp_path: Path) -> None:
    message = error(tmp_path, "steps:\n  - {say: hi, press: '1'}\n")
    assert "step 1: expected one of" in message


def test_an_unknown_option_of_a_known_step_is_named(tmp_path: Path) -> None:
    message = error(tmp_path, "steps:\n  - {say: hi, timeout_s: 3}\n")
    assert "step 1 (say): timeout_s: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("written", "keys"),
    [
        ('"1#"', "1#"),
        ("12", "12"),  # a YAML number: the keys it was written as
        ("0123", "0123"),  # YAML 1.1 would read the octal number 83
        ("1#", "1#"),  # no space before '#': not a comment, YAML reads the text 1#
        ("1 # then pound", "1"),  # ' #' starts a comment: the pound key is silently gone
        ('"*0"', "*0"),
        ("ABCD", "ABCD"),
    ],
)
def test_press_reads_keys_as_written(tmp_path: Path, written: str, keys: str) -> None:
    (step,) = load(tmp_path, f"steps:\n  - press: {written}\n").steps
    assert step == sc.Press(press=keys)


def test_press_of_a_bare_pound_key_says_to_quote_it(tmp_path: Path) -> None:
    message = error(tmp_path, "steps:\n  - wait_for: PIN\n  - press: #\n")
    assert "step 2 (press)" in message
    assert 'write the keys in quotes, e.g. press: "1#"' in message


@pytest.mark.parametrize("written", ['"12x"', '"1 2"', '""', "1.5"])
def test_press_rejects_what_is_not_keys(tmp_path: Path, written: str) -> None:
    message = error(tmp_path, f"steps:\n  - press: {written}\n")
    assert "step 1 (press)" in message


def test_press_true_is_a_yaml_boolean(tmp_path: Path) -> None:
    assert "YAML read True" in error(tmp_path, "steps:\n  - press: yes\n")


@pytest.mark.parametrize("kind", ["say", "barge_in", "wait_for", "expect_prompt"])
def test_yes_and_no_must_be_quoted(tmp_path: Path, kind: str) -> None:
    message = error(tmp_path, f"steps:\n  - {kind}: no\n")
    assert f"step 1 ({kind})" in message
    assert 'quote the text, e.g. say: "yes" (YAML read False)' in message
    (step,) = load(tmp_path, f'steps:\n  - {kind}: "no"\n').steps
    assert getattr(step, kind) == "no"


def test_a_number_said_is_text(tmp_path: Path) -> None:
    assert load(tmp_path, "steps:\n  - say: 42\n").steps == [sc.Say(say="42")]


@pytest.mark.parametrize(
    ("step", "wanted"),
    [
        ("silence: -5", "silence: Input should be greater than or equal to 0"),
        ("silence: soon", "silence: Input should be a valid integer"),
        ("expect_end: done", "expect_end: Input should be 'hangup', 'transfer', 'caller_hangup' or 'error'"),
        ("expect_var: size", "expect_var: Input should be a valid dictionary"),
    ],
)
def test_bad_step_values(tmp_path: Path, step: str, wanted: str) -> None:
    assert wanted in error(tmp_path, f"steps:\n  - {step}\n")


def test_bad_top_level(tmp_path: Path) -> None:
    assert "a caller script is a mapping with 'steps'" in error(tmp_path, "- say: hi\n")
    assert "'steps' must be a list" in error(tmp_path, "steps: {say: hi}\n")
    assert "stpes" in error(tmp_path, "stpes:\n  - say: hi\n")
    assert "webhooks.0.match" in error(tmp_path, "webhooks: [{match: https://x.example.com}]\n")


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    message = error(tmp_path, "steps:\n  - say: [unclosed\n")
    assert "line" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(sc.ScriptError, match=r"nothere\.yaml"):
        sc.load_script(tmp_path / "nothere.yaml")
