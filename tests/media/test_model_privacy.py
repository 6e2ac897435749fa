"""The models run without calling out: onnxruntime's own telemetry (1.29 and later, Linux included) stays off
in every ivr process unless the operator turns it on."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from .models import silero_model

# what a serving process does with the models: import ivr, load the VAD, run it once
LOAD_AND_RUN = """
import numpy as np
import ivr
from ivr.media.silero import SileroModel
model = SileroModel()
probs, _ = model.infer(np.zeros((1, 576), np.float32), np.zeros((2, 1, 128), np.float32), 16000)
print(probs.shape)
"""

# onnxruntime keeps its telemetry off by itself where one of these says it runs on a CI runner (CI=true turns
# it off too): the children run without them, as on a server, or both tests would pass for the wrong reason
# on CI and the control below would fail there.
CI_MARKERS = {
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
}


def _run(home: Path, **env: str) -> Path:
    silero_model()  # skips (fails in CI) with one line where the VAD model is not installed
    base = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in CI_MARKERS}
    base.update({"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), **env})
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN],
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return home / ".cache" / "Microsoft"


def test_importing_ivr_turns_onnxruntime_telemetry_off(tmp_path: Path) -> None:
    trail = _run(tmp_path / "ivr")
    assert not trail.exists(), (
        f"onnxruntime wrote its telemetry state: {sorted(p.name for p in trail.rglob('*'))}"
    )


def test_an_operator_can_still_allow_it(tmp_path: Path) -> None:
    """The setting is a default: an explicit value wins. Where this onnxruntime has telemetry at all, the
    run that allows it leaves its trail, which shows the check above can see one."""
    trail = _run(tmp_path / "allowed", ORT_DISABLE_TELEMETRY="0")
    version = tuple(int(x) for x in importlib.metadata.version("onnxruntime").split(".")[:2])
    if version >= (1, 29):
        assert trail.exists(), "onnxruntime >= 1.29 left no telemetry state with ORT_DISABLE_TELEMETRY=0"
