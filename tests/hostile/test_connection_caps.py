"""300 connections from one address that never send a UUID must not lock a real call out.

With ``ivr run``'s defaults (dialplan-only mode, the open door): one source may hold IVR_MAX_CALLS + 10
connections, everyone together 1,000, so a stranger filling slots from one address leaves room for the
PBX at another. The attacker re-opens whatever the server closes, as a real one would, so the test does
not depend on the 5 s UUID timeout or on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from ivr.audiosocket.protocol import Audio, Hangup, encode_uuid
from ivr.config import ConfigError, Settings, load_settings
from ivr.workers.process import serve
from tests.audiosocket.peer import AsteriskPeer

ATTACKER, PBX = "127.0.0.1", "127.0.0.2"
SILENT = 300


def _settings(tmp_path: Path, **env: str) -> Settings:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hi.yaml").write_text(
        "name: hi\nstart: hi\nsteps:\n  hi:\n    say: Hello there, you got through.\n    next: bye\n"
        "  bye:\n    hangup:\n"
    )
    return load_settings(
        environ={
            "IVR_FLOWS": str(flows),
            "IVR_DEFAULT_FLOW": "hi",
            "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
            "IVR_TTS": "sim-text",
            "IVR_STT": "sim-text",
            "IVR_PROMPT_CACHE": "",
            "IVR_METRICS_LISTEN": "",
            "IVR_RECORDS_PATH": str(tmp_path / "calls.sqlite3"),
            **env,
        },
        toml_path=None,
    )


class SilentCrowd:
    """Keeps ``count`` connections from ``host`` (to the server on 127.0.0.1) open, sending nothing; re-opens any the server closes."""

    def __init__(self, port: int, count: int, host: str = ATTACKER) -> None:
        self.port, self.count, self.host = port, count, host
        self.refused = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SilentCrowd:
        self._tasks = [asyncio.create_task(self._hold()) for _ in range(self.count)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _hold(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, local_addr=(self.host, 0)
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                await reader.read()  # until the server hangs up on us
            except ConnectionError:
                pass
            finally:
                writer.close()
            self.refused += 1
            await asyncio.sleep(0.01)


async def _real_call(port: int) -> list[Any]:
    """A call from the PBX's address: what it receives before the prompt's first audio (or the end)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(PBX, 0))
    peer = AsteriskPeer(reader, writer)
    try:
        await peer.send(encode_uuid(uuid.uuid4()))
        while True:
            [frame] = await peer.read_frames(1, timeout=10)
            if isinstance(frame, Audio | Hangup) or peer.eof:
                return [frame]
    except ValueError:  # read_frames returned nothing: EOF without a frame
        return []
    finally:
        await peer.close()


async def _run(settings: Settings) -> tuple[list[Any], int]:
    stop = asyncio.Event()
    ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, no_ari=True, stop=stop, ready=ready.set_result))
    try:
        async with asyncio.timeout(60):
            port = (await ready)["audiosocket"][1]
            held = min(settings.per_source_limit or SILENT, settings.audiosocket_max_connections)
            async with SilentCrowd(port, SILENT) as crowd:
                while crowd.refused < SILENT - held:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # until the crowd holds all it can
                heard = await _real_call(port)
                return heard, crowd.refused
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 30)


def test_the_defaults_are_on_and_match_the_readme(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.audiosocket_max_connections == 1000
    assert settings.per_source_limit == settings.max_calls + 10 == 110
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "| `IVR_AUDIOSOCKET_MAX_CONNECTIONS` | `1000` |" in readme
    assert "| `IVR_AUDIOSOCKET_MAX_PER_SOURCE` | `IVR_MAX_CALLS` + 10 |" in readme


async def test_silent_connections_from_one_address_do_not_lock_out_a_real_call(tmp_path: Path) -> None:
    heard, refused = await _run(_settings(tmp_path))
    assert refused >= SILENT - 110, "the crowd was held to its per-source share"
    assert heard, "the real call got no frame"
    assert isinstance(heard[0], Audio), f"the real call was refused: {heard}"


async def test_with_the_per_source_cap_off_the_crowd_fills_every_slot(tmp_path: Path) -> None:
    """Why the cap is on by default: with 0 (no limit) one address takes all 250 slots."""
    settings = _settings(tmp_path, IVR_AUDIOSOCKET_MAX_PER_SOURCE="0", IVR_AUDIOSOCKET_MAX_CONNECTIONS="250")
    assert settings.per_source_limit == 0
    heard, _ = await _run(settings)
    assert heard == [Hangup()] or heard == [], "all 250 slots are taken: the real call is refused"


def test_a_total_below_the_call_limit_is_a_setting_error() -> None:
    with pytest.raises(
        ConfigError, match=r"IVR_AUDIOSOCKET_MAX_CONNECTIONS \(1000\) is below IVR_MAX_CALLS \(2000\)"
    ):
        load_settings(environ={"IVR_MAX_CALLS": "2000"}, toml_path=None)
    settings = load_settings(
        environ={"IVR_MAX_CALLS": "2000", "IVR_AUDIOSOCKET_MAX_CONNECTIONS": "5000"}, toml_path=None
    )
    assert settings.per_source_limit == 2010
    assert (
        load_settings(environ={"IVR_AUDIOSOCKET_MAX_PER_SOURCE": "20"}, toml_path=None).per_source_limit == 20
    )
