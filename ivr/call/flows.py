"""Which flow a call runs, loaded and validated once per process.

Flows are named by file stem (``flow=pizza`` is ``pizza.yaml`` in the flows directory). Every flow is
validated when the catalog is built, so ``ivr run`` refuses to start on a broken flow instead of failing
on the first call that needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ivr.flow.engine import FlowEngine
from ivr.flow.loader import FlowLibrary, load_library


class FlowCatalog:
    def __init__(
        self, flows: Path, default: str | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.flows = flows
        self.env = os.environ if env is None else env
        if not flows.exists():
            raise FileNotFoundError(f"flows: {flows} does not exist")
        self.directory = flows if flows.is_dir() else flows.parent
        self.default = default or (flows.stem if flows.is_file() else None)
        self._libraries: dict[str, FlowLibrary] = {}
        files = (
            [flows]
            if flows.is_file()
            else sorted(p for p in flows.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        )
        for path in files:
            self._libraries[path.stem] = load_library(path)
        if self.default is not None and self.default not in self._libraries:
            raise FileNotFoundError(
                f"default flow '{self.default}' ({self.default}.yaml) not in {self.directory}"
            )

    @property
    def names(self) -> list[str]:
        return sorted(self._libraries)

    def library(self, name: str | None) -> FlowLibrary:
        """The named flow, else the default; :class:`LookupError` with a clear message if neither."""
        chosen = name or self.default
        if chosen is None:
            raise LookupError("the call names no flow and no default flow is configured (IVR_DEFAULT_FLOW)")
        library = self._libraries.get(chosen)
        if library is None:
            raise LookupError(f"no flow '{chosen}' ({chosen}.yaml) in {self.directory}")
        return library

    def engine(self, name: str | None) -> FlowEngine:
        return FlowEngine(self.library(name), env=self.env)
