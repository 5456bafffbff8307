"""Honest scope: the model card and the edge-demo banner say which words the
model knows; narrowband input gets a warning; the banner says "resampled from
X to Y Hz"."""

from __future__ import annotations

import io

import numpy as np
import pytest

from demo import cli
from edge.data.corpus import VOCABULARY
from runtime_py.audio import is_narrowband, read_wav, resample, write_wav
from runtime_py.decoding import word_vocabulary
from tests.bundle_fixtures import cached_bundle

from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "edge" / "checkpoints" / "samples"
SAMPLE = SAMPLES / "one_two_three.wav"


def _demo(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_word_vocabulary_only_for_whole_word_tokens():
    assert word_vocabulary(["<blk>", "\u2581yes", "\u2581no"]) == ["yes", "no"]
    assert word_vocabulary(["<blk>", "\u2581he", "llo"]) is None  # sub-words spell anything


def test_model_card_lists_the_46_words():
    bundle, _ = cached_bundle("lstm")
    card = (bundle / "README.md").read_text()
    assert len(VOCABULARY) == 46
    assert "**46 words and nothing else:**" in card
    assert all(f"`{w}`" in card for w in VOCABULARY)
    assert "not dictation" in card and "narrowband" in card


def test_demo_banner_names_the_vocabulary_and_the_resampling(tmp_path):
    bundle, _ = cached_bundle("lstm")
    x, rate = read_wav(SAMPLE)
    wav = tmp_path / "22k.wav"
    write_wav(wav, resample(x, rate, 22050), 22050)
    code, _, err = _demo([str(bundle), "--wav", str(wav)])
    assert code == 0, err
    assert "(resampled from 22050 to 16000 Hz)" in err and "at 22050 Hz" not in err
    assert "knows 46 words and nothing else" in err and " ".join(VOCABULARY) in err
    assert "narrowband" not in err


@pytest.mark.parametrize("rate", [8000, 16000])
def test_narrowband_input_is_warned_about(rate, tmp_path):
    """8 kHz audio, as a file at 8 kHz or resampled up into a 16 kHz file."""
    bundle, _ = cached_bundle("lstm")
    x, r = read_wav(SAMPLE)
    narrow = resample(x, r, 8000)
    wav = tmp_path / "narrow.wav"
    write_wav(wav, narrow if rate == 8000 else resample(narrow, 8000, r), rate)
    code, _, err = _demo([str(bundle), "--wav", str(wav)])
    assert code == 0, err
    warning, = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert "narrowband" in warning and "trained on 16 kHz" in warning


def test_narrowband_detection_on_the_shipped_samples():
    for path in sorted(SAMPLES.glob("*.wav")):
        x, r = read_wav(path)
        assert not is_narrowband(x, r), path
        assert is_narrowband(resample(resample(x, r, 8000), 8000, r), r), path
    assert not is_narrowband(np.zeros(16000, np.float32), 16000), "silence is not narrowband"
