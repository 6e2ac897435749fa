"""pytest plugin (entry point ``ivr``): the ``ivr_call`` fixture, see :mod:`ivr.testing`."""

from __future__ import annotations

import pytest

from ivr.testing import CallFlow, call_flow


@pytest.fixture
def ivr_call() -> CallFlow:
    """``await ivr_call(flow, script=None, *, steps=None, mode="text")`` -> SimulationResult."""
    return call_flow
