"""Caller scripts: what a simulated caller does and what the call is expected to show.

A script is YAML::

    flow: pizza                 # optional; the flow file given on the command line wins
    caller: {name: Alice, number: "5551234"}
    args: {lang: en}            # extra Stasis key=value arguments (flow variables)
    webhooks:                   # what the flow's web services answer (others fail: on_error)
      - match: POST https://pizza.example.com/api/orders
        status: 201
        json: {order_id: A17, eta_minutes: 30}
    env: {API_TOKEN: test}      # env.NAME values the flow's webhooks see, over the process environment
    now: 2026-12-07T09:00:00-05:00  # when the call happens (now, call.started, business hours)
    format: slin16              # optional: slin16 (wideband caller) or slin (G.711 caller)
    media: websocket            # optional: the call's media transport, audiosocket (default) or websocket
    steps:
      - wait_for: order         # a prompt containing this text has started
      - say: I'd like to order  # speak once the IVR listens
      - press: "1"              # keys once the IVR listens (quote them: " #" starts a YAML comment)
      - barge_in: large         # speak while the next prompt plays
      - silence: 6000           # stay silent this many milliseconds
      - hangup:                 # hang up now
      - expect_prompt: Thanks   # expectations are checked when the call has ended
      - expect_step: confirm
      - expect_barge_in: ask_size # the caller interrupted this step's prompt
      - expect_var: {size: large}
      - expect_end: hangup      # hangup | transfer | caller_hangup | error

The JSON Schema of scripts is ``flows/callers/schema.json`` (``ivr schema --caller``); ``ivr validate``
checks ``*.caller.yaml`` files with line numbers (:mod:`ivr.simulation.script_check`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

DTMF_KEYS = frozenset("0123456789*#ABCD")


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text(value: Any) -> Any:
    """Text a YAML scalar may have turned into something else: ``say: yes`` is the boolean true."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f'quote the text, e.g. say: "yes" (YAML read {value!r})')
    if isinstance(value, int | float):
        return str(value)
    return value


class WaitFor(_Step):
    wait_for: str
    timeout_s: float = 30.0
    _check = field_validator("wait_for", mode="before")(_text)


class Say(_Step):
    say: str
    _check = field_validator("say", mode="before")(_text)


class BargeIn(_Step):
    barge_in: str
    _check = field_validator("barge_in", mode="before")(_text)


class Press(_Step):
    press: str

    @field_validator("press", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> str:
        if isinstance(value, bool) or value is None:
            raise ValueError(f'write the keys in quotes, e.g. press: "1#" (YAML read {value!r})')
        text = str(value)
        if not text or set(text) - DTMF_KEYS:
            raise ValueError(f"keys must be 0-9 * # A-D, got {text!r}")
        return text


class Silence(_Step):
    silence: int = Field(ge=0, le=600_000, description="milliseconds")


class HangupStep(_Step):
    hangup: None = None


class ExpectPrompt(_Step):
    expect_prompt: str
    _check = field_validator("expect_prompt", mode="before")(_text)


class ExpectStep(_Step):
    expect_step: str


class ExpectBargeIn(_Step):
    expect_barge_in: str


class ExpectVar(_Step):
    expect_var: dict[str, Any]


class ExpectEnd(_Step):
    expect_end: Literal["hangup", "transfer", "caller_hangup", "error"]


ScriptStep = Annotated[
    WaitFor
    | Say
    | BargeIn
    | Press
    | Silence
    | HangupStep
    | ExpectPrompt
    | ExpectStep
    | ExpectBargeIn
    | ExpectVar
    | ExpectEnd,
    Field(union_mode="left_to_right"),
]
ACTIONS = (WaitFor, Say, BargeIn, Press, Silence, HangupStep)


class WebhookMock(BaseModel):
    """The answer a flow's webhook gets in simulation (the web service is outside the simulated world)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    match: str = Field(description="'METHOD URL-prefix', e.g. 'POST https://pizza.example.com/api/orders'")
    status: int = Field(200, ge=100, le=599)
    json_body: Any = Field(None, alias="json")
    fail: str | None = Field(
        None, description="instead of answering, fail like a network error with this reason"
    )

    @field_validator("match")
    @classmethod
    def _method_and_url(cls, value: str) -> str:
        method, _, url = value.partition(" ")
        if not url or method.upper() != method or not url.startswith(("http://", "https://")):
            raise ValueError("expected 'METHOD URL-prefix', e.g. 'GET https://api.example.com/'")
        return value


class CallerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "Alice"
    number: str = "5551234"


class CallerScript(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flow: str | None = Field(None, description="Flow name (stem); the flow file given to ivr test wins.")
    caller: CallerInfo = CallerInfo()
    args: dict[str, str] = Field(
        default_factory=dict, description="Extra Stasis key=value arguments (flow variables, call.args)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="env.NAME values the flow's webhooks see (url, headers), over the process environment.",
    )
    format: Literal["slin16", "slin"] | None = Field(
        None, description="slin16 (wideband caller, default) or slin (G.711 caller)."
    )
    media: Literal["audiosocket", "websocket"] | None = Field(
        None,
        description="The call's media transport: audiosocket (default; the app paces) or websocket "
        "(chan_websocket: Asterisk paces from its queue, marks say when a prompt was heard).",
    )
    now: datetime | None = Field(
        None,
        description="When the call happens (ISO 8601 with a zone, e.g. 2026-12-07T09:00:00-05:00): the "
        "flow's now and call.started start here and run with the call; default: the real clock.",
    )
    webhooks: list[WebhookMock] = Field(default_factory=list)
    """Answers for the flow's webhook steps; a request no mock matches fails (the flow's on_error path)."""
    steps: list[ScriptStep] = Field(default_factory=list)


class ScriptError(ValueError):
    """A caller script that cannot run; the message names the file and the step."""


STEP_MODELS: dict[str, type[_Step]] = {
    "wait_for": WaitFor,
    "say": Say,
    "barge_in": BargeIn,
    "press": Press,
    "silence": Silence,
    "hangup": HangupStep,
    "expect_prompt": ExpectPrompt,
    "expect_step": ExpectStep,
    "expect_barge_in": ExpectBargeIn,
    "expect_var": ExpectVar,
    "expect_end": ExpectEnd,
}
_STEP_MODELS = STEP_MODELS
_STEP_KEYS = set(STEP_MODELS)


class _ScriptLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``press: 0123`` as the octal number 83; here numbers written with a leading zero
    stay the text that was written (keys, account numbers, zip codes)."""


def _int_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node))
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return text
    return loader.construct_yaml_int(node)


_ScriptLoader.add_constructor("tag:yaml.org,2002:int", _int_or_text)


def load_script(path: Path) -> CallerScript:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ScriptLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ScriptError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ScriptError(f"{path}: a caller script is a mapping with 'steps'")
    steps = data.get("steps") or []
    if not isinstance(steps, list):
        raise ScriptError(f"{path}: 'steps' must be a list")
    for i, step in enumerate(steps, 1):
        keys = set(step) if isinstance(step, dict) else set()
        known = keys & _STEP_KEYS
        if len(known) != 1:
            raise ScriptError(
                f"{path}: step {i}: expected one of {', '.join(sorted(_STEP_KEYS))}, got {step!r}"
            )
        # validated on its own, against the model its key names: errors from a union would name the
        # first alternative (``WaitFor: Field required``) whatever the step was
        (key,) = known
        try:
            _STEP_MODELS[key].model_validate(step)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or key
            raise ScriptError(f"{path}: step {i} ({key}): {where}: {err['msg']}") from None
    try:
        return TypeAdapter(CallerScript).validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][:3])
        raise ScriptError(f"{path}: {where}: {err['msg']}") from None
