"""What edge ships beside its code, for the layers above to use by function
rather than by file path: the sample utterances (edge/checkpoints/samples)
and the tokens of the demo vocabulary the shipped models were trained on."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent / "checkpoints" / "samples"


def sample_wavs() -> list[Path]:
    """The shipped sample utterances (short WAVs from the synthetic corpus), sorted by name."""
    return sorted(SAMPLES_DIR.glob("*.wav"))


def demo_tokens() -> list[str]:
    """The demo vocabulary's tokens (0 is the blank): what a built-in family
    decodes into when its checkpoint carries no token list."""
    from .data.corpus import tokens  # the vocabulary is defined with the corpus that trains the demo models

    return tokens()
