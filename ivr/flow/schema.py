"""The JSON Schema of flow files (``ivr schema``; committed as ``flows/schema.json`` for YAML editors)."""

from __future__ import annotations

import json
from typing import Any

from ivr.flow.model import Flow


def flow_json_schema() -> dict[str, Any]:
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "ivr call flow",
    }


def flow_json_schema_text() -> str:
    return json.dumps(flow_json_schema(), indent=2, sort_keys=False) + "\n"
