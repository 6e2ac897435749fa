"""The turn-taking models of one process: loaded once at startup, before the process says it is ready.

``TurnModels.load()`` picks the voice activity detector (Silero where the ``vad`` extra is installed, the
energy VAD otherwise: one INFO line says which) and the end-of-turn model (Smart Turn where the ``turn``
extra is installed: one INFO line), and runs each once so onnxruntime's first-run allocations happen here,
never on a live call. Every call then takes its detector from :meth:`TurnModels.vad_for` and runs its
end-of-turn checks on the model's own worker thread (:class:`ivr.media.smart_turn.TurnModelExecutor`).

Calls whose caller audio is not speech (the ``sim-text`` engines carry text in a square-wave carrier,
which a neural VAD rightly rejects) get the energy VAD and no end-of-turn model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ivr.media.models import ModelUnavailable
from ivr.media.silero import CONTEXT, STATE_SHAPE, WINDOW
from ivr.media.smart_turn import SmartTurnModel, TurnModelExecutor
from ivr.media.vad import EnergyVad, FrameVad
from ivr.media.vad_choice import VadChoice, VadKind

log = logging.getLogger("ivr.run")


@dataclass(slots=True)
class TurnModels:
    """What every call of the process shares for turn-taking; ``close()`` at shutdown."""

    vads: VadChoice
    turn: TurnModelExecutor | None
    """The end-of-turn model on its worker thread; None: silence alone ends turns."""

    @classmethod
    def load(cls, *, vad: VadKind = "auto", turn: bool = True, batched: bool = True) -> TurnModels:
        """Load (and warm) both models; blocking for ~0.1-0.5 s: call it in a thread at startup.

        ``batched=False`` scores Silero inline, deterministically (tests and benchmarks in virtual time).
        """
        vads = VadChoice(vad, batched=batched)
        executor: TurnModelExecutor | None = None
        if turn:
            try:
                model = SmartTurnModel()
            except ModelUnavailable as exc:
                log.info("end of turn: silence only (%s)", exc)
            else:
                executor = TurnModelExecutor(model)
                executor.warm()
                log.info("end of turn: Smart Turn (%s), checked at pauses on a worker thread", model.source)
        else:
            log.info("end of turn: silence only (the end-of-turn model is switched off)")
        if vads.model is not None:  # the VAD's first inference, too
            x = np.zeros((1, WINDOW[16000] + CONTEXT[16000]), dtype=np.float32)
            vads.model.infer(x, np.zeros(STATE_SHAPE, dtype=np.float32), 16000)
        return cls(vads, executor)

    @property
    def vad_kind(self) -> str:
        return self.vads.kind

    def vad_for(self, rate: int, *, speech_audio: bool = True) -> FrameVad:
        """A call's detector at ``rate``: the process's choice, or energy for audio that is not speech."""
        return self.vads.new(rate) if speech_audio else EnergyVad(rate)

    def close(self) -> None:
        self.vads.close()
        if self.turn is not None:
            self.turn.close()
            self.turn = None
