"""The C single-clock AudioSocket reference server: built from the shipped source with gcc, once.

The binary is cached under ``$XDG_CACHE_HOME/ivr/bench`` (``~/.cache/ivr/bench``), named by a hash of the
source and the compiler command, so an edited source or another compiler builds a new one and a stale
binary is never run. The build goes to a temporary name first and is renamed into place, so two benches
started at once never run a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parent / "reference" / "audiosocket_ref.c"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
LIBS = ("-lm",)


class ReferenceBuildError(Exception):
    """The reference server cannot be built here (one line for the operator)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ivr" / "bench"


def build_reference(*, compiler: str | None = None, directory: Path | None = None) -> Path:
    """The path of the built reference server, compiling it first if this source was never built."""
    cc = compiler or os.environ.get("CC") or "gcc"
    cc_path = shutil.which(cc)
    if cc_path is None:
        raise ReferenceBuildError(
            f"the C reference server needs a C compiler: {cc} not found (apt-get install gcc, or set CC)"
        )
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join((cc, *CFLAGS, *LIBS)).encode()).hexdigest()[:16]
    out_dir = directory or cache_dir()
    binary = out_dir / f"audiosocket_ref-{digest}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".audiosocket_ref-", dir=out_dir)
    os.close(fd)
    try:
        done = subprocess.run(
            [cc_path, *CFLAGS, "-o", tmp_name, str(SOURCE), *LIBS],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise ReferenceBuildError(f"building the C reference server with {cc} failed: {first}")
        os.chmod(tmp_name, 0o755)
        os.replace(tmp_name, binary)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return binary
