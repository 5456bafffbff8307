"""The audio every column runs: about `seconds` of speech (the build's parity
stream: the shipped sample utterances with seeded gain and noise), cut to a
whole number of chunk shifts so RTF = compute / exactly that audio."""

from __future__ import annotations

import numpy as np


def workload(signature, seconds: float) -> tuple[np.ndarray, float]:
    """(float32 samples in [-1, 1], their seconds)."""
    from targets.golden import parity_audio

    fe = signature.frontend
    hop = signature.shift_frames * fe.frame_shift  # samples per encoder step
    n = max(2, int(round(seconds * fe.sample_rate / hop)))
    audio = np.ascontiguousarray(parity_audio(signature, n)[: n * hop], dtype=np.float32)
    return audio, len(audio) / fe.sample_rate
