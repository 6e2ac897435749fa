"""YAML parsing that keeps where every value came from, within explicit limits.

PyYAML's ``safe_load`` throws the node marks away, so the loader composes the node tree itself and
builds plain Python data next to a :class:`SourceMap` (key path -> line/column). It also reports what
``safe_load`` silently accepts: duplicate keys (the last one would win) and several documents in one file.

Flow files are read by ``ivr validate`` and by ``ivr run`` at start-up, so a hostile or broken file must be
refused fast, with one line, instead of costing minutes and gigabytes: its size is checked before it is
read, it must be UTF-8 text, and while PyYAML's safe loader composes it (no Python objects are ever built
from tags) the nesting depth, the number of values and the alias uses are counted. Aliases share nodes, so
every use is counted again when the data is built: an "alias bomb" is refused after ``MAX_VALUES`` values
instead of being rebuilt at every use. The limits are the ``MAX_*`` constants below (README lists them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.flow.errors import FlowIssue, KeyPath

FLOW_SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = 1_048_576
"""Largest flow file (1 MiB): about 4,000 steps like those of the shipped examples."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a flow needs about 8)."""
MAX_VALUES = 50_000
"""Most YAML values (keys, texts, mappings, lists) in one file, counting every use of an alias."""
MAX_ALIASES = 100
"""Most alias uses (``*name``) in one file."""
MAX_STEPS = 1_000
"""Most steps in one flow file; split bigger flows into subflows."""
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


def _plain(node: yaml.Node) -> str | None:
    """The text of an unquoted scalar (what YAML 1.1 may have turned into a boolean or number)."""
    return node.value if isinstance(node, yaml.ScalarNode) and node.style is None else None


class LimitExceeded(Exception):
    """The file passed one of the limits above (or holds a value that cannot be read)."""

    def __init__(self, message: str, mark: Any | None = None) -> None:
        super().__init__(message)
        self.mark = Mark(mark.line + 1, mark.column + 1) if mark is not None else Mark(1, 1)


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting depth, values and aliases while it composes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._values = 0
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise LimitExceeded(
                    f"more than {MAX_ALIASES} aliases (*name); the limit is {MAX_ALIASES}", event.start_mark
                )
        else:
            self._values += 1
            if self._values > MAX_VALUES:
                raise LimitExceeded(
                    f"more than {MAX_VALUES:,} YAML values; the limit is {MAX_VALUES:,}", event.start_mark
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitExceeded(
                    f"nested deeper than {MAX_DEPTH} levels; the limit is {MAX_DEPTH}", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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


_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


class _Builder:
    """Plain data from the node tree. Aliases share nodes, so every use is counted against
    :data:`MAX_VALUES` (an alias bomb is refused after that many values, not built), and an alias used
    inside its own anchor is refused as recursive."""

    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap) -> None:
        self.loader = loader
        self.smap = smap
        self.issues: list[FlowIssue] = []
        self._built = 0
        self._open: set[int] = set()

    def build(self, node: yaml.Node, path: KeyPath, depth: int = 0) -> Any:
        self._built += 1
        if self._built > MAX_VALUES:
            raise LimitExceeded(
                f"aliases expand to more than {MAX_VALUES:,} values; the limit is {MAX_VALUES:,}",
                node.start_mark,
            )
        if depth > MAX_DEPTH:
            raise LimitExceeded(
                f"nested deeper than {MAX_DEPTH} levels; the limit is {MAX_DEPTH}", node.start_mark
            )
        self.smap.values.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            if node.style is None:
                self.smap.plain_scalars[path] = node.value
            return self._scalar(node)
        if id(node) in self._open:
            raise LimitExceeded("an alias is used inside its own anchor (a recursive alias)", node.start_mark)
        if node.tag not in _COLLECTION_TAGS:
            raise LimitExceeded(f"the tag {node.tag!r} is not allowed in flow files", node.start_mark)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
        finally:
            self._open.discard(id(node))
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover - PyYAML has only three kinds

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
            raise LimitExceeded(f"cannot read this value: {exc}", node.start_mark) from None

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        seen: dict[Any, tuple[Mark, str | None]] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._scalar(key_node)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            here, raw = _mark(key_node), _plain(key_node)
            if first is not None:
                self.issues.append(self._duplicate((*path, key), key, here, raw, *first))
            else:
                seen[key] = (here, raw)
        self.loader.flatten_mapping(node)
        keys = [self._scalar(key_node) for key_node, _ in node.value]
        last: dict[Any, int] = {}
        for index, key in enumerate(keys):
            try:
                last[key] = index
            except TypeError:
                continue
        out: dict[Any, Any] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            key = keys[index]
            try:
                hash(key)
            except TypeError:
                m = _mark(key_node)
                self.issues.append(
                    FlowIssue("error", self.smap.file, m.line, m.column, path, "a key must be a plain value")
                )
                continue
            if last[key] != index:
                continue  # YAML keeps the last of duplicate keys: the source map follows the one kept
            child = (*path, key)
            self.smap.keys[child] = _mark(key_node)
            if key_node.style is None:
                self.smap.plain_scalars[(*child, "<key>")] = key_node.value
            out[key] = self.build(value_node, child, depth + 1)
        return out

    def _duplicate(
        self, path: KeyPath, key: Any, here: Mark, raw: str | None, first: Mark, first_raw: str | None
    ) -> FlowIssue:
        if raw != first_raw and raw in YAML11_BOOL_WORDS and first_raw in YAML11_BOOL_WORDS:
            message = (
                f"'{raw}' is the same key as '{first_raw}' on line {first.line}: YAML reads both unquoted "
                f"words as the boolean {str(key).lower()}, and would silently keep only the last one"
            )
            hint = f"write them in quotes: '{first_raw}' and '{raw}'"
        else:
            shown = f"'{raw}'" if raw is not None else repr(key)
            message = (
                f"duplicate key {shown} (first defined on line {first.line}); "
                "YAML would silently keep only the last one"
            )
            hint = None
        return FlowIssue("error", self.smap.file, here.line, here.column, path, message, hint=hint)


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap, list[FlowIssue]]:
    """Parse one YAML document; return (data, source map, issues). Data is None on a syntax error."""
    smap = SourceMap(file=file, text=text)
    try:
        loader = _LimitedLoader(text)
    except yaml.reader.ReaderError as exc:  # the whole text is checked for printable characters first
        return None, smap, [_reader_issue(exc, text, file)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, smap, [FlowIssue("error", file, 1, 1, (), "the file is empty", "a flow mapping")]
        builder = _Builder(loader, smap)
        data = builder.build(node, ())
        return data, smap, builder.issues
    except LimitExceeded as exc:
        return None, smap, [FlowIssue("error", file, exc.mark.line, exc.mark.column, (), str(exc))]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = str(exc.problem or exc.context or exc)
        if "expected a single document" in str(exc):
            problem = "the file holds more than one YAML document (a second '---'); a flow file holds one"
        comment = _comment_in_flow(exc, smap)
        if comment is not None:  # PyYAML notices only on a later line; the mistake is the '#'
            line, col = comment.line, comment.column
            shape = "[...] list" if "sequence" in str(exc.context) else "{...} mapping"
            problem = f"this {shape} is cut short by a comment"
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
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error above is marked
        return None, smap, [FlowIssue("error", file, 1, 1, (), f"YAML error: {' '.join(str(exc).split())}")]
    finally:
        loader.dispose()


def _comment_start(line: str, start: int) -> int | None:
    """Index of the first ``#`` that starts a YAML comment in ``line`` at or after ``start``."""
    quote: str | None = None
    for i in range(start, len(line)):
        ch = line[i]
        if quote is not None:
            if ch == quote and not (quote == '"' and line[i - 1] == "\\"):
                quote = None
        elif ch in "'\"" and (i == 0 or line[i - 1] in " \t{[,:"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def _comment_in_flow(exc: yaml.MarkedYAMLError, smap: SourceMap) -> Mark | None:
    """Where an unquoted ``#`` cut a ``{...}`` or ``[...]`` short, if that is what the error is about."""
    opened, failed = exc.context_mark, exc.problem_mark
    if opened is None or failed is None or not str(exc.context or "").startswith("while parsing a flow"):
        return None
    for number in range(opened.line, failed.line + 1):
        found = _comment_start(smap.line_text(number + 1), opened.column if number == opened.line else 0)
        if found is not None:
            return Mark(number + 1, found + 1)
    return None


def _position(text: str, index: int) -> Mark:
    line = text.count("\n", 0, index) + 1
    return Mark(line, index - (text.rfind("\n", 0, index) + 1) + 1)


def _reader_issue(exc: yaml.reader.ReaderError, text: str, file: str) -> FlowIssue:
    at = _position(text, exc.position)
    code = exc.character if isinstance(exc.character, int) else 0
    return FlowIssue(
        "error",
        file,
        at.line,
        at.column,
        (),
        f"the file contains the control character U+{code:04X}, which YAML does not allow",
        "UTF-8 text",
        "is this a binary file?",
    )


def read_flow_text(path: Path) -> tuple[str | None, FlowIssue | None]:
    """The text of a flow file, or one issue: unreadable, bigger than :data:`MAX_FILE_BYTES` (checked
    before reading it), or not UTF-8 (with the line and column of the first bad byte)."""
    file = str(path)
    try:
        size = path.stat().st_size
        if size <= MAX_FILE_BYTES:
            with path.open("rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)  # a file that grows meanwhile is still bounded
            size = len(raw)
    except OSError as exc:
        return None, FlowIssue("error", file, 1, 1, (), f"cannot read: {exc.strerror or exc}")
    if size > MAX_FILE_BYTES:
        return None, FlowIssue(
            "error",
            file,
            1,
            1,
            (),
            f"the file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (1 MiB)",
            hint="split a big flow into subflows",
        )
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode("utf-8", errors="replace")
        at = _position(before, len(before))
        return None, FlowIssue(
            "error",
            file,
            at.line,
            at.column,
            (),
            f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded",
            "UTF-8 text",
            "is this a binary file? save flows as UTF-8",
        )


def find_flow_file(flows_dir: Path, name: str) -> Path | None:
    """``name`` -> ``flows_dir/name.yaml`` (or ``.yml``): flows are named by file stem."""
    for suffix in FLOW_SUFFIXES:
        candidate = flows_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None
