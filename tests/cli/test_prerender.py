from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main
from ivr.cli.prerender_commands import fixed_prompts
from ivr.flow.loader import load_library

FLOWS = Path(__file__).parents[2] / "flows"
MENU = Path(__file__).parents[1] / "call" / "data" / "menu.yaml"


def test_fixed_prompts_skip_templates() -> None:
    library = load_library(FLOWS / "bank.yaml")
    texts = [t for flow in library.flows.values() for t in fixed_prompts(flow)]
    assert texts
    assert not [t for t in texts if "{{" in t]


def test_prerender_fills_the_cache_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVR_TTS", "sim-text")
    cache = tmp_path / "cache"
    assert main(["prerender", str(MENU), "--cache", str(cache), "--rates", "8000"]) == 0
    first = capsys.readouterr().err
    count = len(fixed_prompts(load_library(MENU).main))
    assert f"{count} prompts rendered, 0 already cached" in first
    assert len([p for p in cache.rglob("*") if p.is_file()]) == count
    assert main(["prerender", str(MENU), "--cache", str(cache), "--rates", "8000"]) == 0
    assert f"0 prompts rendered, {count} already cached" in capsys.readouterr().err
