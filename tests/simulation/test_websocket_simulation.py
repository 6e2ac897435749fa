"""Whole simulated calls over WebSocket media: the shipped caller scripts pass with the simulated
chan_websocket pacing the prompts (``media: websocket`` / ``ivr simulate --media websocket``)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import yaml

from ivr.cli import main
from ivr.simulation.runner import SimulationResult, simulate
from ivr.simulation.script import load_script
from ivr.simulation.virtual_time import VirtualTimeLoop

from .conftest import CALLERS, flow_for

SCRIPTS = sorted(p for p in CALLERS.glob("*.caller.yaml") if p.name.split(".")[0] in ("pizza", "bank"))


@pytest.fixture(scope="module")
def results() -> dict[str, SimulationResult | BaseException]:
    async def run_all() -> list[SimulationResult | BaseException]:
        return await asyncio.gather(
            *(
                simulate(flow_for(p), load_script(p), mode="text", out=None, media="websocket")
                for p in SCRIPTS
            ),
            return_exceptions=True,
        )

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        found = runner.run(run_all())
    return {p.name: r for p, r in zip(SCRIPTS, found, strict=True)}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name.removesuffix(".caller.yaml"))
def test_shipped_script_passes_over_websocket_media(
    script: Path, results: dict[str, SimulationResult | BaseException]
) -> None:
    result = results[script.name]
    if isinstance(result, BaseException):
        raise result
    report = "\n".join(
        [*result.errors, *(f"{c.what}: {c.detail}" for c in result.checks), *result.transcript]
    )
    assert "over websocket" in result.transcript[0], result.transcript[0]
    assert result.passed, f"{script.name} over WebSocket media failed:\n{report}"


def test_a_scripts_media_key_picks_the_transport(tmp_path: Path) -> None:
    source = CALLERS / "bank.happy.caller.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["media"] = "websocket"
    script = tmp_path / "bank.ws.caller.yaml"
    script.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["validate", str(script)]) == 0
    out = io.StringIO()
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        result = runner.run(simulate(flow_for(source), load_script(script), mode="text", out=out))
    assert result.passed, out.getvalue()
    assert "over websocket" in out.getvalue()
    assert "paced by the simulated Asterisk" in out.getvalue()


def test_a_wrong_media_key_is_a_validation_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "bank.bad.caller.yaml"
    script.write_text("media: carrier-pigeon\nsteps:\n  - hangup:\n", encoding="utf-8")
    assert main(["validate", str(script)]) == 1
    err = capsys.readouterr().err
    assert f"{script}:1:8:" in err, "file, line and column"
    assert "websocket" in err, "what was expected"
