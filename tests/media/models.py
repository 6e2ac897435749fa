"""Skip helpers for tests that need the packaged ONNX models (the ``vad`` / ``turn`` extras; CI has both)."""

from __future__ import annotations

import pytest

from ivr.media.models import ModelUnavailable


def silero_model():  # type: ignore[no-untyped-def]
    from ivr.media.silero import SileroModel

    try:
        return SileroModel()
    except ModelUnavailable as e:
        pytest.skip(f"the 'vad' extra is not installed ({e})")


def smart_turn_model():  # type: ignore[no-untyped-def]
    from ivr.media.smart_turn import SmartTurnModel

    try:
        return SmartTurnModel()
    except ModelUnavailable as e:
        pytest.skip(f"the 'turn' extra is not installed ({e})")
