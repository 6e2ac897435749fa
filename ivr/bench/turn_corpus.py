"""The turn corpus: caller answers spoken by the offline piper voice, made to sound like a phone line.

Each item is one question of an IVR: the prompt we play, then (or over it) what the caller says, at
8 kHz through a telephone band (300-3400 Hz), with line noise, and the prompt's own echo on the line
(carriers cancel none). The echo is not baked in: each item stores the prompt and the caller's side
(voice + noise) apart, with the echo's delay and loss, and the harness mixes the echo of what it actually
plays, so a prompt stopped by a barge-in stops echoing. Kinds:

- ``complete``: a plain answer ("Large.", "Thin crust, please.", "Yes.");
- ``number_pause``: digits read with a long pause inside ("four one one two, ... three three four four");
- ``uhm``: a hesitation with a pause ("I'd like, uhm, ... a medium");
- ``backchannel``: "mm-hm" / "okay" over the prompt, then silence (nothing to answer);
- ``echo_only``: the prompt's echo alone, louder or later than usual (nothing to answer);
- ``noise_only``: a burst of loud line noise after the prompt (a door, a rustle: nothing to answer).

The pauses are put *inside* one synthesised sentence (the silence piper leaves at a comma is stretched),
so the words before a pause keep the rising, unfinished prosody a caller's would have; two sentences
glued together would each sound finished. Every utterance is synthesised with a fixed seed
(``piper_reproducible``), so every build of the corpus is the same. Generated once into a cache directory
(WAV + a manifest, ~10 MB) and reused: nothing here is committed. Needs the ``offline`` extra (piper).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ivr.media.wav import read_wav, write_wav

RATE: Final = 8000
VERSION: Final = 5
"""4: piper seeded per utterance (earlier builds differed from each other); 5: digit items carry the
capture's ``min_length``."""
LEAD_MS: Final = 500
"""The prompt starts this long after the item does."""
Samples = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Spec:
    """One corpus item before rendering."""

    name: str
    kind: str
    prompt: str
    answer: str
    """What the caller says (piper text); empty for echo_only."""
    expect: str | None
    """Expected intent (choice name, digit string, "yes"/"no"), None when nothing should be taken."""
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    capture: str = "choice"
    """"choice", "digits" or "yes_no"."""
    pause_ms: int = 0
    pause_after: str = ","
    """Where the pause goes: after the first occurrence of this text in ``answer``."""
    echo_db: float = -15.0
    echo_delay_ms: int = 120
    snr_db: float = 25.0
    gap_ms: int = 500
    """Caller's reaction time after the prompt ends (negative: starts that long before it ends)."""
    burst_ms: int = 0
    """noise_only: length of the noise burst (at -24 dBFS) that starts ``gap_ms`` after the prompt."""
    seed: int = 0
    min_digits: int = 0
    """digits: the capture's ``min_length`` (a card number here has eight)."""


SIZES = {"small": ("small",), "medium": ("medium", "regular size"), "large": ("large", "big one")}
CRUSTS = {
    "thin": ("thin crust", "thin"),
    "classic": ("classic", "regular crust"),
    "stuffed": ("stuffed crust",),
}
MENU = {
    "balance": ("balance", "check my balance"),
    "transfer": ("transfer", "send money"),
    "lost_card": ("lost card", "stolen card"),
    "agent": ("agent", "a real person"),
}
Q_SIZE = "What size would you like: small, medium or large?"
Q_CRUST = "Which crust: thin, classic or stuffed?"
Q_MENU = "You can say balance, transfer, lost card, or agent. What would you like to do?"
Q_CARD = "Please say your card number."
Q_CONFIRM = "You ordered a large pizza. Is that right?"


def specs() -> list[Spec]:
    """The corpus definition (deterministic)."""
    out: list[Spec] = []
    n = 0

    def add(**kw: Any) -> None:
        nonlocal n
        n += 1
        kw.setdefault("seed", n)
        out.append(Spec(name=f"{n:02d}-{kw['kind']}", **kw))

    for answer, expect, echo, delay, snr in [
        ("Large.", "large", -15.0, 120, 25.0),
        ("Small, please.", "small", -20.0, 60, 30.0),
        ("Medium.", "medium", -12.0, 200, 20.0),
        ("A large one.", "large", -18.0, 90, 25.0),
        ("Small.", "small", -14.0, 150, 22.0),
        ("I'll have a medium.", "medium", -16.0, 100, 28.0),
    ]:
        add(
            kind="complete",
            prompt=Q_SIZE,
            answer=answer,
            expect=expect,
            choices=SIZES,
            echo_db=echo,
            echo_delay_ms=delay,
            snr_db=snr,
        )
    for answer, expect, echo, delay in [
        ("Thin crust.", "thin", -15.0, 80),
        ("Thin.", "thin", -18.0, 140),
        ("Stuffed crust, please.", "stuffed", -12.0, 100),
        ("Classic.", "classic", -20.0, 60),
    ]:
        add(
            kind="complete",
            prompt=Q_CRUST,
            answer=answer,
            expect=expect,
            choices=CRUSTS,
            echo_db=echo,
            echo_delay_ms=delay,
        )
    for answer, expect, echo in [
        ("I want to check my balance.", "balance", -15.0),
        ("Transfer.", "transfer", -18.0),
        ("I lost my card.", "lost_card", -13.0),
        ("Agent.", "agent", -16.0),
    ]:
        add(kind="complete", prompt=Q_MENU, answer=answer, expect=expect, choices=MENU, echo_db=echo)
    for answer, expect in [
        ("Yes.", "yes"),
        ("No.", "no"),
        ("Yes, that's right.", "yes"),
        ("No, it isn't.", "no"),
    ]:
        add(kind="complete", prompt=Q_CONFIRM, answer=answer, expect=expect, capture="yes_no")
    for answer, expect, pause in [
        ("Four one one two, three three four four.", "41123344", 900),
        ("Five five six six, seven seven eight eight.", "55667788", 1200),
        ("Two nine one three, four zero five five.", "29134055", 700),
        ("Six one two zero, eight eight three one.", "61208831", 1000),
    ]:
        add(
            kind="number_pause",
            prompt=Q_CARD,
            answer=answer,
            expect=expect,
            capture="digits",
            pause_ms=pause,
            min_digits=8,
        )
    for answer, expect, pause in [
        ("I'd like, uhm, a large.", "large", 900),
        ("Uhm, small.", "small", 800),
        ("Let me think, uhm, medium.", "medium", 1000),
    ]:
        add(
            kind="uhm",
            prompt=Q_SIZE,
            answer=answer,
            expect=expect,
            choices=SIZES,
            pause_ms=pause,
            pause_after="uhm,",
        )
    for answer, gap in [("Mm-hm.", -1800), ("Okay.", -1500), ("Yeah.", -2200)]:
        add(kind="backchannel", prompt=Q_MENU, answer=answer, expect=None, choices=MENU, gap_ms=gap)
    for echo, delay in [(-8.0, 60), (-10.0, 250), (-12.0, 40), (-6.0, 120)]:
        add(
            kind="echo_only",
            prompt=Q_MENU,
            answer="",
            expect=None,
            choices=MENU,
            echo_db=echo,
            echo_delay_ms=delay,
        )
    for burst in (400, 900):
        add(kind="noise_only", prompt=Q_SIZE, answer="", expect=None, choices=SIZES, burst_ms=burst)
    return out


@dataclass(slots=True)
class Item:
    """A rendered item: file names in the cache directory and the ground truth, in ms on the line."""

    spec: Spec
    caller: str
    """The caller's side without echo: voice (if any) and line noise, from time 0."""
    prompt: str
    """The prompt alone; it starts at ``LEAD_MS`` unless a barge-in pauses it."""
    prompt_end_ms: int
    speech_start_ms: int | None
    speech_end_ms: int | None
    pause_at_ms: int | None


def telephone_band(x: Samples, rate: int) -> Samples:
    """300-3400 Hz, as a G.711 line passes it (smooth FFT mask over the whole clip: offline only)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / rate)
    low = np.clip((f - 200) / 100, 0, 1)
    high = np.clip((3600 - f) / 200, 0, 1)
    out: Samples = np.fft.irfft(spec * low * high, n=x.size)
    return out


def _rms(x: Samples) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _active_rms(x: Samples, rate: int) -> float:
    n = rate // 50
    frames = x[: x.size // n * n].reshape(-1, n)
    levels = np.sqrt(np.mean(frames * frames, axis=1))
    loud = levels[levels > levels.max() * 0.05] if levels.size else levels
    return float(np.sqrt(np.mean(loud * loud))) if loud.size else 0.0


def _trim(x: Samples) -> Samples:
    loud = np.nonzero(np.abs(x) > 200)[0]
    return x[loud[0] : loud[-1] + 1] if loud.size else x[:0]


def _stretch_pause(x: Samples, rate: int, pause_ms: int, search_from: float) -> tuple[Samples, int]:
    """Widen the quietest stretch after ``search_from`` (fraction of the clip) to ``pause_ms``."""
    n = rate // 100
    env = np.array([_rms(x[i : i + n]) for i in range(0, x.size - n, n)])
    start = int(len(env) * search_from)
    quiet = env < env.max() * 0.03
    best, best_len, i = None, 0, start
    while i < len(env):
        if quiet[i]:
            j = i
            while j < len(env) and quiet[j]:
                j += 1
            if j - i > best_len and j < len(env) - 3:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best is None:
        best, best_len = start, 0
    cut = (best + best_len // 2) * n
    return np.concatenate([x[:cut], np.zeros(rate * pause_ms // 1000), x[cut:]]), cut


async def _say(text: str, seed: int) -> Samples:
    """piper's voice, reproducibly: the same text and seed give the same samples in every build (piper
    alone draws new prosody noise each time, and a rebuilt corpus moved the benchmark's figures)."""
    from ivr.speech.offline import piper_reproducible

    pcm = await asyncio.to_thread(piper_reproducible, text, rate=RATE, seed=seed)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


async def _render(spec: Spec, prompts: dict[str, Samples]) -> tuple[Samples, Samples, dict[str, int | None]]:
    rate = RATE
    prompt = prompts.get(spec.prompt)
    if prompt is None:
        seed = zlib.crc32(spec.prompt.encode())
        prompt = prompts[spec.prompt] = telephone_band(_trim(await _say(spec.prompt, seed)), rate)
    rng = np.random.default_rng(spec.seed)
    lead = rate * LEAD_MS // 1000
    played_end = lead + prompt.size
    caller = np.zeros(0)
    pause_at: int | None = None
    if spec.answer:
        caller = _trim(await _say(spec.answer, spec.seed))
        if spec.pause_ms:
            at = spec.answer.find(spec.pause_after)
            frac = max(0.1, (at + len(spec.pause_after)) / len(spec.answer) - 0.15) if at >= 0 else 0.4
            caller, cut = _stretch_pause(caller, rate, spec.pause_ms, frac)
            pause_at = cut
        caller = telephone_band(caller, rate)
        caller *= (32768 * 10 ** (-22 / 20)) / max(_active_rms(caller, rate), 1.0)  # -22 dBFS active level
    start = played_end + rate * spec.gap_ms // 1000
    total = max(played_end, start + caller.size) + rate * 3
    line = np.zeros(total)
    if caller.size:
        line[start : start + caller.size] += caller
    if spec.burst_ms:
        burst = rng.normal(0, 32768 * 10 ** (-24 / 20), rate * spec.burst_ms // 1000)
        line[start : start + burst.size] += burst * np.hanning(burst.size) ** 0.2
    level = 32768 * 10 ** (-22 / 20)
    line += telephone_band(rng.normal(0, level * 10 ** (-spec.snr_db / 20), total), rate)
    ms = 1000 / rate
    truth: dict[str, int | None] = {
        "prompt_end_ms": round(played_end * ms),
        "speech_start_ms": round(start * ms) if caller.size else None,
        "speech_end_ms": round((start + caller.size) * ms) if caller.size else None,
        "pause_at_ms": round((start + pause_at) * ms) if pause_at is not None else None,
    }
    return prompt, line, truth


def _pcm(x: Samples) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def build(cache: Path, *, force: bool = False) -> list[Item]:
    """Render the corpus into ``cache`` (or reuse it) and return its items (~15 s on 2 cores)."""
    manifest = cache / "manifest.json"
    if not force and manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if data.get("version") == VERSION and len(data.get("items", [])) == len(specs()):
            return [_item(d) for d in data["items"]]
    cache.mkdir(parents=True, exist_ok=True)
    items = asyncio.run(_build_all(cache))
    manifest.write_text(
        json.dumps({"version": VERSION, "rate": RATE, "items": [_dump(i) for i in items]}, indent=1),
        encoding="utf-8",
    )
    return items


async def _build_all(cache: Path) -> list[Item]:
    prompts: dict[str, Samples] = {}
    items = []
    for spec in specs():
        prompt, line, truth = await _render(spec, prompts)
        write_wav(cache / f"{spec.name}.caller.wav", _pcm(line), RATE)
        write_wav(cache / f"{spec.name}.prompt.wav", _pcm(prompt), RATE)
        items.append(Item(spec, f"{spec.name}.caller.wav", f"{spec.name}.prompt.wav", **truth))  # type: ignore[arg-type]
    return items


def _dump(item: Item) -> dict[str, Any]:
    d = asdict(item)
    d["spec"]["choices"] = {k: list(v) for k, v in item.spec.choices.items()}
    return d


def _item(d: dict[str, Any]) -> Item:
    spec = dict(d["spec"])
    spec["choices"] = {k: tuple(v) for k, v in spec["choices"].items()}
    return Item(**{**d, "spec": Spec(**spec)})


def load_pcm(cache: Path, name: str) -> bytes:
    return read_wav(cache / name, rate=RATE, channels=1).pcm
