"""edge-train smoke tests on a tiny generated corpus, and the shipped checkpoints."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.checkpoint import SHIPPED_DIR, load_checkpoint
from edge.data.corpus import read_wav16, tokens as corpus_tokens
from edge.evaluate import align_errors, evaluate, streaming_decode_fn
from edge.train import parse_args, train

FAMILIES = ("lstm", "conformer", "transducer")
TINY = {
    "lstm": '{"hidden": 48, "num_layers": 2, "chunk_frames": 8}',
    "conformer": '{"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "conv_kernel": 5, '
                 '"chunk_frames": 16, "left_context": 8}',
    "transducer": '{"hidden": 48, "num_layers": 2, "chunk_frames": 8, "joiner_dim": 32, "decoder_dim": 16}',
}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise the tiny corpus")
    from edge.data.corpus import generate

    out = tmp_path_factory.mktemp("corpus")
    generate(out, seed=0, n_train=6, n_valid=2, n_test=1, progress=False, workers=1)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_train_smoke(family, tiny_corpus, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / family / "model.pt"
    args = parse_args(["--family", family, "--corpus", str(tiny_corpus), "--out", str(out),
                       "--epochs", "12", "--batch-frames", "4000", "--lr", "3e-3", "--warmup", "1",
                       "--no-specaugment", "--threads", "1", "--workers", "1", "--valid-utts", "1",
                       "--feature-cache", str(tmp_path / "features"), "--config", TINY[family],
                       "--log-every", "1000"])
    result = train(args, log=lambda *a, **k: None)
    losses = result["losses"]
    assert len(losses) >= 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert (tmp_path / "features").is_dir()  # features were cached
    model, info = load_checkpoint(out, family)
    meta = info["meta"]
    assert meta["trained"] is True and meta["seed"] == 0
    assert meta["reproduce"].startswith(f"edge-train --family {family}")
    assert info["tokens"] == corpus_tokens()
    assert (out.parent / "tokens.txt").exists()
    # CMVN statistics came from the training features
    assert not torch.allclose(model.cmvn().mean, torch.zeros_like(model.cmvn().mean))


def test_align_errors_counts():
    assert align_errors("a b c".split(), "a x c d".split()) == {"sub": 1, "del": 0, "ins": 1}
    assert align_errors("a b c".split(), []) == {"sub": 0, "del": 3, "ins": 0}
    r = evaluate(lambda audio: "one two", [{"audio": np.zeros(10, np.float32), "text": "one three two"}])
    assert (r["errors"], r["words"], r["del"]) == (1, 3, 1)
    assert r["wer"] == pytest.approx(100 / 3)


# -- shipped checkpoints -----------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_checkpoint_loads_and_is_trained(family):
    path = SHIPPED_DIR / family / "model.pt"
    assert path.exists(), f"{path} is missing; train it with edge-train (docs/accuracy.md)"
    assert path.stat().st_size < 8.5e6
    assert zipfile.is_zipfile(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no code in a shipped checkpoint
    assert all(v.dtype in (torch.float32, torch.int64) for v in raw["state_dict"].values())
    model, info = load_checkpoint(path, family)
    meta = info["meta"]
    assert meta["trained"] is True
    for key in ("reproduce", "training_minutes", "seed", "corpus", "best_valid_wer"):
        assert key in meta, key
    assert meta["reproduce"].startswith("edge-train ")
    assert info["tokens"] == corpus_tokens()
    lines = (SHIPPED_DIR / family / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert [ln.rsplit(" ", 1)[0] for ln in lines] == corpus_tokens()


def test_shipped_conformer_transcribes_sample():
    torch.set_num_threads(1)
    model, info = load_checkpoint(SHIPPED_DIR / "conformer" / "model.pt", "conformer")
    audio, rate = read_wav16(SHIPPED_DIR / "samples" / "one_two_three.wav")
    assert rate == 16000
    assert streaming_decode_fn(model, info["tokens"])(audio) == "one two three"


def test_samples_are_small_16k_wavs():
    samples = SHIPPED_DIR / "samples"
    wavs = sorted(samples.glob("*.wav"))
    assert 4 <= len(wavs) <= 5 and (samples / "README.md").exists()
    assert sum(p.stat().st_size for p in wavs) < 400_000
    readme = (samples / "README.md").read_text()
    for p in wavs:
        _, rate = read_wav16(p)
        assert rate == 16000
        assert p.name in readme
