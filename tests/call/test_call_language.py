"""The dialplan picks a multilingual flow's language: a ``language=`` Stasis argument, or the
``IVR_LANGUAGE`` channel variable; the call record carries the flow's version."""

from __future__ import annotations

import pytest

from .conftest import FLOWS, close_stack, make_stack


@pytest.mark.parametrize(
    ("args", "variables"),
    [(["flow=clinic", "language=fr-FR"], None), (["flow=clinic"], {"IVR_LANGUAGE": "fr-FR"})],
    ids=["stasis-arg", "channel-variable"],
)
async def test_the_dialplan_chooses_french(args: list[str], variables: dict[str, str] | None) -> None:
    stack = await make_stack(FLOWS, "clinic")
    try:
        caller = await stack.sim.place_call(args=args, variables=variables)
        leg = await stack.leg(caller.id)
        await leg.wait_heard("Bienvenue à la clinique Riverside")
        await stack.sim.hangup(caller.id)
        await stack.wait_ended()
        [report] = stack.app.reports
        assert report.flow_version == stack.app.flows.version("clinic")
        assert len(report.flow_version) == 16
        stack.assert_clean()
    finally:
        await close_stack(stack)
