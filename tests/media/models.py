"""The packaged ONNX models for tests (the ``vad`` / ``turn`` extras): skip with one line on a machine
without them, fail in CI, which installs both (``.ci/run``)."""

from __future__ import annotations

from typing import Any

from ivr.media.models import ModelUnavailable

from ..services import unavailable


def silero_model() -> Any:
    from ivr.media.silero import SileroModel

    try:
        return SileroModel()
    except ModelUnavailable as e:
        unavailable(f"Silero VAD model ({e})", "pip install -e '.[vad]'")


def smart_turn_model() -> Any:
    from ivr.media.smart_turn import SmartTurnModel

    try:
        return SmartTurnModel()
    except ModelUnavailable as e:
        unavailable(f"Smart Turn model ({e})", "pip install -e '.[turn]'")
