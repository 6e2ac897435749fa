"""A real PostgreSQL for integration tests: ``initdb`` into a temporary directory, ``postgres`` on a free
127.0.0.1 port with its unix socket in the same directory, stopped afterwards.

The binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``) or
``IVR_TEST_PG_BIN``. PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system
user the Debian package creates (``runuser -u postgres --``), and the data directory is owned by it.
An instance can be stopped and started again on the same port and data (the outage tests do).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

BIN_ENV = "IVR_TEST_PG_BIN"
HOW_TO_ENABLE = f"apt-get install postgresql (or set {BIN_ENV} to its bin directory)"
SERVER_USER = "postgres"
"""The system user that runs the server when the tests run as root."""


class PostgresStartError(RuntimeError):
    pass


def bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None when none is installed."""
    named = os.environ.get(BIN_ENV)
    if named:
        candidates = [Path(named)]
    else:
        debian = Path("/usr/lib/postgresql")
        versions = sorted(
            (p for p in debian.glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
        found = shutil.which("initdb")
        candidates = [*versions, *([Path(found).parent] if found else [])]
    for path in candidates:
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs a tool as the server's user, and that user's uid/gid (None: us)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresStartError(
            f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as "
            "(the Debian package creates it)"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", SERVER_USER, "--"], entry.pw_uid, entry.pw_gid
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresStartError("running as root and neither runuser nor setpriv is installed")
    return (
        [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups"],
        entry.pw_uid,
        entry.pw_gid,
    )


@dataclass
class RealPostgres:
    """One PostgreSQL server of the tests: its directory, port, superuser and password."""

    bin: Path
    port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ivr-pg-")))
    user: str = "ivr"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    _prefix: list[str] = field(default_factory=list)
    _databases: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        secret = f":{quote(self.password, safe='')}" if password else ""
        return f"postgresql://{self.user}{secret}@127.0.0.1:{self.port}/{database}"

    def init(self) -> RealPostgres:
        self._prefix, uid, gid = _as_server_user()
        self.socket_dir.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        self.log_path.touch()
        if uid is not None and gid is not None:
            for path in (self.root, self.socket_dir, pwfile, self.log_path):
                os.chown(path, uid, gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
            timeout=120,
        )
        pwfile.unlink()
        return self

    def start(self) -> RealPostgres:
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self.port}",
                f"-k {self.socket_dir}",
                "-c fsync=off",  # a throw-away cluster: the tests are about ivr's durability, not its
                "-c full_page_writes=off",
                "-c max_connections=50",
            ]
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log_path), "-o", options
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients and shut down cleanly; ``immediate``: like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.data), "-m", mode, check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL (with the password)."""
        self._databases += 1
        name = name or f"t{self._databases}_{secrets.token_hex(3)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through ``psql`` over the unix socket (trust): output without headers."""
        proc = self._run(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-c",
            sql,
        )
        return proc.stdout

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-size:]
        return ""

    def _run(
        self, tool: str, *args: str, timeout: float = 90, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._prefix, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "PGTZ": "UTC"},
        )
        if check and proc.returncode != 0:
            raise PostgresStartError(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}\n{self.log_tail()}"
            )
        return proc
