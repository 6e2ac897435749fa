"""Which flow a new ARI call runs, and the ``CallStarted`` that begins it.

The flow is named by a ``flow=`` Stasis argument, else the caller's ``IVR_FLOW`` channel variable, else
the default flow; other ``key=value`` arguments become ``call.args`` and flow variables; a multilingual
flow reads the call's language from a ``language=`` argument or the ``IVR_LANGUAGE`` channel variable (a
request only such flows pay for).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ivr.ari.client import AriResources
from ivr.ari.errors import AriError
from ivr.ari.models import StasisStart
from ivr.call.flows import FlowCatalog
from ivr.call.media_attach import MEDIA_ARG
from ivr.call.runtime import stasis_args
from ivr.flow import events as ev
from ivr.flow.engine import FlowEngine

ORIGINATE_PREFIX = "ivr-out-"
"""Channel ids of calls placed by ``ivr originate``: their StasisStart is an answered outbound call."""


async def new_call(
    ari: AriResources,
    start: StasisStart,
    flows: FlowCatalog,
    *,
    known_args: Mapping[str, str] | None = None,
) -> tuple[FlowEngine, ev.CallStarted]:
    """The engine of the call's flow and its first event; ``LookupError`` when no flow is found.

    ``known_args``: the Stasis arguments when the event has none (a reopened per-call socket)."""
    caller_id = start.channel.id
    pairs, _positional = stasis_args(list(start.args))
    if known_args:
        pairs = {**known_args, **pairs}
    flow_name = pairs.get("flow") or await _variable(ari, caller_id, "IVR_FLOW")
    engine = flows.engine(flow_name)
    caller = start.channel
    started = ev.CallStarted(
        call_id=caller_id,
        caller_id=caller.caller.number,
        caller_name=caller.caller.name,
        dialed=caller.dialplan.exten,
        direction="outbound" if caller_id.startswith(ORIGINATE_PREFIX) else "inbound",
        args={k: v for k, v in pairs.items() if k not in ("flow", MEDIA_ARG)},
        vars={k: v for k, v in pairs.items() if k not in ("flow", MEDIA_ARG)},
        language=await _language(ari, caller_id, pairs, engine.library.main.settings.languages),
    )
    return engine, started


async def _language(
    ari: AriResources, caller_id: str, pairs: Mapping[str, str], languages: Mapping[str, Any]
) -> str | None:
    if pairs.get("language") or not languages:
        return pairs.get("language") or None
    return await _variable(ari, caller_id, "IVR_LANGUAGE")


async def _variable(ari: AriResources, channel_id: str, name: str) -> str | None:
    try:
        value = await ari.get_variable(channel_id, name)
    except AriError:  # NotFound included: the variable is not set
        return None
    return value or None
