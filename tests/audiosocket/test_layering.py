"""The transport layer depends on nothing above it: no media, speech, flow, call, ARI or simulator."""

from __future__ import annotations

from pathlib import Path

import ivr.audiosocket

from ..layering import forbidden_imports

FORBIDDEN = ("ivr.media", "ivr.speech", "ivr.flow", "ivr.call", "ivr.ari", "ivr.sim", "ivr.ops", "ivr.cli")


def test_audiosocket_imports_no_higher_layer() -> None:
    files = sorted(Path(ivr.audiosocket.__file__).parent.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        bad = forbidden_imports(path, FORBIDDEN)
        assert not bad, f"ivr/audiosocket/{path.name} imports {bad}"


def test_protocol_codec_is_pure() -> None:
    path = Path(ivr.audiosocket.__file__).parent / "protocol.py"
    assert not forbidden_imports(
        path, ("asyncio", "socket", "ivr.audiosocket.server", "ivr.audiosocket.session")
    )
