"""Synthetic espeak-ng corpus: determinism, held-out splits, audio sanity, tokens."""
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from edge.data import corpus

HAVE_TOOLS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
needs_tools = pytest.mark.skipif(
    not HAVE_TOOLS, reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")

SIZES = dict(n_train=20, n_valid=4, n_test=4)


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    if not HAVE_TOOLS:
        pytest.skip("espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
    dirs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        dirs[name] = tmp_path_factory.mktemp(f"corpus_{name}")
        corpus.generate(dirs[name], seed=seed, progress=False, **SIZES)
    return dirs


# ---------------------------------------------------------------- no espeak needed

def test_vocabulary_is_unique_lowercase_words():
    assert len(set(corpus.VOCABULARY)) == len(corpus.VOCABULARY) >= 40
    assert all(w.isalpha() and w == w.lower() for w in corpus.VOCABULARY)
    assert set(corpus.DIGITS) <= set(corpus.VOCABULARY) and "oh" in corpus.VOCABULARY


def test_tokens_file_format(tmp_path):
    path = corpus.write_tokens(tmp_path / "tokens.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.rsplit(" ", 1) for line in lines]
    assert [int(i) for _, i in pairs] == list(range(len(lines)))  # ids contiguous from 0
    assert pairs[0][0] == "<blk>"
    symbols = [s for s, _ in pairs]
    assert symbols == corpus.tokens()
    assert symbols[1:] == ["\u2581" + w for w in corpus.VOCABULARY]
    # sherpa-onnx style joining: concatenate, "▁" -> " ", strip.
    assert "".join(symbols[2:5]).replace("\u2581", " ").strip() == "one two three"


def test_speaker_split_is_disjoint_and_holds_out_variants():
    sp = corpus.speaker_split()
    sets = {s: set(v) for s, v in sp.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"]
                or sets["valid"] & sets["test"])
    variants = {s: {x.split("+")[1] for x in v if "+" in x} for s, v in sp.items()}
    assert not (variants["train"] & variants["test"] or variants["train"] & variants["valid"])
    assert len(sets["test"]) >= 8 and len(sets["valid"]) >= 8
    # Every accent is seen in train, and held-out speakers cover all accents.
    for s in corpus.SPLITS:
        assert {x.split("+")[0] for x in sp[s]} == set(corpus.ACCENTS)
    assert corpus.speaker_split() == sp  # fixed, not dependent on anything else


def test_missing_espeak_gives_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        corpus.synthesize("one two three", "en-us")


def test_load_split_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        corpus.load_split(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="python -m edge.data.corpus"):
        corpus.load_split(tmp_path, "train")


# ---------------------------------------------------------------- needs espeak-ng + sox

@needs_tools
def test_synthesize_standalone():
    clean = corpus.synthesize("one two three", "en-us", rate=160, pitch=50)
    assert clean.dtype == np.float32 and clean.ndim == 1
    assert 0.6 < len(clean) / corpus.SAMPLE_RATE < 3.0
    assert np.sqrt(np.mean(clean ** 2)) > 0.01
    a = corpus.synthesize("one two three", "en-gb+f3", 180, 40, seed=7)
    b = corpus.synthesize("one two three", "en-gb+f3", 180, 40, seed=7)
    c = corpus.synthesize("one two three", "en-gb+f3", 180, 40, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.max(np.abs(a)) <= 1.0


@needs_tools
def test_same_seed_identical_bytes_different_seed_differs(corpora):
    a, b, c = (_all_files(corpora[k]) for k in "abc")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert a.keys() == c.keys()
    wavs = [k for k in a if k.endswith(".wav")]
    assert len(wavs) == sum(SIZES.values())
    assert sum(a[k] != c[k] for k in wavs) >= len(wavs) // 2
    assert a["train.jsonl"] != c["train.jsonl"]


@needs_tools
def test_outputs_have_no_absolute_paths_or_timestamps(corpora):
    meta = json.loads((corpora["a"] / "corpus.json").read_text())
    assert meta["seed"] == 0 and meta["counts"] == {"train": 20, "valid": 4, "test": 4}
    assert meta["vocabulary"] == list(corpus.VOCABULARY)
    text = "".join((corpora["a"] / f).read_text() for f in ("corpus.json", "train.jsonl"))
    assert str(corpora["a"]) not in text and "/tmp" not in text


@needs_tools
def test_split_speakers_and_texts_held_out(corpora):
    rows = {s: corpus.load_split(corpora["a"], s) for s in corpus.SPLITS}
    assert [len(rows[s]) for s in corpus.SPLITS] == [20, 4, 4]
    speakers = {s: {r["speaker"] for r in rows[s]} for s in corpus.SPLITS}
    split = corpus.speaker_split()
    for s in corpus.SPLITS:
        assert speakers[s] <= set(split[s])
    assert not (speakers["train"] & speakers["valid"] or speakers["train"] & speakers["test"])
    train_texts = {r["text"] for r in rows["train"]}
    for s in ("valid", "test"):
        assert not train_texts & {r["text"] for r in rows[s]}
    for r in rows["train"] + rows["valid"] + rows["test"]:
        words = r["text"].split()
        assert 1 <= len(words) <= 6 and set(words) <= set(corpus.VOCABULARY)


@needs_tools
def test_heldout_resampling_with_dense_train():
    # With a train set holding every 1-word text, held-out texts must avoid them all.
    forbidden = frozenset(corpus.VOCABULARY)
    for i in range(200):
        p = corpus.plan_utterance(0, "test", i, ["en-us+m1"], forbidden)
        assert p["text"] not in forbidden


@needs_tools
def test_audio_format_and_content(corpora):
    for s in corpus.SPLITS:
        for r in corpus.load_split(corpora["a"], s):
            path = corpora["a"] / r["path"]
            with wave.open(str(path)) as w:
                assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            x, rate = corpus.read_wav16(path)
            assert rate == 16000
            assert abs(len(x) / rate - r["seconds"]) < 1e-3
            n_words = len(r["text"].split())
            # >= 0.2 s of padding plus some speech; short words at 220 wpm, long ones at 120.
            assert 0.2 + 0.12 * n_words < r["seconds"] < 1.3 + 0.9 * n_words
            assert -1.0 <= x.min() and x.max() < 1.0
            mid = x[len(x) // 4: 3 * len(x) // 4]
            assert np.sqrt(np.mean(mid ** 2)) > 1e-3, f"{r['path']} is silent in the middle"


@needs_tools
def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        corpus.generate(tmp_path, n_train=1, n_valid=1, n_test=1, progress=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_worker_pool_does_not_inherit_parent_state():
    """CI once hung for 88 min in a corpus pool forked from the test process (whose
    threads and raising SIGTERM handler the children copied). Workers must start clean."""
    import signal
    from edge.data.corpus import worker_pool

    def raising(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, raising)
    try:
        with worker_pool(2) as pool:
            handlers = pool.map(signal.getsignal, [signal.SIGTERM] * 2)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert all(h == signal.SIG_DFL for h in handlers)


@needs_tools
def test_only_one_split_renders_the_full_corpus_utterances(corpora, tmp_path):
    """--only test plans every split (test texts are held out from the whole train
    plan) and renders test alone: the same files as the full corpus's test split."""
    corpus.generate(tmp_path, seed=0, progress=False, only=["test"], **SIZES)
    full, alone = _all_files(corpora["a"]), _all_files(tmp_path)
    tests = {k for k in full if k.startswith("test") and k.endswith((".wav", ".jsonl"))}
    assert len(tests) == SIZES["n_test"] + 1
    assert all(alone[k] == full[k] for k in tests)
    assert not any(k.startswith(("train", "valid")) and k.endswith(".wav") for k in alone)
