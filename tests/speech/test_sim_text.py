"""The sim-text engines' words-in-audio survive what a call does to them, and decoding looks only where
the marker can start (it runs on the loop that paces every call: no scan of every window)."""

from __future__ import annotations

import numpy as np

from ivr.speech.simulated import _MAGIC, decode_text_speech, encode_text_speech


def test_every_text_is_found_among_near_misses_of_the_marker() -> None:
    first = encode_text_speech("hello from the benchmark caller", 16000, min_ms=620)
    second = encode_text_speech("press one", 16000)
    near = np.zeros(400, dtype="<i2")
    near[10 : 10 + 5] = _MAGIC[:5]  # the marker's first five samples, not its sixth
    near[100] = _MAGIC[0]  # and its first sample alone
    pcm = first + near.tobytes() + second + _MAGIC.tobytes()[:-2]  # a marker cut by the end of the audio
    assert decode_text_speech(pcm) == ["hello from the benchmark caller", "press one"]
    assert decode_text_speech(pcm[1:]) == [], "odd byte offset: not this engine's audio"
    assert decode_text_speech(b"") == []
