from __future__ import annotations

import json
import logging

import pytest

from ivr.logs import JsonFormatter, setup_logging


def test_json_lines_carry_the_call_id() -> None:
    record = logging.LogRecord(
        "ivr.call", logging.WARNING, __file__, 1, "call %s: %s", ("17.4", "no input"), None
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["call_id"] == "17.4"
    assert entry["message"] == "call 17.4: no input"
    assert entry["level"] == "warning"
    assert entry["time"].endswith("Z")


def test_setup_replaces_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        setup_logging("INFO", json_lines=True)
        logging.getLogger("ivr.test").info("call abc: hello")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["call_id"] == "abc"
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
