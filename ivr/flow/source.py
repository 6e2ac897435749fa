"""YAML parsing that keeps where every value came from.

PyYAML's ``safe_load`` throws the node marks away, so the loader composes the node tree itself and
builds plain Python data next to a :class:`SourceMap` (key path -> line/column). It also reports what
``safe_load`` silently accepts: duplicate keys (the last one would win) and several documents in one file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.flow.errors import FlowIssue, KeyPath

FLOW_SUFFIXES = (".yaml", ".yml")
YAML11_BOOL_WORDS = frozenset(
    w for base in ("yes", "no", "on", "off", "true", "false") for w in (base, base.title(), base.upper())
)


@dataclass(frozen=True)
class Mark:
    """A 1-based position in the source file."""

    line: int
    column: int


@dataclass
class SourceMap:
    """Positions of keys and values in one YAML file, addressed by key path."""

    file: str
    text: str
    values: dict[KeyPath, Mark] = field(default_factory=dict)
    keys: dict[KeyPath, Mark] = field(default_factory=dict)
    plain_scalars: dict[KeyPath, str] = field(default_factory=dict)

    def mark(self, path: KeyPath, *, at_key: bool = False) -> Mark:
        """Position of ``path``, or of its nearest ancestor that exists in the file."""
        probe = tuple(path)
        while True:
            if at_key and probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return Mark(1, 1)
            probe = probe[:-1]

    def plain_text(self, path: KeyPath) -> str | None:
        """The raw text of an unquoted scalar, so traps like ``yes`` or ``#`` can be explained."""
        return self.plain_scalars.get(tuple(path))

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def issue(
        self,
        path: KeyPath,
        message: str,
        *,
        expected: str | None = None,
        hint: str | None = None,
        severity: str = "error",
        at_key: bool = False,
    ) -> FlowIssue:
        m = self.mark(path, at_key=at_key)
        return FlowIssue(
            "warning" if severity == "warning" else "error",
            self.file,
            m.line,
            m.column,
            tuple(path),
            message,
            expected,
            hint,
        )


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _yaml_error_hint(problem: str, line: str) -> str | None:
    if re.search(r"(^|[\s{\[,])#", line):
        return "an unquoted # starts a YAML comment and hides the rest of the line; write '#' in quotes"
    if "alias" in problem or "anchor" in problem:
        return "an unquoted * starts a YAML alias and & an anchor; write DTMF keys in quotes: '*'"
    if "mapping values are not allowed" in problem:
        return "a ': ' inside an unquoted text starts a new key; put the whole text in quotes"
    if "found character '\\t'" in problem:
        return "YAML indentation must use spaces, not tabs"
    return None


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap) -> None:
        self.loader = loader
        self.smap = smap
        self.issues: list[FlowIssue] = []

    def build(self, node: yaml.Node, path: KeyPath, depth: int = 0) -> Any:
        self.smap.values.setdefault(path, _mark(node))
        if depth > 60:
            self.issues.append(self.smap.issue(path, "nesting is too deep (recursive alias?)"))
            return None
        if isinstance(node, yaml.ScalarNode):
            if node.style is None:
                self.smap.plain_scalars[path] = node.value
            return self.loader.construct_object(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover - PyYAML has only three kinds

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        seen: dict[Any, Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.loader.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            here = _mark(key_node)
            if first is not None:
                self.issues.append(
                    FlowIssue(
                        "error",
                        self.smap.file,
                        here.line,
                        here.column,
                        (*path, key),
                        f"duplicate key {key!r} (first defined on line {first.line}); "
                        "YAML would silently keep only the last one",
                    )
                )
            seen[key] = here
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                m = _mark(key_node)
                self.issues.append(
                    FlowIssue("error", self.smap.file, m.line, m.column, path, "a key must be a plain value")
                )
                continue
            child = (*path, key)
            self.smap.keys.setdefault(child, _mark(key_node))
            if key_node.style is None:
                self.smap.plain_scalars.setdefault((*child, "<key>"), key_node.value)
            out[key] = self.build(value_node, child, depth + 1)
        return out


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap, list[FlowIssue]]:
    """Parse one YAML document; return (data, source map, issues). Data is None on a syntax error."""
    smap = SourceMap(file=file, text=text)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, smap, [FlowIssue("error", file, 1, 1, (), "the file is empty", "a flow mapping")]
        builder = _Builder(loader, smap)
        data = builder.build(node, ())
        return data, smap, builder.issues
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = str(exc.problem or exc.context or exc)
        if "expected a single document" in str(exc):
            problem = "the file holds more than one YAML document (a second '---'); a flow file holds one"
        return (
            None,
            smap,
            [
                FlowIssue(
                    "error",
                    file,
                    line,
                    col,
                    (),
                    f"YAML syntax error: {problem}",
                    hint=_yaml_error_hint(str(exc), smap.line_text(line - 1) + "\n" + smap.line_text(line)),
                )
            ],
        )
    except yaml.YAMLError as exc:
        return None, smap, [FlowIssue("error", file, 1, 1, (), f"YAML error: {exc}")]
    finally:
        loader.dispose()


def find_flow_file(flows_dir: Path, name: str) -> Path | None:
    """``name`` -> ``flows_dir/name.yaml`` (or ``.yml``): flows are named by file stem."""
    for suffix in FLOW_SUFFIXES:
        candidate = flows_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None
