"""The best checkpoint of a run, with everything needed to reproduce it in
its metadata (the exact command, seed, corpus, hyper-parameters)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..data.corpus import write_tokens


def corpus_info(corpus: Path) -> dict:
    try:
        meta = json.loads((corpus / "corpus.json").read_text())
        return {"seed": meta.get("seed"), "counts": meta.get("counts")}
    except (OSError, ValueError):
        return {}


def _hyper(args) -> dict:
    return {"lr": args.lr, "warmup": args.warmup, "batch_frames": args.batch_frames,
            "weight_decay": args.weight_decay, "clip": args.clip, "specaugment": not args.no_specaugment,
            "time_masks": args.time_masks, "sortagrad": args.sortagrad,
            "teacher": args.teacher, "distill_weight": args.distill_weight,
            "distill_until": args.distill_until, "distill_delay": args.distill_delay,
            "cmvn": "global, digital-silence frames excluded", "threads": args.threads}


def _init_info(args, init_meta: dict | None) -> dict | None:
    if init_meta is None:
        return None
    return {"checkpoint": str(args.init), "reproduce": init_meta.get("reproduce"),
            "training_minutes": init_meta.get("training_minutes")}


def checkpoint_meta(run, step: int, epoch: float) -> dict:
    """The metadata saved with a checkpoint of `run` (a training.loop.Trainer)."""
    import torch

    from ..families import get_family

    args = run.args
    if run.external:  # your own model: its factory's configuration, no family config to differ from
        overrides = {"model": args.model, **dataclasses.asdict(run.model.config)}
    else:
        c = get_family(args.family).config_cls()
        overrides = {k: v for k, v in run.overrides.items() if getattr(c, k, None) != v}
    return {
        "trained": True,
        "reproduce": args.reproduce,
        "seed": args.seed,
        "training_minutes": round(run.training_minutes(), 2),
        "init": _init_info(args, run.init_meta),
        "epochs": round(epoch, 3), "steps": step,
        "best_valid_wer": round(run.best["wer"], 3),
        "valid_utterances": len(run.valid), "valid_metric": "streaming WER % (PyTorch step, greedy)",
        "corpus": {"dir": str(run.corpus), **corpus_info(run.corpus)},
        "train_utterances": len(run.lengths),
        "config_overrides": overrides,
        "hyper": _hyper(args),
        "loss": "ctc" if run.sig.decoder == "ctc" else "rnnt (edge.rnnt_loss), mean over batch of -log P(y|x)",
        "features": "runtime_py.frontend.compute_features (kaldi fbank) + 0.3 s tail zeros, cached float16",
        "torch": str(torch.__version__),
    }


def save(run, step: int, epoch: float) -> None:
    from ..checkpoint import save_checkpoint

    if run.external:  # {"model": state_dict, "tokens", "meta"}: what the factory loads (external.py)
        from .external import save_weights
        save_weights(run.model, run.args.out, run.tokens, checkpoint_meta(run, step, epoch))
    else:
        save_checkpoint(run.model, run.args.out, run.tokens, checkpoint_meta(run, step, epoch))
    write_tokens(Path(run.args.out).parent / "tokens.txt")
