"""ivr.media sits at the bottom: no transport, call, flow or speech imports, no asyncio, no audioop."""

from pathlib import Path

import ivr.media

from ..layering import forbidden_imports

FORBIDDEN = ("ivr.flow", "ivr.call", "ivr.ari", "ivr.speech", "ivr.audiosocket", "asyncio", "audioop")


def test_media_imports_stay_in_their_layer():
    files = sorted(Path(ivr.media.__file__).parent.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        bad = forbidden_imports(path, FORBIDDEN)
        assert not bad, f"{path.name} imports {bad}"
