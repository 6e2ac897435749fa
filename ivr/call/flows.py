"""Which flow a call runs: loaded and validated per process, versioned, reloaded when files change.

Flows are named by file stem (``flow=pizza`` is ``pizza.yaml`` in the flows directory). Every flow is
validated when the catalog is built, so ``ivr run`` refuses to start on a broken flow instead of failing
on the first call that needs it.

Versions and hot reload: each flow's version is a content hash of its file, its subflows and included
calendar files. :meth:`FlowCatalog.reload` re-reads the directory (on SIGHUP, or when
:meth:`FlowCatalog.watch` sees a file change): a changed flow that validates replaces the old one for
new calls; one that does not is refused with the validator's first message in one log line, and the old
version keeps serving. Calls in progress keep the engine (and so the flow) they started with; their
records carry that version.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ivr.flow.captures import warm as warm_captures
from ivr.flow.engine import FlowEngine
from ivr.flow.errors import FlowError
from ivr.flow.loader import FlowLibrary, load_library
from ivr.flow.model import AskStep, Capture

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 2.0
"""How often :meth:`FlowCatalog.watch` looks at the flow files' modification times."""


@dataclass(frozen=True)
class LoadedFlow:
    library: FlowLibrary
    version: str
    """sha256 (first 16 hex digits) over the files the flow was built from."""
    files: tuple[Path, ...]


@dataclass(frozen=True)
class ReloadResult:
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    """Flows whose new text has errors: the old version keeps serving."""


def _sources(library: FlowLibrary, directory: Path) -> list[Path]:
    """Every file a library was built from: the flows and their calendars' include files."""
    files = [directory / f"{name}.yaml" for name in library.flows]
    files = [f if f.is_file() else f.with_suffix(".yml") for f in files]
    for flow in library.flows.values():
        for calendar in flow.hours.values():
            files += [directory / inc for inc in calendar.include]
    return sorted(set(files))


def flow_version(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError:
            digest.update(b"(missing)")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def warm(library: FlowLibrary) -> None:
    """Load what the flow's captures need (parsers, locale data) now, not on a live call."""
    captures: list[Capture] = [
        s.capture
        for f in library.flows.values()
        for s in f.steps.values()
        if isinstance(s, AskStep) and s.capture
    ]
    languages = sorted({lang for f in library.flows.values() for lang in f.settings.spoken_languages})
    warm_captures(captures, languages)


def load(path: Path) -> LoadedFlow:
    library = load_library(path)
    files = _sources(library, path.parent)
    warm(library)
    return LoadedFlow(library, flow_version(files), tuple(files))


class FlowCatalog:
    def __init__(
        self, flows: Path, default: str | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.flows = flows
        # One copy for every call's engine (shared by reference): not the environment decoded per call.
        self.env: Mapping[str, str] = MappingProxyType(dict(os.environ if env is None else env))
        if not flows.exists():
            raise FileNotFoundError(f"flows: {flows} does not exist")
        self.directory = flows if flows.is_dir() else flows.parent
        self.default = default or (flows.stem if flows.is_file() else None)
        self._loaded: dict[str, LoadedFlow] = {}
        for path in self._files():
            self._loaded[path.stem] = load(path)
        if self.default is not None and self.default not in self._loaded:
            raise FileNotFoundError(
                f"default flow '{self.default}' ({self.default}.yaml) not in {self.directory}"
            )
        self._stamps = self._mtimes()

    def _files(self) -> list[Path]:
        if self.flows.is_file():
            return [self.flows]
        return sorted(p for p in self.flows.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))

    @property
    def names(self) -> list[str]:
        return sorted(self._loaded)

    def version(self, name: str) -> str:
        return self._loaded[name].version

    def library(self, name: str | None) -> FlowLibrary:
        """The named flow, else the default; :class:`LookupError` with a clear message if neither."""
        return self._lookup(name).library

    def _lookup(self, name: str | None) -> LoadedFlow:
        chosen = name or self.default
        if chosen is None:
            raise LookupError("the call names no flow and no default flow is configured (IVR_DEFAULT_FLOW)")
        loaded = self._loaded.get(chosen)
        if loaded is None:
            raise LookupError(f"no flow '{chosen}' ({chosen}.yaml) in {self.directory}")
        return loaded

    def engine(self, name: str | None) -> FlowEngine:
        loaded = self._lookup(name)
        return FlowEngine(loaded.library, env=self.env, version=loaded.version)

    # -- reloading -------------------------------------------------------------------------------

    def _mtimes(self) -> dict[Path, tuple[int, int]]:
        stamps: dict[Path, tuple[int, int]] = {}
        files = set(self._files()) | {f for loaded in self._loaded.values() for f in loaded.files}
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue
            stamps[file] = (stat.st_mtime_ns, stat.st_size)
        return stamps

    def changed_on_disk(self) -> bool:
        """Whether any flow or include file was added, removed or modified since the last (re)load."""
        return self._mtimes() != self._stamps

    def prepare_reload(self) -> tuple[dict[str, LoadedFlow], ReloadResult]:
        """Read and validate every flow file (blocking: run it in a worker thread); nothing is swapped."""
        fresh: dict[str, LoadedFlow] = {}
        changed: list[str] = []
        added: list[str] = []
        refused: list[str] = []
        for path in self._files():
            name = path.stem
            old = self._loaded.get(name)
            try:
                new = load(path)
            except FlowError as exc:
                first = exc.issues[0] if exc.issues else "invalid"
                more = f" (and {len(exc.issues) - 1} more; run ivr validate)" if len(exc.issues) > 1 else ""
                verb = "kept the running version" if old is not None else "not loaded"
                log.error("flow %s: reload refused, %s: %s%s", name, verb, first, more)
                refused.append(name)
                if old is not None:
                    fresh[name] = old
                continue
            except OSError as exc:
                log.error("flow %s: reload refused: %s", name, exc)
                refused.append(name)
                if old is not None:
                    fresh[name] = old
                continue
            if old is not None and old.version == new.version:
                fresh[name] = old
                continue
            fresh[name] = new
            (changed if old is not None else added).append(name)
        removed = [n for n in self._loaded if n not in fresh]
        if self.default is not None and self.default in removed:
            log.error("flow %s: the default flow's file is gone; keeping the running version", self.default)
            fresh[self.default] = self._loaded[self.default]
            removed.remove(self.default)
        return fresh, ReloadResult(tuple(changed), tuple(added), tuple(removed), tuple(refused))

    def apply_reload(self, fresh: dict[str, LoadedFlow], result: ReloadResult) -> None:
        """Swap in what :meth:`prepare_reload` built (cheap: one assignment; new calls see it)."""
        self._loaded = fresh
        self._stamps = self._mtimes()
        for name in result.changed:
            log.info("flow %s: reloaded, version %s", name, fresh[name].version)
        for name in result.added:
            log.info("flow %s: added, version %s", name, fresh[name].version)
        for name in result.removed:
            log.info("flow %s: removed (calls in progress finish on it)", name)

    def reload(self) -> ReloadResult:
        """Re-read the flows now (blocking); see the module docstring."""
        fresh, result = self.prepare_reload()
        self.apply_reload(fresh, result)
        return result

    async def reload_async(self) -> ReloadResult:
        """:meth:`reload` with the file reading and validation in a worker thread."""
        fresh, result = await asyncio.to_thread(self.prepare_reload)
        self.apply_reload(fresh, result)
        return result

    async def watch(self, interval: float = WATCH_INTERVAL_S) -> None:
        """Reload whenever a flow file changes (polls modification times; cancel to stop)."""
        while True:
            await asyncio.sleep(interval)
            if await asyncio.to_thread(self.changed_on_disk):
                await self.reload_async()


def install_reload(catalog: FlowCatalog, *, watch: bool = True) -> asyncio.Task[None] | None:
    """``ivr run``'s hook: SIGHUP reloads the flows, and (``watch``) so does any change to their files.

    Returns the watcher task (its owner cancels it at shutdown), or None without ``watch``."""
    import signal

    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[ReloadResult]] = set()

    def on_hup() -> None:
        log.info("SIGHUP: reloading flows")
        task = loop.create_task(catalog.reload_async(), name="flows-reload")
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (NotImplementedError, RuntimeError, AttributeError):  # not on this platform or thread
        log.info("flows: no SIGHUP on this platform; reload by file changes only")
    if not watch:
        return None
    return loop.create_task(catalog.watch(), name="flows-watch")
