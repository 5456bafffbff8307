"""A run that resumes where it stopped (`--state FILE`): model, distillation
head, optimiser, step, epoch, the epoch's batches and the position in them,
the best validation so far, and every random generator (numpy batching,
SpecAugment's, torch's global one for dropout, Python's for the model's own
layer skipping). Written atomically every `--save-minutes` and when the run
stops; a run started with an existing state file continues it, with the
arguments it was started with (only where it writes: --state, -o, --curve;
how long: --stop-*, --save-minutes; and on what: --threads, --workers,
--feature-cache, --log-every, are taken from the new command line).

Also the learning curve (`--curve FILE`, tab-separated, appended): one row
every --log-every steps (mean loss since the row before, learning rate,
utterances/s) and one per validation (valid WER); a resumed run first drops
the rows after its state's step, so the curve has no step twice."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

VERSION = 1
# taken from the command line that continues a run (where it writes, how long and on what it runs);
# everything else (model, corpus, schedule, seed, ...) is the first start's
NEW_COMMAND_LINE = ("state", "out", "curve", "stop_steps", "stop_minutes", "save_minutes", "threads", "log_every",
                    "workers", "feature_cache")
CURVE_COLUMNS = ("step", "epoch", "train_minutes", "loss", "lr", "utt_per_s", "valid_wer")


def _rng_states(run) -> dict:
    import torch

    return {"numpy": run.rng.bit_generator.state, "specaugment": run.gen.get_state(),
            "torch": torch.get_rng_state(), "python": random.getstate()}


def _set_rng_states(run, s: dict) -> None:
    import torch

    run.rng.bit_generator.state = s["numpy"]
    run.gen.set_state(s["specaugment"])
    torch.set_rng_state(s["torch"])
    random.setstate(_tuples(s["python"]))


def _tuples(x):
    """random.setstate wants tuples; a torch.load round trip may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_state(run, path: Path | str) -> None:
    """Everything `load_state` needs to continue `run` (a loop.Trainer) exactly."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    aux = run.distill["aux"] if run.distill else None
    payload = {
        "version": VERSION,
        "args": {k: v for k, v in vars(run.args).items() if k not in NEW_COMMAND_LINE},
        "step": run.step, "epoch": run.epoch, "next_batch": run.next_batch,
        "batches": [torch.from_numpy(np.asarray(b, dtype=np.int64)) for b in run.batches],
        "model": run.model.state_dict(), "aux": aux.state_dict() if aux is not None else None,
        "optimizer": run.opt.state_dict(),
        "best": dict(run.best), "history": list(run.history),
        "training_minutes": run.training_minutes(),
        "rng": _rng_states(run),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def read_state(path: Path | str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)  # primitives and tensors only: runs no code


def resumed_args(args, state: dict):
    """The state's arguments, with the new command line's run-length and machine knobs."""
    import argparse

    merged = dict(state["args"])
    merged.update({k: getattr(args, k) for k in NEW_COMMAND_LINE if hasattr(args, k)})
    return argparse.Namespace(**merged)


def load_state(run, state: dict) -> None:
    """Put a freshly set-up Trainer where the state's run stopped."""
    run.model.load_state_dict(state["model"])
    if state["aux"] is not None:
        run.distill["aux"].load_state_dict(state["aux"])
    run.opt.load_state_dict(state["optimizer"])
    run.step, run.epoch, run.next_batch = state["step"], state["epoch"], state["next_batch"]
    run.batches = [b.numpy() for b in state["batches"]]
    run.best, run.history = dict(state["best"]), list(state["history"])
    run.minutes_before = state["training_minutes"]
    _set_rng_states(run, state["rng"])


class Curve:
    """The tab-separated learning curve; `None` path: nothing is written."""

    def __init__(self, path: Path | str | None, resume_step: int | None):
        self.path = Path(path) if path else None
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.path.read_text().splitlines() if self.path.exists() else []
        if resume_step is None or not rows:  # a new run starts a new curve
            rows = ["\t".join(CURVE_COLUMNS)]
        else:  # keep the header and the rows up to the state's step
            rows = rows[:1] + [r for r in rows[1:] if int(r.split("\t")[0]) <= resume_step]
        self.path.write_text("\n".join(rows) + "\n")

    def row(self, **values) -> None:
        if not self.path:
            return
        with self.path.open("a") as f:
            f.write("\t".join(_fmt(values.get(c)) for c in CURVE_COLUMNS) + "\n")


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


class Saver:
    """Writes the state every `minutes` (0: only when asked)."""

    def __init__(self, path, minutes: float):
        self.path, self.every_s = path, minutes * 60
        self.last = time.monotonic()

    def due(self) -> bool:
        return bool(self.path) and self.every_s > 0 and time.monotonic() - self.last >= self.every_s

    def save(self, run) -> None:
        if self.path:
            save_state(run, self.path)
            self.last = time.monotonic()
