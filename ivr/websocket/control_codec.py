"""chan_websocket's control text, both ways and in both forms (plain text and JSON), as a pure codec.

It exists to hold the parsing and encoding rules (as Asterisk 22.10.1 applies them) in one place, with
nothing but the table (``control_table``) and the typed messages (``control_messages``) under it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ivr.websocket.control_messages import _EVENT_TYPES, Command, Event, UnknownEvent
from ivr.websocket.control_table import (
    COMMANDS,
    DTMF_DIGITS,
    EVENTS,
    MAX_COMMAND_BYTES,
    MAX_EVENT_CHARS,
    ControlForm,
    Field,
    Verb,
)


class ProtocolError(ValueError):
    """A text message that is not what Asterisk sends: names the event and what was wrong."""


# -- commands ---------------------------------------------------------------------------------------


def encode_command(command: Command, form: ControlForm) -> str:
    """The text Asterisk 22.10.1 accepts for ``command`` in ``form``; ValueError if it would refuse it."""
    spec = COMMANDS[command.verb]
    arg = command.argument
    if form is ControlForm.JSON:
        body: dict[str, str] = {"command": command.verb}
        if arg is not None:
            body[spec.fields[0].name] = arg
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    else:
        if not spec.plain:
            raise ValueError(f"{command.verb} has no plain-text form (Asterisk answers it with ERROR)")
        if arg is not None and (arg != arg.strip() or not arg or not arg.isprintable()):
            raise ValueError(f"{command.verb}: {arg!r} would not survive Asterisk's whitespace stripping")
        text = command.verb if arg is None else f"{command.verb} {arg}"
    if len(text.encode()) > MAX_COMMAND_BYTES:
        raise ValueError(f"{command.verb}: {len(text.encode())} bytes; Asterisk ignores texts over 128")
    return text


def decode_command(text: str) -> Command:
    """Parse a command as chan_websocket does (for fakes and tests); ProtocolError if it would not act."""
    if len(text.encode()) > MAX_COMMAND_BYTES:
        raise ProtocolError(f"command of {len(text.encode())} bytes: Asterisk ignores texts over 128")
    stripped = text.strip()
    if stripped.startswith("{"):
        body = _json_object(stripped, "command")
        verb = body.get("command")
        if not isinstance(verb, str):
            raise ProtocolError("JSON command without a string 'command'")
        spec = _command_spec(verb)
        arg = None
        if spec.fields:
            raw = body.get(spec.fields[0].name)
            if raw is not None and not isinstance(raw, str):
                raise ProtocolError(f"{verb}: {spec.fields[0].name} must be a string")
            arg = raw
    else:
        verb, sep, rest = stripped.partition(" ")
        spec = _command_spec(verb)
        if not spec.plain:
            raise ProtocolError(f"{verb} is accepted in the JSON form only")
        arg = rest if sep and spec.fields else None
    try:
        return Command(verb, arg)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None


def _command_spec(verb: str) -> Verb:
    spec = COMMANDS.get(verb)
    if spec is None:
        raise ProtocolError(f"unknown command {verb[:40]!r}")
    return spec


# -- events -----------------------------------------------------------------------------------------


def decode_event(text: str) -> Event:
    """One text message from Asterisk, in either form; ProtocolError if it is malformed."""
    if not text:
        raise ProtocolError("empty text message")
    if len(text) > MAX_EVENT_CHARS:
        raise ProtocolError(f"text message of {len(text)} characters (more than {MAX_EVENT_CHARS})")
    if text.lstrip().startswith("{"):
        return _decode_json(text)
    return _decode_plain(text)


def _decode_plain(text: str) -> Event:
    name, sep, rest = text.partition(" ")
    spec = EVENTS.get(name)
    if spec is None:
        if not name or not all(c.isupper() or c.isdigit() or c == "_" for c in name):
            raise ProtocolError(f"not an event: {text[:60]!r}")
        return UnknownEvent(name, text)
    values: dict[str, object] = {}
    positional = next((f for f in spec.fields if f.shape == "rest"), None)
    if positional is not None:
        if sep:
            values[positional.name] = rest
        return _build(spec, values, ControlForm.PLAIN)
    fields = {f.name: f for f in spec.fields}
    tail = next((f for f in spec.fields if f.shape == "kv_rest"), None)
    if tail is not None:
        marker = f"{tail.name}:"
        head, found, value = rest.partition(marker)
        if not found or (head and not head.endswith(" ")):
            raise ProtocolError(f"{name}: no {tail.name}")
        values[tail.name] = value.rstrip()
        rest = head.rstrip()
    for token in rest.split(" ") if rest else ():
        key, colon, value = token.partition(":")
        if not colon or not key:
            raise ProtocolError(f"{name}: {token[:40]!r} is not key:value")
        if key in values:
            raise ProtocolError(f"{name}: {key} given twice")
        spec_field = fields.get(key)
        if spec_field is None:
            continue  # a field of a later Asterisk
        values[key] = _plain_value(name, spec_field, value)
    return _build(spec, values, ControlForm.PLAIN)


def _plain_value(event: str, spec: Field, value: str) -> object:
    if spec.kind == "int":
        if not value.isascii() or not value.isdigit():
            raise ProtocolError(f"{event}: {spec.name} {value[:20]!r} is not a whole number")
        return int(value)
    if spec.kind == "bool":
        if value not in ("true", "false"):
            raise ProtocolError(f"{event}: {spec.name} {value[:20]!r} is not true/false")
        return value == "true"
    return value


def _decode_json(text: str) -> Event:
    body = _json_object(text, "event")
    name = body.get("event")
    if not isinstance(name, str) or not name:
        raise ProtocolError("JSON event without a string 'event'")
    spec = EVENTS.get(name)
    if spec is None:
        return UnknownEvent(name, text)
    values: dict[str, object] = {}
    for f in spec.fields:
        if f.name not in body or (body[f.name] is None and not f.required):
            continue
        values[f.name] = _json_value(name, f, body[f.name])
    return _build(spec, values, ControlForm.JSON)


def _json_value(event: str, spec: Field, value: object) -> object:
    expected: type | tuple[type, ...]
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolError(f"{event}: {spec.name} must be a non-negative integer, got {value!r:.40}")
        return value
    if spec.kind == "bool":
        expected = bool
    elif spec.kind == "vars":
        if not isinstance(value, dict):
            raise ProtocolError(f"{event}: {spec.name} must be an object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    else:
        expected = str
    if not isinstance(value, expected):
        what = "boolean" if expected is bool else "string"
        raise ProtocolError(f"{event}: {spec.name} must be a {what}, got {value!r:.40}")
    return value


def _json_object(text: str, what: str) -> dict[str, object]:
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"{what}: invalid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"{what}: JSON {type(body).__name__}, expected an object")
    return body


def _build(spec: Verb, values: dict[str, object], form: ControlForm) -> Event:
    for f in spec.fields:
        if f.name in values:
            continue
        if f.required and not (f.json_only and form is ControlForm.PLAIN):
            raise ProtocolError(f"{spec.name}: {f.name} missing")
        values[f.name] = "" if f.shape == "rest" else {} if f.kind == "vars" else None
    if spec.name == "DTMF_END":
        digit = str(values["digit"]).upper()
        if len(digit) != 1 or digit not in DTMF_DIGITS:
            raise ProtocolError(f"DTMF_END: digit {values['digit']!r:.20} is not one of 0-9 * # A-D")
        values["digit"] = digit
    if spec.name == "ERROR":
        values["error_text"] = str(values["error_text"]).rstrip()
    if spec.name == "MEDIA_START":
        if not values["format"]:
            raise ProtocolError("MEDIA_START: empty format")
        ptime = values["ptime"]
        if not isinstance(ptime, int) or not 0 < ptime <= 1000:
            raise ProtocolError(f"MEDIA_START: ptime {ptime} out of range")
        values["form"] = form
    return _EVENT_TYPES[spec.name](**values)  # type: ignore[arg-type]


def encode_event(event: Event, form: ControlForm) -> str:
    """The text Asterisk 22.10.1 sends for ``event`` (for fakes and tests), field order included."""
    if isinstance(event, UnknownEvent):
        return event.text
    name = next(n for n, t in _EVENT_TYPES.items() if type(event) is t)
    spec = EVENTS[name]
    if form is ControlForm.JSON:
        body: dict[str, object] = {"event": name}
        # Asterisk packs channel_id right after the event name, except in MEDIA_START.
        order = (
            spec.fields
            if name == "MEDIA_START"
            else sorted(spec.fields, key=lambda f: f.name != "channel_id")
        )
        for f in order:
            value = getattr(event, f.name)
            if f.name == "channel_id" and value is None:
                value = ""
            if f.shape == "rest" and value is None:
                value = ""
            body[f.name] = value if not isinstance(value, Mapping) else dict(value)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    parts = [name]
    for f in spec.fields:
        if f.json_only:
            continue
        value = getattr(event, f.name)
        if value is None or (f.shape == "rest" and value == ""):
            continue
        if f.shape == "rest":
            parts.append(str(value))
        elif f.kind == "bool":
            parts.append(f"{f.name}:{'true' if value else 'false'}")
        else:
            parts.append(f"{f.name}:{value}")
    return " ".join(parts)
