"""Flow tests in Python: the same scripted calls as ``ivr test``, from pytest.

The ``ivr_call`` fixture (installed as a pytest plugin with this package) runs one simulated call::

    async def test_order_a_large_pizza(ivr_call):
        result = await ivr_call(
            "flows/pizza.yaml",
            steps=[{"wait_for": "order"}, {"say": "I'd like to order"}, {"expect_step": "ask_size"}],
        )
        assert result.passed, "\\n".join(result.transcript)

Text mode by default (instant simulation speech); pass ``mode="offline"`` for real speech.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ivr.simulation.runner import SimulationResult, SpeechMode, simulate
from ivr.simulation.script import CallerScript, load_script

CallFlow = Callable[..., Awaitable[SimulationResult]]


async def call_flow(
    flow: str | Path,
    script: str | Path | CallerScript | Mapping[str, Any] | None = None,
    *,
    steps: Sequence[Mapping[str, Any]] | None = None,
    mode: SpeechMode = "text",
    step_timeout: float = 30.0,
) -> SimulationResult:
    """One simulated call of ``flow`` with a caller script (a file, a mapping, or just ``steps``)."""
    if isinstance(script, CallerScript):
        parsed = script
    elif isinstance(script, str | Path):
        parsed = load_script(Path(script))
    else:
        data = dict(script or {})
        if steps is not None:
            data["steps"] = list(steps)
        parsed = CallerScript.model_validate(data)
    return await simulate(Path(flow), parsed, mode=mode, out=None, step_timeout=step_timeout)
