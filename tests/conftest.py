"""Fixtures shared by every test folder: real services (see ``tests/services.py``)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from ivr.simulation.virtual_time import VirtualTimeLoop
from tests.real_asterisk import HOW_TO_ENABLE, AsteriskStartError, RealAsterisk, kit_dir
from tests.real_haproxy import HOW_TO_ENABLE as HAPROXY_HOW_TO_ENABLE
from tests.real_haproxy import Backend, HAProxyStartError, RealHAProxy, haproxy_bin
from tests.real_postgres import HOW_TO_ENABLE as PG_HOW_TO_ENABLE
from tests.real_postgres import PostgresStartError, RealPostgres, bin_dir
from tests.services import free_tcp_port, unavailable

AsteriskFactory = Callable[..., RealAsterisk]
PostgresFactory = Callable[[], RealPostgres]
HAProxyFactory = Callable[[list[Backend]], RealHAProxy]


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


@pytest.fixture(scope="session")
def postgres_factory() -> Iterator[PostgresFactory]:
    """Start real PostgreSQL servers (own data directory, free port); all are removed at the end."""
    started: list[RealPostgres] = []

    def start() -> RealPostgres:
        pg_bin = bin_dir()
        if pg_bin is None:
            unavailable("PostgreSQL", PG_HOW_TO_ENABLE)
        if importlib.util.find_spec("psycopg") is None:
            unavailable("PostgreSQL", "pip install -e '.[postgres]' (the psycopg driver)")
        server = RealPostgres(bin=pg_bin, port=free_tcp_port())
        started.append(server)
        try:
            server.init().start()
        except PostgresStartError as exc:
            pytest.fail(f"the real PostgreSQL did not start: {exc}", pytrace=False)
        return server

    yield start
    for server in started:
        server.remove()


@pytest.fixture(scope="session")
def real_postgres(postgres_factory: PostgresFactory) -> RealPostgres:
    """One real PostgreSQL shared by the session; tests create their own databases (``create_database``)."""
    return postgres_factory()


@pytest.fixture(scope="session")
def haproxy_factory() -> Iterator[HAProxyFactory]:
    """Start real HAProxies running the shipped deploy/haproxy/haproxy.cfg in front of ``backends``
    (a free 127.0.0.1 port each); all are stopped at the end of the session."""
    started: list[RealHAProxy] = []

    def start(backends: list[Backend]) -> RealHAProxy:
        binary = haproxy_bin()
        if binary is None:
            unavailable("HAProxy", HAPROXY_HOW_TO_ENABLE)
        proxy = RealHAProxy(binary=binary, port=free_tcp_port(), backends=backends)
        started.append(proxy)
        try:
            proxy.start()
        except HAProxyStartError as exc:
            pytest.fail(f"the real HAProxy did not start: {exc}", pytrace=False)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


FAILED_PHASES = pytest.StashKey[set[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember which phases of a test failed (:func:`failed`), for fixtures that keep the logs of
    services on failure."""
    report = yield
    if report.failed:
        item.stash.setdefault(FAILED_PHASES, set()).add(report.when)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    """Whether the test using the fixture that asks failed (its setup or its call), at its teardown."""
    return bool(request.node.stash.get(FAILED_PHASES, set()))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "virtual_time: run this async test on ivr.simulation.virtual_time.VirtualTimeLoop (waits are "
        "skipped); only for tests whose every peer runs in this process (no subprocess, no real Asterisk)",
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], object]]:
    """Tests marked ``virtual_time`` run on the virtual clock; everything else on a normal loop."""
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual_time": VirtualTimeLoop}
    return {"loop": asyncio.new_event_loop}
