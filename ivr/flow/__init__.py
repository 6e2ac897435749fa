"""The YAML flow language and the pure flow engine.

- :mod:`ivr.flow.model`: the schema (pydantic), :mod:`ivr.flow.schema`: its JSON Schema.
- :mod:`ivr.flow.validate` / :mod:`ivr.flow.loader`: loading with line/column findings.
- :mod:`ivr.flow.engine`: :class:`FlowEngine`, driven by :mod:`ivr.flow.events`, answering with
  :mod:`ivr.flow.actions`. Pure: no sockets, no asyncio.
- :mod:`ivr.flow.webhook` and :mod:`ivr.flow.llm_matcher` do I/O for the runtime; the engine never
  imports them.
"""

from __future__ import annotations

from ivr.flow.engine import FlowEngine, PathRecord, TranscriptEntry
from ivr.flow.errors import FlowError, FlowIssue
from ivr.flow.loader import FlowLibrary, load_flow, load_library, resolve_flow
from ivr.flow.model import Flow, FlowSettings
from ivr.flow.validate import ValidationReport, validate_file, validate_source

__all__ = [
    "Flow",
    "FlowEngine",
    "FlowError",
    "FlowIssue",
    "FlowLibrary",
    "FlowSettings",
    "PathRecord",
    "TranscriptEntry",
    "ValidationReport",
    "load_flow",
    "load_library",
    "resolve_flow",
    "validate_file",
    "validate_source",
]
