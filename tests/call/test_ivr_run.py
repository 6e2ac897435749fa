"""``ivr run`` end to end against the simulated Asterisk, and its one-line startup failures."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from ivr.cli import main
from ivr.config import load_settings
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs
from ivr.workers.process import StartupError, serve
from tests.services import scratch_dir

from .conftest import DATA


def settings_for(sim: SimAsterisk, **extra: Any) -> Any:
    env = {
        "IVR_ARI_URL": sim.base_url,
        "IVR_ARI_USER": "ivr",
        "IVR_ARI_PASSWORD": "pw",
        "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
        "IVR_FLOWS": str(DATA),
        "IVR_DEFAULT_FLOW": "menu",
        "IVR_STT": "sim-text",
        "IVR_TTS": "sim-text",
        "IVR_PROMPT_CACHE": "",
        "IVR_RECORDS_PATH": str(scratch_dir("ivr-records-") / "calls.sqlite3"),
        "IVR_METRICS_LISTEN": "127.0.0.1:0",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return load_settings(environ=env, toml_path=None)


async def test_serve_answers_a_call_and_stops_cleanly() -> None:
    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(settings_for(sim), stop=stop, ready=lambda info: ready.set()))
        await asyncio.wait_for(ready.wait(), 10)
        caller = await sim.place_call()  # no flow= argument: the default flow answers
        await sim.wait_for(lambda: bool(legs.legs), 5)
        [leg] = legs.legs.values()
        await leg.wait_heard("Say sales")
        await sim.press_dtmf(caller.id, "1")
        await leg.wait_heard("Sales it is")
        await sim.wait_for(lambda: caller.id in sim.destroyed, 10)
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        assert not sim.bridges
        assert not sim.connected_apps
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "Ctrl-C works again after serve()"


async def test_second_instance_with_the_same_app_name_stops_instead_of_flapping() -> None:
    async with SimAsterisk(username="ivr", password="pw") as sim:
        first_ready = asyncio.Event()
        first = asyncio.create_task(serve(settings_for(sim), ready=lambda info: first_ready.set()))
        await asyncio.wait_for(first_ready.wait(), 10)
        second_ready = asyncio.Event()
        stop_second = asyncio.Event()
        second = asyncio.create_task(
            serve(settings_for(sim), stop=stop_second, ready=lambda info: second_ready.set())
        )
        await asyncio.wait_for(second_ready.wait(), 10)
        assert await asyncio.wait_for(first, 10) == 1, "the replaced instance says so and exits"
        await asyncio.sleep(0.3)
        assert not second.done(), "the newest instance keeps the app"
        stop_second.set()
        assert await asyncio.wait_for(second, 10) == 0


async def test_wrong_ari_password_is_one_clear_line() -> None:
    async with SimAsterisk(username="ivr", password="right") as sim:
        with pytest.raises(StartupError, match="refused user 'ivr': check IVR_ARI_USER and IVR_ARI_PASSWORD"):
            await serve(settings_for(sim))


async def test_unreachable_asterisk() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SimAsterisk(username="ivr", password="pw") as sim:
        settings = settings_for(sim, IVR_ARI_URL=f"http://127.0.0.1:{port}")
    with pytest.raises(StartupError, match="cannot reach ARI"):
        await serve(settings)


async def test_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with SimAsterisk(username="ivr", password="pw") as sim:
            with pytest.raises(StartupError, match=f"cannot listen for AudioSocket on 127.0.0.1:{port}"):
                await serve(settings_for(sim, IVR_AUDIOSOCKET_LISTEN=f"127.0.0.1:{port}"))


def test_flow_errors_stop_startup_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yaml").write_text(
        "name: broken\nstart: nowhere\nsteps:\n  a:\n    say: hi\n    next: a\n"
    )
    code = main(["run", "--flows", str(tmp_path), "--default-flow", "broken"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ivr run: flow error: ")
    assert "broken.yaml:2:" in err
    assert "Traceback" not in err


def test_bad_setting_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_ARI_URL", "not-a-url")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "ivr run: setting ari_url (IVR_ARI_URL): expected an http(s) URL such as http://127.0.0.1:8088"
    )


@pytest.mark.parametrize(
    ("outcome", "expected"), [("answer", "hangup"), ("busy", "busy"), ("noanswer", "no_answer")]
)
async def test_originate_goes_through_the_running_app(
    outcome: str, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from ivr.ari.client import AriClient
    from ivr.cli.originate_commands import _originate

    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        sim.script_originate(outcome, endpoint="Local/*")
        reports: list[Any] = []
        stop = asyncio.Event()
        ready = asyncio.Event()
        settings = settings_for(sim, IVR_DEFAULT_FLOW="")
        task = asyncio.create_task(
            serve(settings, stop=stop, ready=lambda info: ready.set(), on_report=reports.append)
        )
        await asyncio.wait_for(ready.wait(), 10)
        apps_before = set(sim.connected_apps)
        args = argparse.Namespace(
            endpoint="Local/5551234@outbound", flow="menu", caller_id="Clinic <5550000>", timeout=5, wait=True
        )
        code = await _originate(AriClient(sim.base_url, "ivr", "pw"), "ivr", args, ["patient=Bob"])
        assert sim.connected_apps == apps_before, "originate opened no events socket of its own"
        if outcome == "answer":
            assert code == 0
            await sim.wait_for(lambda: bool(legs.legs), 5)
            [leg] = legs.legs.values()
            await leg.wait_heard("Say sales")
            [chan] = [c for c in sim.channels.values() if c.kind == "outbound"]
            await sim.hangup(chan.id)
        else:
            assert code == 1
        async with asyncio.timeout(10):
            while not reports:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        stop.set()
        await task
        assert reports[0].outcome in (expected, "caller_hangup")
        if outcome != "answer":
            assert reports[0].outcome == expected
            assert "cause" in reports[0].reason


async def test_sigterm_drains_then_says_goodbye_and_hangs_up() -> None:
    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        stop = asyncio.Event()
        ready = asyncio.Event()
        reports: list[Any] = []
        settings = settings_for(
            sim,
            IVR_DEFAULT_FLOW="patient",
            IVR_SHUTDOWN_GRACE_SECONDS="0.5",
            IVR_SHUTDOWN_GOODBYE="We are closing now.",
        )
        task = asyncio.create_task(
            serve(settings, stop=stop, ready=lambda info: ready.set(), on_report=reports.append)
        )
        await asyncio.wait_for(ready.wait(), 10)
        caller = await sim.place_call()
        await sim.wait_for(lambda: bool(legs.legs), 5)
        [leg] = legs.legs.values()
        await leg.wait_heard("Say sales")
        stop.set()  # what SIGTERM does
        late = await sim.place_call()  # arrives while draining: refused with congestion, not silence
        await sim.wait_for(lambda: late.id in sim.destroyed, 5)
        assert sim.destroyed[late.id].hangup_cause == 34
        await leg.wait_heard("We are closing now", timeout=5)
        assert await asyncio.wait_for(task, 15) == 0
        assert caller.id in sim.destroyed
        assert {r.outcome for r in reports} == {"aborted", "busy"}
        assert not sim.bridges
        assert not [c for c in sim.channels.values() if c.kind == "media"]


async def test_finished_calls_are_recorded_and_counted() -> None:
    import aiohttp

    from ivr.ops.records import CallRecordStore

    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        settings = settings_for(sim)
        stop = asyncio.Event()
        info: dict[str, Any] = {}
        reports: list[Any] = []
        task = asyncio.create_task(serve(settings, stop=stop, ready=info.update, on_report=reports.append))
        async with asyncio.timeout(10):
            while not info:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{info['metrics']}/readyz") as resp:
                assert resp.status == 200
            caller = await sim.place_call()
            await sim.wait_for(lambda: bool(legs.legs), 5)
            [leg] = legs.legs.values()
            await leg.wait_heard("Say sales")
            await sim.press_dtmf(caller.id, "2")
            async with asyncio.timeout(10):
                while not reports:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            async with http.get(f"{info['metrics']}/metrics") as resp:
                text = await resp.text()
            assert 'ivr_calls_total{outcome="hangup"} 1.0' in text
        stop.set()
        assert await task == 0
    async with CallRecordStore(settings.records_path) as store:
        [record] = await store.list()
        assert record.call_id == caller.id
        assert record.outcome == "hangup"
        assert record.caller == "Alice <5551234>"
        assert "support" in record.path


async def test_dialplan_only_mode_refuses_a_flow_with_transfers_like_validate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Defect 7: ``ivr run --no-ari`` fails at startup where ``ivr validate --mode dialplan`` fails."""
    flows = tmp_path / "flows"
    flows.mkdir()
    flow = flows / "desk.yaml"
    flow.write_text(
        "name: desk\nstart: ask\nsteps:\n  ask:\n    say: One moment.\n    next: to_desk\n"
        "  to_desk:\n    transfer:\n      context: support\n      extension: '100'\n"
    )
    assert main(["validate", "--mode", "dialplan", str(flow)]) == 1
    issue = next(line for line in capsys.readouterr().err.splitlines() if "dialplan-only mode" in line)
    settings = load_settings(
        environ={
            "IVR_FLOWS": str(flows),
            "IVR_DEFAULT_FLOW": "desk",
            "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
            "IVR_METRICS_LISTEN": "",
            "IVR_RECORDS_PATH": str(tmp_path / "calls.sqlite3"),
            "IVR_PROMPT_CACHE": "",
            "IVR_STT": "sim-text",
            "IVR_TTS": "sim-text",
        },
        toml_path=None,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(5, stop.set)  # before the fix it served: end it
    with pytest.raises(StartupError) as failed:
        await serve(settings, no_ari=True, stop=stop)
    assert str(failed.value).startswith("flow error: ")
    assert issue in str(failed.value), "the same file:line and message as ivr validate --mode dialplan"
    # ARI mode serves the same flow: transfers work there.
