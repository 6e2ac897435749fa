"""ivr.ari stays a leaf: it must not import the call, flow, media or speech layers (nor the simulator)."""

from __future__ import annotations

from pathlib import Path

import ivr.ari
import ivr.sim

from ..layering import imported_modules

FORBIDDEN_FOR_ARI = ("ivr.flow", "ivr.call", "ivr.media", "ivr.speech", "ivr.sim", "ivr.audiosocket")
# The simulator plays Asterisk and the caller: protocol-level pieces plus the simulation speech codec.
ALLOWED_FOR_SIM = (
    "ivr.sim",
    "ivr.ari.models",
    "ivr.audiosocket",
    "ivr.media",
    "ivr.speech.simulated",
    "ivr.transport",
    "ivr.websocket.protocol",
)


def _imports(package: object) -> dict[str, set[str]]:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    return {path.name: imported_modules(path) for path in root.glob("*.py")}


def test_ari_imports_no_higher_layer() -> None:
    for module, names in _imports(ivr.ari).items():
        bad = {n for n in names if n.startswith(FORBIDDEN_FOR_ARI)}
        assert not bad, f"ivr/ari/{module} imports {bad}"


def test_sim_imports_only_protocol_level_layers() -> None:
    for module, names in _imports(ivr.sim).items():
        ours = {n for n in names if n == "ivr" or n.startswith("ivr.")}
        bad = {n for n in ours if not n.startswith(ALLOWED_FOR_SIM)}
        assert not bad, f"ivr/sim/{module} imports {bad}"
