"""Flow versions and hot reload: a valid edit replaces the flow for new calls, an invalid one is refused
in one log line and the old version keeps serving, calls in progress keep the version they started on."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from ivr.call.flows import FlowCatalog, install_reload
from ivr.flow.actions import Play
from ivr.flow.events import CallStarted, PromptFinished

FLOW = """\
name: hello
start: greet
steps:
  greet:
    say: {text}
    next: bye
  bye:
    hangup:
"""


def write(path: Path, text: str) -> None:
    path.write_text(FLOW.format(text=text), encoding="utf-8")


def greeting(catalog: FlowCatalog) -> str | None:
    actions = catalog.engine("hello").handle(CallStarted(call_id="c"))
    return next(a.text for a in actions if isinstance(a, Play))


def test_a_valid_edit_is_a_new_version_for_new_calls_only(tmp_path: Path) -> None:
    write(tmp_path / "hello.yaml", "Hello.")
    catalog = FlowCatalog(tmp_path)
    first = catalog.version("hello")
    live = catalog.engine("hello")
    assert live.version == first
    live.handle(CallStarted(call_id="live"))
    write(tmp_path / "hello.yaml", "Hello again.")
    assert catalog.changed_on_disk()
    result = catalog.reload()
    assert result.changed == ("hello",)
    assert catalog.version("hello") != first
    assert greeting(catalog) == "Hello again."
    # the call that began before the reload finishes on its own version
    assert live.version == first
    assert live.handle(PromptFinished())[-1].outcome == "hangup"  # type: ignore[union-attr]
    assert not catalog.changed_on_disk()
    assert catalog.reload().changed == ()


def test_an_invalid_edit_is_refused_in_one_line_and_the_old_version_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "hello.yaml", "Hello.")
    catalog = FlowCatalog(tmp_path)
    version = catalog.version("hello")
    (tmp_path / "hello.yaml").write_text(FLOW.format(text="Hello.").replace("next: bye", "next: byee"))
    with caplog.at_level(logging.ERROR, logger="ivr.call.flows"):
        result = catalog.reload()
    assert result.refused == ("hello",)
    [line] = [r.getMessage() for r in caplog.records]
    assert "flow hello: reload refused, kept the running version" in line
    assert "hello.yaml:6:11" in line
    assert "target step 'byee' does not exist" in line
    assert catalog.version("hello") == version
    assert greeting(catalog) == "Hello."


def test_new_and_removed_flows(tmp_path: Path) -> None:
    write(tmp_path / "hello.yaml", "Hello.")
    catalog = FlowCatalog(tmp_path, default="hello")
    (tmp_path / "other.yaml").write_text(FLOW.format(text="Other.").replace("name: hello", "name: other"))
    assert catalog.reload().added == ("other",)
    assert catalog.names == ["hello", "other"]
    (tmp_path / "other.yaml").unlink()
    assert catalog.reload().removed == ("other",)
    (tmp_path / "hello.yaml").unlink()  # the default flow: kept, said in the log
    assert catalog.reload().removed == ()
    assert catalog.names == ["hello"]


def test_an_included_calendar_is_part_of_the_version(tmp_path: Path) -> None:
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "days.yaml").write_text("- 2026-12-25\n")
    (tmp_path / "hello.yaml").write_text(
        FLOW.format(text="Hello.")
        + "hours:\n  office:\n    open: {mon-fri: '08:00-18:00'}\n    include: [cal/days.yaml]\n"
    )
    catalog = FlowCatalog(tmp_path)
    before = catalog.version("hello")
    (tmp_path / "cal" / "days.yaml").write_text("- 2026-12-25\n- 2026-12-26\n")
    assert catalog.changed_on_disk()
    assert catalog.reload().changed == ("hello",)
    assert catalog.version("hello") != before


async def test_sighup_and_file_changes_reload(tmp_path: Path) -> None:
    write(tmp_path / "hello.yaml", "Hello.")
    catalog = FlowCatalog(tmp_path)
    watcher = install_reload(catalog, watch=False)
    assert watcher is None
    try:
        write(tmp_path / "hello.yaml", "Hangup signal.")
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(10):
            while greeting(catalog) != "Hangup signal.":  # noqa: ASYNC110 - the handler runs on this loop
                await asyncio.sleep(0.01)
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    task = asyncio.ensure_future(catalog.watch(interval=0.01))
    try:
        write(tmp_path / "hello.yaml", "Changed on disk.")
        async with asyncio.timeout(10):
            while greeting(catalog) != "Changed on disk.":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_every_call_shares_the_catalogs_one_copy_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment is read once, not decoded into a new dict for every call's engine."""
    write(tmp_path / "hello.yaml", "Hello.")
    monkeypatch.setenv("IVR_TEST_SHARED_ENV", "one")
    catalog = FlowCatalog(tmp_path)
    first, second = catalog.engine("hello"), catalog.engine("hello")
    assert first._env is second._env is catalog.env
    assert catalog.env["IVR_TEST_SHARED_ENV"] == "one"
    with pytest.raises(TypeError):
        catalog.env["IVR_TEST_SHARED_ENV"] = "two"  # type: ignore[index]
