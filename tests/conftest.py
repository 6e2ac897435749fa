"""Fixtures shared by every test folder: real services (see ``tests/services.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.real_asterisk import HOW_TO_ENABLE, AsteriskStartError, RealAsterisk, kit_dir
from tests.services import free_tcp_port, unavailable

AsteriskFactory = Callable[..., RealAsterisk]


@pytest.fixture(scope="session")
def asterisk_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskFactory]:
    """Start real Asterisk instances (own prefix, free port); all are stopped at the end of the session."""
    kit = kit_dir()
    started: list[RealAsterisk] = []

    def start(name: str | None = None) -> RealAsterisk:
        if kit is None:
            unavailable("Asterisk 22", HOW_TO_ENABLE)
        prefix = Path(tmp_path_factory.mktemp("ast")) / "asterisk"
        try:
            RealAsterisk.install(kit, prefix)
            instance = RealAsterisk(kit=kit, prefix=prefix, port=free_tcp_port(), name=name).start()
        except AsteriskStartError as exc:
            pytest.fail(f"the real Asterisk did not start: {exc}", pytrace=False)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def real_asterisk(asterisk_factory: AsteriskFactory) -> RealAsterisk:
    """One real Asterisk shared by the session; tests use their own Stasis app names and clean up."""
    return asterisk_factory()
