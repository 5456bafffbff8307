"""Writing a corpus: plan every utterance, render them in worker processes,
write the split lists, tokens.txt and corpus.json (no timestamps or absolute
paths); and reading a split back."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
import time
from pathlib import Path

from . import plan as P
from . import synthesis as S
from .plan import plan_utterance
from .speakers import SPEAKER_SPLIT_SEED, SPLITS, speaker_split
from .synthesis import check_tools, check_voices, synthesize
from .vocabulary import SAMPLE_RATE, VOCABULARY, write_tokens
from .wavio import write_wav16

DEFAULT_COUNTS = {"train": 15000, "valid": 500, "test": 500}  # ~2.5-4 min on 2 cores
PROGRESS_EVERY = 500
WORKERS = 2


def worker_pool(workers: int):
    """A process pool for CPU-bound preprocessing.

    Workers are spawned, never forked: a fork copies a parent that may be running
    threads (torch, ONNX Runtime and TensorFlow pools in a test run or a notebook)
    with their locks held, and such a child can block forever; it also inherits
    the parent's signal handlers, so Pool.terminate()'s SIGTERM may not stop it.
    Either way the pool hangs. A spawned worker starts a clean interpreter.
    """
    return multiprocessing.get_context("spawn").Pool(workers)


def _render(job: tuple[str, dict]) -> float:
    """Worker: synthesise one planned utterance, write it, return its seconds."""
    out_dir, plan = job
    audio = synthesize(plan["text"], plan["speaker"], plan["rate"], plan["pitch"],
                       seed=plan["aug_seed"])
    write_wav16(Path(out_dir) / plan["path"], audio)
    return round(len(audio) / SAMPLE_RATE, 4)


def _prepare_out_dir(out: Path) -> None:
    """Clear a previous corpus (so no stale WAVs survive) but never foreign files."""
    if out.exists() and any(out.iterdir()):
        if not (out / "corpus.json").exists():
            raise FileExistsError(f"{out} is not empty and holds no corpus.json; "
                                  "refusing to write a corpus into it")
        for s in SPLITS:
            shutil.rmtree(out / s, ignore_errors=True)
            (out / f"{s}.jsonl").unlink(missing_ok=True)
        (out / "tokens.txt").unlink(missing_ok=True)
        (out / "corpus.json").unlink()
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)


def _fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def plan_corpus(seed: int, counts: dict, speakers: dict) -> dict[str, list[dict]]:
    """Every utterance's plan, per split. Train is planned first (cheap, single
    process) so held-out texts can be checked against the complete train set."""
    plans = {"train": [plan_utterance(seed, "train", i, speakers["train"]) for i in range(counts["train"])]}
    train_texts = frozenset(p["text"] for p in plans["train"])
    for s in ("valid", "test"):
        plans[s] = [plan_utterance(seed, s, i, speakers[s], train_texts) for i in range(counts[s])]
    return plans


class _Progress:
    """The `[corpus] n/total` line every PROGRESS_EVERY utterances (stderr)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self.t0 = total, enabled, 0, time.monotonic()

    def tick(self, split: str) -> None:
        self.done += 1
        if self.enabled and (self.done % PROGRESS_EVERY == 0 or self.done == self.total):
            dt = time.monotonic() - self.t0
            rate = self.done / max(dt, 1e-9)
            print(f"[corpus] {self.done}/{self.total} utterances ({split})  {rate:.1f} utt/s  "
                  f"elapsed {_fmt_s(dt)}  ETA {_fmt_s((self.total - self.done) / rate)}",
                  file=sys.stderr, flush=True)


def _render_split(pool, out: Path, split: str, plans: list[dict], progress: _Progress) -> list[dict]:
    """Render a split's utterances and write `<split>.jsonl`; returns its rows."""
    jobs = [(str(out), p) for p in plans]
    rows = []
    for p, seconds in zip(plans, pool.imap(_render, jobs, chunksize=8)):
        rows.append({"path": p["path"], "text": p["text"], "speaker": p["speaker"], "seconds": seconds})
        progress.tick(split)
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows


def _split_stats(rows: list[dict], speakers: list[str]) -> dict:
    return {
        "utterances": len(rows),
        "hours": round(sum(r["seconds"] for r in rows) / 3600.0, 4),
        "speakers_in_split": len(speakers),
        "speakers_used": len({r["speaker"] for r in rows}),
    }


def corpus_meta(seed: int, counts: dict, stats: dict, speakers: dict) -> dict:
    """corpus.json: everything that determines the corpus, and its size."""
    return {
        "seed": seed,
        "counts": counts,
        "sample_rate": SAMPLE_RATE,
        "vocabulary": list(VOCABULARY),
        "tokens": "tokens.txt",
        "speaker_split_seed": SPEAKER_SPLIT_SEED,
        "heldout": "valid/test speakers use espeak-ng variants absent from train; "
                   "valid/test word sequences are absent from train",
        "synthesis": {
            "words": [P.MIN_WORDS, P.MAX_WORDS], "rate_wpm": list(P.RATE_WPM), "pitch": list(P.PITCH),
            "amplitude": S.AMPLITUDE, "peak_norm": S.PEAK_NORM, "gain_db": list(S.GAIN_DB),
            "silence_s": list(S.SILENCE_S), "clean_prob": S.CLEAN_PROB,
            "noise_kinds": list(S.NOISE_KINDS), "snr_db": list(S.SNR_DB),
        },
        "stats": stats,
        "speakers": speakers,
    }


def generate(out_dir, seed: int = 0, n_train: int = DEFAULT_COUNTS["train"],
             n_valid: int = DEFAULT_COUNTS["valid"], n_test: int = DEFAULT_COUNTS["test"],
             progress: bool = True, workers: int = WORKERS, only=None) -> dict:
    """Generate the corpus under out_dir; returns the corpus.json dict.
    `only`: the splits to render (default all). Every split is planned either
    way (held-out texts are checked against the whole train plan), so a split
    rendered alone is the same as in the full corpus."""
    check_tools()
    check_voices()
    out = Path(out_dir)
    _prepare_out_dir(out)
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    speakers = speaker_split()
    plans = plan_corpus(seed, counts, speakers)
    rendered = [s for s in SPLITS if not only or s in only]
    ticker = _Progress(sum(counts[s] for s in rendered), progress)
    stats = {}
    with worker_pool(workers) as pool:
        for s in rendered:
            stats[s] = _split_stats(_render_split(pool, out, s, plans[s], ticker), speakers[s])
    write_tokens(out / "tokens.txt")
    meta = corpus_meta(seed, counts, stats, speakers)
    (out / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if progress:
        print(f"[corpus] done in {_fmt_s(time.monotonic() - ticker.t0)}: "
              + ", ".join(f"{s} {v['utterances']} utts / {v['hours']:.2f} h / "
                          f"{v['speakers_used']} speakers" for s, v in stats.items()),
              file=sys.stderr, flush=True)
    return meta


def load_split(out_dir, split: str) -> list[dict]:
    """Rows of OUT/{split}.jsonl: path (relative to out_dir), text, speaker, seconds."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(out_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; generate it with "
                                f"python -m edge.data.corpus --out {out_dir}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
