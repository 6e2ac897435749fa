"""Which voice activity detector a process runs: Silero when its extra is installed, energy otherwise.

One ``VadChoice`` per process, made at startup (it loads the model then, never during a call) and
logging one INFO line that says which VAD runs and why. ``new(rate)`` gives each call its detector;
with ``batched=True`` every Silero detector shares one ``VadBatcher`` thread (``close()`` at shutdown).
"""

from __future__ import annotations

import logging
from typing import Literal

from ivr.media.models import ModelUnavailable, onnxruntime_version
from ivr.media.silero import SileroModel, SileroSettings, SileroVad, VadBatcher
from ivr.media.vad import EnergyVad, FrameVad, VadSettings

log = logging.getLogger(__name__)

VadKind = Literal["auto", "silero", "energy"]


class VadChoice:
    """Picks and builds the process's VAD; ``kind`` is what actually runs ("silero" or "energy")."""

    def __init__(self, prefer: VadKind = "auto", *, batched: bool = True, threads: int = 1) -> None:
        self.model: SileroModel | None = None
        self.batcher: VadBatcher | None = None
        self.reason = ""
        if prefer != "energy":
            try:
                self.model = SileroModel(threads=threads)
            except ModelUnavailable as e:
                if prefer == "silero":
                    raise
                self.reason = str(e)
        else:
            self.reason = "energy VAD asked for"
        if self.model is not None:
            mode = "batched on a worker thread" if batched else "inline"
            log.info(
                "voice activity detection: silero (%s, onnxruntime %s), %s",
                self.model.source,
                onnxruntime_version(),
                mode,
            )
            if batched:
                self.batcher = VadBatcher(self.model)
                self.batcher.start()
        else:
            log.info("voice activity detection: energy (%s)", self.reason)

    @property
    def kind(self) -> str:
        return "silero" if self.model is not None else "energy"

    def new(self, rate: int, settings: VadSettings | None = None) -> FrameVad:
        """A detector for one call at ``rate`` (any slin rate)."""
        if self.model is None:
            return EnergyVad(rate, settings)
        energy = settings or VadSettings()
        return SileroVad(rate, self.model, SileroSettings(energy=energy), batcher=self.batcher)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
