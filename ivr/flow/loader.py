"""Loading flows by file or by name (``flow=pizza`` -> ``pizza.yaml`` in the flows directory),
with every subflow they call, into one :class:`FlowLibrary` the engine can run without touching disk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr.flow.calendar import flow_with_includes as with_includes
from ivr.flow.errors import FlowError, FlowIssue
from ivr.flow.model import Flow, SubflowStep
from ivr.flow.validate import ValidationReport, find_flow_file, validate_file


@dataclass(frozen=True)
class FlowLibrary:
    """A top-level flow (``root``) and every flow reachable through ``subflow`` steps, by file stem."""

    root: str
    flows: Mapping[str, Flow]
    warnings: tuple[FlowIssue, ...] = ()

    @property
    def main(self) -> Flow:
        return self.flows[self.root]


def resolve_flow(flows: Path, name: str | None = None) -> Path:
    """``flows`` is a directory (then ``name`` picks the file by stem) or a single flow file."""
    if flows.is_file() and name in (None, flows.stem):
        return flows
    directory = flows if flows.is_dir() else flows.parent
    if name is None:
        raise FileNotFoundError(f"{flows} is a directory; name a flow")
    found = find_flow_file(directory, name)
    if found is None:
        raise FileNotFoundError(f"no flow '{name}' ({name}.yaml) in {directory}")
    return found


def load_flow(path: Path) -> tuple[Flow, ValidationReport]:
    """Validate and parse one file; raise :class:`FlowError` if it has errors."""
    report = validate_file(path)
    if report.flow is None:
        raise FlowError([*report.errors, *report.warnings])  # the first issue is the one to show
    return with_includes(report.flow, path.parent), report


def load_library(path: Path) -> FlowLibrary:
    """Load ``path`` and, recursively, its subflows; subflow cycles are errors."""
    flows: dict[str, Flow] = {}
    warnings: list[FlowIssue] = []

    def visit(file: Path, stack: tuple[str, ...]) -> None:
        flow, report = load_flow(file)
        flows[file.stem] = flow
        warnings.extend(report.warnings)
        for name, step in flow.steps.items():
            if not isinstance(step, SubflowStep):
                continue
            if step.subflow in stack or step.subflow == file.stem:
                raise FlowError(
                    [
                        FlowIssue(
                            "error",
                            str(file),
                            1,
                            1,
                            ("steps", name, "subflow"),
                            f"subflow cycle: {' -> '.join((*stack, file.stem, step.subflow))}",
                        )
                    ]
                )
            if step.subflow not in flows:
                sub = find_flow_file(file.parent, step.subflow)
                if sub is None:  # pragma: no cover - validate_file already reports it
                    raise FlowError(
                        [
                            FlowIssue(
                                "error",
                                str(file),
                                1,
                                1,
                                ("steps", name, "subflow"),
                                f"subflow '{step.subflow}' not found",
                            )
                        ]
                    )
                visit(sub, (*stack, file.stem))

    visit(path, ())
    return FlowLibrary(path.stem, flows, tuple(warnings))
