"""Training features: the device frontend over every utterance of a split,
computed once and cached; their CMVN statistics; transcripts as token ids.

Features are `runtime_py.frontend.compute_features` (the device frontend) of
each utterance followed by the client's tail padding (0.3 s of zeros),
computed once (multiprocessing) and cached as float16 in
`<corpus>/../features/<corpus name>-<split>.npz` (`...-<split>-<hash>.npz` for
a frontend other than the default one)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from runtime_py.frontend import compute_features
from runtime_py.recognizer import TAIL_PADDING_S

from ..data.corpus import load_split, read_wav16, worker_pool

CACHE_VERSION = 1
LOG_FLOOR = float(np.log(np.finfo(np.float32).eps))  # fbank value of digital silence


def _features_job(job):
    path, spec_dict = job
    from runtime_py.signature import FrontendSpec

    spec = FrontendSpec(**spec_dict)
    audio, _ = read_wav16(path)
    pad = np.zeros(int(round(TAIL_PADDING_S * spec.sample_rate)), dtype=np.float32)
    return compute_features(np.concatenate([audio, pad]), spec).astype(np.float16)


def _cache_key(corpus: Path, split: str, spec) -> str:
    meta = (corpus / "corpus.json").read_bytes() if (corpus / "corpus.json").exists() else b""
    rows = (corpus / f"{split}.jsonl").read_bytes()
    h = hashlib.sha256()
    for part in (str(CACHE_VERSION).encode(), json.dumps(dataclasses.asdict(spec), sort_keys=True).encode(),
                 str(TAIL_PADDING_S).encode(), meta, rows):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _frontend_suffix(spec) -> str:
    """"" for the default frontend (the families'); else a short hash of it, so that a model with
    another frontend (e.g. the Zipformer's) and its teacher each keep their own cache file."""
    from runtime_py.signature import FrontendSpec

    if spec == FrontendSpec():
        return ""
    return "-" + hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()).hexdigest()[:8]


def _with_rows(feats: np.ndarray, offsets: np.ndarray, rows: list[dict]) -> dict:
    return {"feats": feats, "offsets": offsets, "texts": [r["text"] for r in rows],
            "speakers": [r["speaker"] for r in rows], "paths": [r["path"] for r in rows]}


def _read_cache(cache: Path, key: str, rows: list[dict]) -> dict | None:
    if not cache.exists():
        return None
    with np.load(cache, allow_pickle=False) as z:
        if str(z["key"]) == key:
            return _with_rows(z["feats"], z["offsets"], rows)
    return None


def _compute_all(jobs: list, split: str, workers: int, log, t0: float) -> list[np.ndarray]:
    if not (workers > 1 and len(jobs) > 64):
        return [_features_job(j) for j in jobs]
    feats = []
    with worker_pool(workers) as pool:
        for i, f in enumerate(pool.imap(_features_job, jobs, chunksize=32)):
            feats.append(f)
            if (i + 1) % 2000 == 0:
                log(f"[features] {split}: {i + 1}/{len(jobs)} ({time.monotonic() - t0:.0f} s)")
    return feats


def load_features(corpus: Path | str, split: str, spec, cache_dir: Path | str | None = None,
                  workers: int = 2, log=print) -> dict:
    """Features of every utterance of a split, cached: {"feats": float16 [N, D]
    (all utterances concatenated), "offsets": [n+1], "texts", "speakers", "paths"}."""
    corpus = Path(corpus)
    cache_dir = Path(cache_dir) if cache_dir else corpus.parent / "features"
    rows = load_split(corpus, split)
    key = _cache_key(corpus, split, spec)
    cache = cache_dir / f"{corpus.name}-{split}{_frontend_suffix(spec)}.npz"
    cached = _read_cache(cache, key, rows)
    if cached is not None:
        return cached
    t0 = time.monotonic()
    jobs = [(str(corpus / r["path"]), dataclasses.asdict(spec)) for r in rows]
    feats = _compute_all(jobs, split, workers, log, t0)
    lengths = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    allf = np.concatenate(feats, axis=0) if feats else np.zeros((0, spec.feature_dim), np.float16)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, feats=allf, offsets=offsets, key=np.array(key))
    tmp.replace(cache)
    log(f"[features] {split}: {len(feats)} utterances, {len(allf)} frames in {time.monotonic() - t0:.0f} s "
        f"-> {cache}")
    return _with_rows(allf, offsets, rows)


def limit(data: dict, n: int) -> dict:
    """The first n utterances of a split's features."""
    return {**data, "offsets": data["offsets"][: n + 1], "texts": data["texts"][:n],
            "feats": data["feats"][: data["offsets"][n]]}


def feature_stats(feats: np.ndarray, block: int = 1 << 18,
                  skip_silence: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std in float64. skip_silence: leave out frames of
    digital silence (every bin at the log floor: the corpus's clean padding and
    the client's tail zeros, ~18% of frames). Counted in, they make the std ~3x
    larger and squeeze all speech into a third of the normalised range, which
    slows training markedly."""
    s = np.zeros(feats.shape[1]); s2 = np.zeros(feats.shape[1])
    n = 0
    for i in range(0, len(feats), block):
        x = feats[i: i + block].astype(np.float64)
        if skip_silence:
            x = x[x.max(axis=1) > LOG_FLOOR + 1.0]
        s += x.sum(0); s2 += (x * x).sum(0); n += len(x)
    n = max(n, 1)
    mean = s / n
    return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 1e-10))


def encode_text(text: str, tokens: list[str]) -> list[int]:
    index = {t: i for i, t in enumerate(tokens)}
    try:
        return [index["\u2581" + w] for w in text.split()]
    except KeyError as e:
        raise ValueError(f"word {e.args[0][1:]!r} of {text!r} is not in the token list") from None
