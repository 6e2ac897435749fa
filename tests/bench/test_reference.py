"""The C reference server, built from the shipped source: the AudioSocket wire as Asterisk speaks it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.bench.reference import ReferenceBuildError, build_reference
from tests.services import unavailable


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        unavailable("C compiler (gcc)", "apt-get install gcc: ivr bench builds its C reference server")
    return build_reference(directory=tmp_path_factory.mktemp("ref"))


@pytest.fixture
def server(binary: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    proc = subprocess.Popen([str(binary), "0", "8000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("ready "), line
    yield proc, int(line.split()[1])
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _read_message(sock: socket.socket) -> tuple[int, bytes]:
    header = _exactly(sock, 3)
    return header[0], _exactly(sock, (header[1] << 8) | header[2])


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _read_until_closed(sock: socket.socket) -> None:
    for _ in range(100):  # frames already on their way, then EOF
        _read_message(sock)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_a_second_build_reuses_the_cached_binary(binary: Path) -> None:
    assert build_reference(directory=binary.parent) == binary


def test_missing_compiler_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ReferenceBuildError) as exc:
        build_reference(compiler="no-such-cc-for-ivr", directory=tmp_path)
    message = str(exc.value)
    assert "no-such-cc-for-ivr not found" in message
    assert "\n" not in message


def test_frames_follow_the_rate_the_peer_sends(server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server
    with _connect(port) as slin, _connect(port) as slin16:
        for sock, kind, size in ((slin, 0x10, 320), (slin16, 0x12, 640)):
            sock.sendall(b"\x01\x00\x10" + uuid.uuid4().bytes)
            sock.sendall(bytes([kind, size >> 8, size & 0xFF]) + bytes(size))
            sock.sendall(b"\x03\x00\x011")  # a DTMF digit is counted, never answered
        for sock, kind in ((slin, 0x10), (slin16, 0x12)):
            kinds = set()
            for _ in range(5):  # the first frame may leave before the peer's audio set the rate
                got_kind, payload = _read_message(sock)
                kinds.add(got_kind)
                assert len(payload) == (320 if got_kind == 0x10 else 640)
                assert any(payload), "the reference streams a tone, not silence"
            assert kind in kinds
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["accepted"] == 2
    assert stats["frames_in"] == 2
    assert stats["dtmf_in"] == 2
    assert stats["frames_out"] >= 10
    assert stats["bad_messages"] == 0


def test_a_malformed_message_closes_only_that_session(server: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = server
    with _connect(port) as good, _connect(port) as bad:
        good.sendall(b"\x01\x00\x10" + uuid.uuid4().bytes)
        bad.sendall(b"\x10\x01\x40" + bytes(320))  # audio before the UUID
        assert bad.recv(1) == b"", "the bad session is closed"
        _read_message(good)
        _read_message(good)  # the other session keeps streaming
        good.sendall(b"\x00\x00\x00")  # hangup
        with pytest.raises(EOFError):
            _read_until_closed(good)
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    stats = json.loads(out.decode().strip().splitlines()[-1])
    assert stats["bad_messages"] == 1
    assert stats["closed"] == 2
    assert stats["live"] == 0
