"""The shipped caller scripts (``flows/callers/*.caller.yaml``), run once per session and all at once.

Each script is a whole call of seconds to half a minute of call time (the no-input cases wait for their
timeouts); they run concurrently in one virtual-time event loop (as ``ivr test`` runs them), each with its
own simulated Asterisk, app and sockets, and every test looks up its own result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.simulation.runner import SimulationResult, simulate
from ivr.simulation.script import load_script
from ivr.simulation.virtual_time import VirtualTimeLoop

ROOT = Path(__file__).parents[2]
FLOWS = ROOT / "flows"
DATA = Path(__file__).parent / "data"
# Not flows/*.caller.yaml: the flow catalog (ivr run) and ivr validate take every flows/*.yaml for a flow.
CALLERS = FLOWS / "callers"
SHIPPED = sorted(CALLERS.glob("*.caller.yaml"))


def flow_for(script: Path) -> Path:
    """``flows/callers/pizza.happy.caller.yaml`` plays against ``flows/pizza.yaml``."""
    return FLOWS / f"{script.name.split('.')[0]}.yaml"


async def run_script(script: Path) -> SimulationResult:
    return await simulate(flow_for(script), load_script(script), mode="text", out=None)


@pytest.fixture(scope="session")
def shipped_results(request: pytest.FixtureRequest) -> dict[str, SimulationResult | BaseException]:
    """Results of the shipped scripts the session selected (by file name), run concurrently."""
    selected: set[Path] = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        script = callspec.params.get("script") if callspec is not None else None
        if "shipped_results" in getattr(item, "fixturenames", ()) and isinstance(script, Path):
            selected.add(script)
    wanted = sorted(selected)

    async def run_all() -> list[SimulationResult | BaseException]:
        return await asyncio.gather(*(run_script(p) for p in wanted), return_exceptions=True)

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        results = runner.run(run_all())
    return {p.name: r for p, r in zip(wanted, results, strict=True)}
