"""The training loop: AdamW over length-bucketed batches, gradient clipping,
streaming-WER validation after every epoch (and every `--valid-minutes`);
the best checkpoint is kept at `--out`.

`Trainer.__init__` does the set-up in a fixed order (seeds, model, features,
CMVN, teacher, optimiser): every random draw happens in the same order for
the same seed, so a run is repeatable to the byte."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from ..data.corpus import tokens as corpus_tokens
from . import checkpointing
from .batching import collate, make_batches, spec_augment
from .features import encode_text, feature_stats, limit, load_features
from .losses import compute_loss
from .schedule import Schedule


def _fmt_s(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s"


def build_model(args):
    """(model, config overrides, the --init checkpoint's metadata or None)."""
    from ..families import get_family

    fam = get_family(args.family)
    overrides = json.loads(args.config) if args.config else {}
    if not args.init:
        return fam.build(**overrides), overrides, None
    from ..checkpoint import load_checkpoint

    # continue from a checkpoint: its config, weights and CMVN stats
    model, info = load_checkpoint(args.init, args.family)
    if overrides:
        raise SystemExit("--config cannot be combined with --init (the checkpoint's config is used)")
    overrides = {k: v for k, v in dataclasses.asdict(model.config).items()
                 if getattr(fam.config_cls(), k) != v}
    return model, overrides, info["meta"]


def load_teacher(args, model, log) -> dict:
    """The distillation settings (losses.compute_loss) with the frozen CTC teacher."""
    import torch

    from ..checkpoint import load_checkpoint

    sig = model.signature()
    teacher, tinfo = load_checkpoint(args.teacher)
    if teacher.signature().decoder != "ctc" or teacher.signature().subsampling != sig.subsampling:
        raise SystemExit("--teacher must be a CTC model with the student's subsampling")
    for p_ in teacher.parameters():
        p_.requires_grad_(False)
    distill = {"teacher": teacher.eval(), "weight": args.distill_weight, "delay": args.distill_delay, "aux": None}
    if sig.decoder != "ctc":
        distill["aux"] = torch.nn.Linear(model.config.hidden, model.vocab_size)
    log(f"[train] distilling from {args.teacher} (valid WER {tinfo['meta'].get('best_valid_wer')}%), "
        f"weight {args.distill_weight} annealed to 0 at {args.distill_until:.0%} of the run, "
        f"delay {args.distill_delay} frames")
    return distill


class Trainer:
    """One run of edge-train: its model, data, optimiser and record."""

    def __init__(self, args, log=print):
        import torch

        self.args, self.log = args, log
        self.t_start = time.monotonic()
        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        self.rng = np.random.default_rng(args.seed)  # batching
        self.gen = torch.Generator().manual_seed(args.seed)  # SpecAugment
        self.model, self.overrides, self.init_meta = build_model(args)
        self.sig = self.model.signature()
        self.tokens = corpus_tokens()
        if len(self.tokens) != self.model.vocab_size:
            raise SystemExit(f"corpus has {len(self.tokens)} tokens, model vocab_size is {self.model.vocab_size}")
        self.corpus = Path(args.corpus)
        self._load_data()
        self._log_setup()
        self.distill = load_teacher(args, self.model, log) if args.teacher else None
        self.params = list(self.model.parameters())
        if self.distill and self.distill["aux"] is not None:
            self.params += list(self.distill["aux"].parameters())
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
        batches_per_epoch = len(make_batches(self.lengths, args.batch_frames, np.random.default_rng(0)))
        self.schedule = Schedule(args, max(1, args.epochs * batches_per_epoch), self.t_start)
        self.fill = self.model.cmvn().mean.detach().clone()
        self.best = {"wer": float("inf"), "epoch": None, "step": None}
        self.history, self.losses = [], []
        self.step = 0

    def _load_data(self) -> None:
        """Training features (CMVN statistics from them unless --init), token
        ids, and the valid utterances for streaming WER."""
        import torch

        from ..evaluate import load_utterances

        args = self.args
        data = load_features(self.corpus, "train", self.sig.frontend, args.feature_cache, workers=args.workers,
                             log=self.log)
        self.data = limit(data, args.train_limit) if args.train_limit else data
        if self.init_meta is None:
            mean, std = feature_stats(self.data["feats"])
            self.model.cmvn().set_stats(torch.tensor(mean, dtype=torch.float32),
                                        torch.tensor(std, dtype=torch.float32))
        self.targets = [encode_text(t, self.tokens) for t in self.data["texts"]]
        self.lengths = np.diff(self.data["offsets"])
        self.valid = load_utterances(self.corpus, "valid", args.valid_utts) if args.valid_utts else []

    def _log_setup(self) -> None:
        nparams = sum(p.numel() for p in self.model.parameters())
        self.log(f"[train] {self.args.family}: {nparams / 1e6:.2f} M params, "
                 f"config {json.dumps(dataclasses.asdict(self.model.config))}")
        self.log(f"[train] {len(self.lengths)} train utterances ({self.lengths.sum() / 360000:.2f} h of features), "
                 f"{len(self.valid)} valid utterances for streaming WER; threads {self.args.threads}")

    # -- validation and saving ------------------------------------------------

    def validate(self, epoch: float) -> float:
        """Streaming WER on the valid utterances; saves the checkpoint when it improves."""
        from ..evaluate import evaluate, streaming_decode_fn

        if not self.valid:
            return float("nan")
        self.model.eval()
        r = evaluate(streaming_decode_fn(self.model, self.tokens), self.valid, keep_hypotheses=False)
        self.model.train()
        self.history.append({"epoch": round(epoch, 3), "step": self.step, "valid_wer": round(r["wer"], 3)})
        improved = r["wer"] < self.best["wer"]
        if improved:
            self.best.update(wer=r["wer"], epoch=round(epoch, 3), step=self.step)
            checkpointing.save(self, self.step, epoch)
        self.log(f"[valid] epoch {epoch:.2f} step {self.step}: streaming WER {r['wer']:.2f}% "
                 f"(sub {r['sub']} del {r['del']} ins {r['ins']}, {r['utterances']} utts, {r['seconds']:.0f} s)"
                 f"{'  * best, saved' if improved else ''}", flush=True)
        return r["wer"]

    # -- steps and epochs --------------------------------------------------------

    def train_step(self, idx: np.ndarray) -> float:
        import torch

        args = self.args
        x, lens, y, ylens = collate(self.data, idx, self.targets)
        if not args.no_specaugment:
            x = spec_augment(x, lens, self.fill, self.gen, time_masks=args.time_masks)
        for g in self.opt.param_groups:
            g["lr"] = self.schedule.lr_at(self.step)
        if self.distill:
            self.distill["weight"] = self.schedule.distill_weight(self.step)
        loss = compute_loss(self.model, x, lens, y, ylens, self.distill)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, args.clip)
        if torch.isfinite(gnorm):
            self.opt.step()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def _log_progress(self, epoch: int, bi: int, n_batches: int, mean_loss: float, rate: float) -> None:
        el = time.monotonic() - self.t_start
        eta = el / max(self.schedule.progress(self.step), 1e-9) - el
        self.log(f"[train] epoch {epoch + 1} step {self.step} ({bi + 1}/{n_batches}) loss {mean_loss:.3f} "
                 f"lr {self.schedule.lr_at(self.step):.2e} {rate:.0f} utt/s elapsed {_fmt_s(el)} "
                 f"ETA {_fmt_s(eta)}", flush=True)

    def run_epoch(self, epoch: int) -> tuple[float, bool]:
        """One pass over the batches; returns (epochs done, as a fraction, and
        whether the time budget stopped the run)."""
        args = self.args
        batches = make_batches(self.lengths, args.batch_frames, self.rng)
        if args.sortagrad and epoch == 0:  # first epoch shortest-first (Deep Speech 2's SortaGrad)
            batches.sort(key=lambda b: int(self.lengths[b].max()))
        t_ep, utts, run_loss, run_n = time.monotonic(), 0, 0.0, 0
        stop = False
        for bi, idx in enumerate(batches):
            loss = self.train_step(idx)
            utts += len(idx)
            run_loss += loss * len(idx); run_n += len(idx)
            if self.step % args.log_every == 0:
                self._log_progress(epoch, bi, len(batches), run_loss / run_n,
                                   utts / max(time.monotonic() - t_ep, 1e-9))
                run_loss, run_n = 0.0, 0
            if self.schedule.out_of_time():
                self.log(f"[train] --max-minutes {args.max_minutes} reached at step {self.step}")
                stop = True
                break
            if args.valid_minutes and time.monotonic() - self.last_valid >= args.valid_minutes * 60 \
                    and bi + 1 < len(batches):
                self.validate(epoch + (bi + 1) / len(batches))
                self.last_valid = time.monotonic()
        return (epoch + (bi + 1) / len(batches) if batches else epoch + 1), stop

    def run(self) -> dict:
        epoch, stop = 0, False
        self.last_valid = time.monotonic()
        self.model.train()
        while not stop and epoch < self.args.epochs:
            epoch_done, stop = self.run_epoch(epoch)
            epoch += 1
            self.validate(epoch_done)
            self.last_valid = time.monotonic()
        if self.best["step"] is None:  # no validation set: keep the last weights
            checkpointing.save(self, self.step, float(epoch))
        minutes = (time.monotonic() - self.t_start) / 60
        self.log(f"[train] done: {self.step} steps, {minutes:.1f} min, best streaming valid WER "
                 f"{self.best['wer']:.2f}% (epoch {self.best['epoch']}) -> {self.args.out}")
        return {"best": self.best, "history": self.history, "minutes": minutes, "steps": self.step,
                "losses": self.losses}


def train(args, log=print) -> dict:
    """Train as the CLI's arguments say; returns the best valid WER, the
    validation history, the per-step losses and the run's length."""
    return Trainer(args, log).run()
