"""Log output for ``ivr run``: one line per event, plain text or JSON (``--log-json``).

Log messages already carry the call id where there is one ("call <id>: ..."); JSON lines add it as a
field so log pipelines can group a call's lines without parsing text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_CALL_ID = re.compile(r"\bcall ([\w.:-]+)")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if (found := _CALL_ID.search(message)) is not None:
            entry["call_id"] = found.group(1).rstrip(":")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level))
