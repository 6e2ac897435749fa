"""Real services for tests (a real Asterisk, PostgreSQL, HAProxy, ...): skip on a user's machine that lacks
one, with one line saying how to enable it; fail in CI, where nothing may skip for that reason.

``.ci/run`` sets ``IVR_REQUIRE_SERVICES=1`` and also checks pytest's summary for skips whose reason
starts with :data:`SKIP_PREFIX`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

SKIP_PREFIX = "needs a real "
"""Every skip for a missing service starts with this, so CI can tell those skips apart."""


def required() -> bool:
    return os.environ.get("IVR_REQUIRE_SERVICES", "") not in ("", "0")


def unavailable(service: str, how_to_enable: str) -> NoReturn:
    """Skip the test (fail it in CI) because ``service`` is missing; ``how_to_enable`` is one short line."""
    message = f"{SKIP_PREFIX}{service}: {how_to_enable}"
    if required():
        pytest.fail(f"{message} (IVR_REQUIRE_SERVICES is set: CI must run this test)", pytrace=False)
    pytest.skip(message)


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_scratch_root: Path | None = None


def scratch_dir(prefix: str) -> Path:
    """A fresh directory for one test's files (records, configs), removed when the test process exits:
    helpers that are not fixtures cannot use ``tmp_path``, and ``mkdtemp`` alone left hundreds behind."""
    global _scratch_root
    if _scratch_root is None:
        _scratch_root = Path(tempfile.mkdtemp(prefix="ivr-tests-"))
        atexit.register(shutil.rmtree, _scratch_root, True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_root))
