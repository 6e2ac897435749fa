"""A real HAProxy for integration tests: the project's ``deploy/haproxy/haproxy.cfg`` on free ports.

The binary comes from Debian's ``haproxy`` package (``/usr/sbin/haproxy``) or ``IVR_TEST_HAPROXY``. The
test's configuration is the shipped file with its ``bind`` line on a free ``127.0.0.1`` port and its
``server`` lines pointing at the test's instances (the rest, timeouts, retries, health checks, balance,
is the file as shipped), plus an admin socket in the test's directory to read each server's state.
``haproxy -db`` runs in the foreground as a child of the test, logging to a file; it is stopped
afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import free_tcp_port

BIN_ENV = "IVR_TEST_HAPROXY"
HOW_TO_ENABLE = f"apt-get install haproxy (or set {BIN_ENV} to the haproxy binary)"
SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "haproxy" / "haproxy.cfg"


class HAProxyStartError(RuntimeError):
    pass


def haproxy_bin() -> Path | None:
    named = os.environ.get(BIN_ENV)
    found = (
        named
        or shutil.which("haproxy")
        or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    )
    return Path(found) if found and Path(found).is_file() else None


@dataclass(frozen=True)
class Backend:
    """One ivr instance behind the balancer: its per-call port and its health (metrics) port."""

    name: str
    port: int
    check_port: int
    host: str = "127.0.0.1"


def render(shipped: str, *, port: int, backends: list[Backend], admin_socket: Path) -> str:
    """The shipped configuration with the test's bind addresses (the per-call frontend on ``port``,
    any other on a free port), servers and admin socket."""
    text = re.sub(
        r"(?ms)^(frontend ari_percall\n.*?^\s*)bind :\d+$", rf"\g<1>bind 127.0.0.1:{port}", shipped, count=1
    )
    assert f"bind 127.0.0.1:{port}" in text, f"{SHIPPED}: no 'bind :PORT' in 'frontend ari_percall'"
    text = re.sub(r"(?m)^(\s*)bind :\d+$", lambda m: f"{m[1]}bind 127.0.0.1:{free_tcp_port()}", text)
    servers = "".join(f"    server {b.name} {b.host}:{b.port} check port {b.check_port}\n" for b in backends)
    text, found = re.subn(r"(?m)^\s*server .*\n", "", text)
    assert found, f"{SHIPPED}: no server lines"
    text = text.rstrip() + "\n" + servers
    text, globals_ = re.subn(
        r"(?m)^global\n", f"global\n    stats socket {admin_socket} mode 600 level admin\n", text
    )
    assert globals_ == 1, f"{SHIPPED}: no global section"
    return text


@dataclass
class RealHAProxy:
    binary: Path
    port: int
    backends: list[Backend]
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ivr-haproxy-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def log_path(self) -> Path:
        return self.root / "haproxy.log"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ari"

    def start(self, timeout: float = 20.0) -> RealHAProxy:
        shipped = SHIPPED.read_text(encoding="utf-8")
        self.config_path.write_text(
            render(shipped, port=self.port, backends=self.backends, admin_socket=self.admin_socket),
            encoding="utf-8",
        )
        check = subprocess.run(
            [str(self.binary), "-c", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30
        )
        if check.returncode != 0:
            raise HAProxyStartError(f"haproxy -c refused the configuration: {check.stderr[-2000:]}")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(self.binary), "-db", "-f", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HAProxyStartError(f"haproxy exited {self.process.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise HAProxyStartError(f"haproxy did not listen on {self.port} within {timeout:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, command: str) -> str:
        """One command on the admin socket (``show servers state``, ``show stat``, ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.admin_socket))
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def server_states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it (``UP``, ``DOWN``, ``MAINT``...)."""
        states: dict[str, str] = {}
        lines = self.admin("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",") if lines else []
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("svname") in {b.name for b in self.backends}:
                states[row["svname"]] = row.get("status", "")
        return states

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return ""
