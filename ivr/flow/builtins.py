"""Built-in variables every flow can read, known to the validator and documented in the reference."""

from __future__ import annotations

from typing import Any

CALL_FIELDS: dict[str, str] = {
    "id": "the call's unique id (also in logs)",
    "caller_id": "the caller's number (CALLERID(num)); for outbound calls, the number dialled",
    "caller_name": "the caller's name (CALLERID(name)), often empty",
    "dialed": "the dialled extension that reached the IVR",
    "direction": "'inbound' or 'outbound'",
    "args": "mapping of the Stasis arguments (Stasis(ivr,flow=pizza,lang=en) -> call.args.lang)",
    "flow": "name of the top-level flow",
    "language": "the call's current language (settings.language, the dialplan's, or a language step's)",
    "started": "the moment the call started (like now: date, time, hour, weekday ...)",
}
LAST_FIELDS: dict[str, str] = {
    "text": "the last thing the caller said (masked for sensitive captures)",
    "confidence": "STT confidence of that utterance (0..1)",
    "dtmf": "the last DTMF keys entered for a question (masked for sensitive captures)",
    "choice": "name of the last chosen choice, enum value or global intent",
    "status": "HTTP status of the last webhook (0 if it failed before a response)",
    "error": "why the last error path was taken (e.g. 'no_input', 'webhook failed: timeout')",
    "value": "the value the last answer was understood as, also when it broke a rule (masked if sensitive)",
    "invalid": "which rule the last answer broke (too_early, pattern, not_allowed ...), else ''",
}
BUILTIN_ROOTS: dict[str, str] = {
    "call": "facts about the call (see call.*)",
    "last": "results of the last question or webhook (see last.*)",
    "env": "environment variables; only in webhook url and headers (secrets)",
    "now": "the moment of the current event in the flow's time zone (date, time, hour, weekday ...)",
    "hours": "business-hours calendars of the flow: hours.NAME.open, closes_at, next_open, holiday",
}
RESERVED_NAMES = frozenset(BUILTIN_ROOTS)
MASK = "[redacted]"


def empty_last() -> dict[str, Any]:
    return {
        "text": "",
        "confidence": 0.0,
        "dtmf": "",
        "choice": "",
        "status": 0,
        "error": "",
        "value": None,
        "invalid": "",
    }
