"""Every random choice of an utterance (words, speaker, rate, pitch, the
augmentation's seed) drawn from (seed, split, index) only, so the corpus is
the same whatever the number of worker processes."""

from __future__ import annotations

import numpy as np

from .vocabulary import VOCABULARY

SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}
MIN_WORDS, MAX_WORDS = 1, 6
RATE_WPM = (120, 220)
PITCH = (20, 80)
MAX_RESAMPLE_TRIES = 10000  # for held-out word sequences that occur in train


def _utterance_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def _draw_words(rng: np.random.Generator) -> str:
    n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
    return " ".join(VOCABULARY[i] for i in rng.integers(len(VOCABULARY), size=n))


def plan_utterance(seed: int, split: str, index: int, speakers: list[str],
                   forbidden: set[str] | frozenset = frozenset()) -> dict:
    """All random choices of one utterance, from (seed, split, index) only."""
    rng = _utterance_rng(seed, split, index)
    text = _draw_words(rng)
    tries = 0
    while text in forbidden:  # held-out sequences must be new to train
        tries += 1
        if tries > MAX_RESAMPLE_TRIES:
            raise RuntimeError(f"could not find a {split} word sequence absent from train")
        text = _draw_words(rng)
    return {
        "path": f"{split}/{index:06d}.wav",
        "text": text,
        "speaker": speakers[int(rng.integers(len(speakers)))],
        "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "aug_seed": int(rng.integers(2 ** 63 - 1)),
    }
