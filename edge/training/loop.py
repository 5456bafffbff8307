"""The training loop: AdamW over length-bucketed batches, gradient clipping,
streaming-WER validation after every epoch (and every `--valid-minutes`);
the best checkpoint is kept at `--out`. With `--state`, the run writes its
whole state there every `--save-minutes` and continues from it when started
again (resume.py); `--model FILE.py:FUNCTION` trains your own transducer
(external.py).

`Trainer.__init__` does the set-up in a fixed order (seeds, model, features,
CMVN, teacher, optimiser): every random draw happens in the same order for
the same seed, so a run is repeatable to the byte."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import numpy as np

from ..data.corpus import tokens as corpus_tokens
from . import checkpointing
from .batching import collate, make_batches, spec_augment
from .features import encode_text, feature_stats, limit, load_features
from .losses import compute_loss
from .resume import Curve, Saver
from .schedule import Schedule


def _fmt_s(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s"


def build_model(args):
    """(model, config overrides, the --init checkpoint's metadata or None)."""
    from ..families import get_family

    if getattr(args, "model", None):  # your own transducer (external.py): its factory sizes it
        if args.init or args.config:
            raise SystemExit("--model cannot be combined with --init or --config (continue a run with --state)")
        import torch

        from .external import build_trainable
        model = build_trainable(args.model, corpus_tokens())
        # importing the factory's packages the first time draws from the global generators:
        # seed them again, so a run does not depend on what this process imported before
        torch.manual_seed(args.seed)
        random.seed(args.seed)
        return model, {}, None
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
    distill = {"teacher": teacher.eval(), "weight": args.distill_weight, "delay": args.distill_delay, "aux": None,
               "frontend": teacher.signature().frontend}
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

        from . import resume

        state = resume.read_state(args.state) if getattr(args, "state", None) and Path(args.state).exists() else None
        if state is not None:
            args = resume.resumed_args(args, state)
        self.args, self.log = args, log
        self.t_start = time.monotonic()
        torch.manual_seed(args.seed)
        random.seed(args.seed)  # a model's own draws (the Zipformer skips layers with random.random())
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
        self.teacher_data = self._teacher_features()
        self.params = list(self.model.parameters())
        if self.distill and self.distill["aux"] is not None:
            self.params += list(self.distill["aux"].parameters())
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
        batches_per_epoch = len(make_batches(self.lengths, args.batch_frames, np.random.default_rng(0)))
        self.schedule = Schedule(args, max(1, args.epochs * batches_per_epoch), self.t_start)
        self.best = {"wer": float("inf"), "epoch": None, "step": None}
        self.history, self.losses = [], []
        self.step, self.epoch, self.batches, self.next_batch = 0, 0, [], 0
        self.minutes_before = (self.init_meta or {}).get("training_minutes", 0.0)
        if state is not None:
            resume.load_state(self, state)
            log(f"[train] resumed {args.state} at step {self.step} (epoch {self.epoch} batch {self.next_batch}, "
                f"{self.minutes_before:.1f} training minutes before)")
        self.progress0 = self.step / self.schedule.total_steps
        self.saver = Saver(getattr(args, "state", None), getattr(args, "save_minutes", 0) or 0)
        self.curve = Curve(getattr(args, "curve", None), self.step if state is not None else None)

    @property
    def external(self) -> bool:
        """A model of your own (edge-train --model): no CMVN inside, its own checkpoint layout."""
        return getattr(self.model, "external", False)

    def training_minutes(self) -> float:
        """Minutes of training to this point, over every run and stage that led here."""
        return (time.monotonic() - self.t_start) / 60 + self.minutes_before

    def _load_data(self) -> None:
        """Training features (CMVN statistics from them unless --init), token
        ids, and the valid utterances for streaming WER."""
        import torch

        from ..evaluate import load_utterances

        args = self.args
        data = load_features(self.corpus, "train", self.sig.frontend, args.feature_cache, workers=args.workers,
                             log=self.log)
        self.data = limit(data, args.train_limit) if args.train_limit else data
        if self.external:  # no CMVN in the model: SpecAugment fills masks with the features' mean
            self.fill = torch.tensor(feature_stats(self.data["feats"])[0], dtype=torch.float32)
        else:
            if self.init_meta is None:
                mean, std = feature_stats(self.data["feats"])
                self.model.cmvn().set_stats(torch.tensor(mean, dtype=torch.float32),
                                            torch.tensor(std, dtype=torch.float32))
            self.fill = self.model.cmvn().mean.detach().clone()
        self.targets = [encode_text(t, self.tokens) for t in self.data["texts"]]
        self.lengths = np.diff(self.data["offsets"])
        self.valid = load_utterances(self.corpus, "valid", args.valid_utts) if args.valid_utts else []

    def _teacher_features(self) -> dict | None:
        """The teacher's own features when its frontend differs from the student's (e.g. the
        Zipformer's fbank of samples in [-1, 1] against our families' int16-scaled samples):
        the same frames, so the same batch indices; None when the student's serve both."""
        if not self.distill or self.distill["frontend"] == self.sig.frontend:
            return None
        args = self.args
        data = load_features(self.corpus, "train", self.distill["frontend"], args.feature_cache,
                             workers=args.workers, log=self.log)
        data = limit(data, args.train_limit) if args.train_limit else data
        if not np.array_equal(data["offsets"], self.data["offsets"]):
            raise SystemExit("the teacher's features have other frame counts than the student's")
        return data

    def _log_setup(self) -> None:
        nparams = sum(p.numel() for p in self.model.parameters())
        name = self.args.model if self.external else self.args.family
        self.log(f"[train] {name}: {nparams / 1e6:.2f} M params, "
                 f"config {json.dumps(dataclasses.asdict(self.model.config))}")
        self.log(f"[train] {len(self.lengths)} train utterances ({self.lengths.sum() / 360000:.2f} h of features), "
                 f"{len(self.valid)} valid utterances for streaming WER; threads {self.args.threads}")

    # -- validation and saving ------------------------------------------------

    def validate(self, epoch: float) -> float:
        """Streaming WER on the valid utterances; saves the checkpoint when it improves."""
        from ..evaluate import evaluate, streaming_decode_fn

        if not self.valid:
            return float("nan")
        streaming = self.model.streaming_model() if self.external else self.model
        self.model.eval()
        r = evaluate(streaming_decode_fn(streaming, self.tokens), self.valid, keep_hypotheses=False)
        self.model.train()
        self.history.append({"epoch": round(epoch, 3), "step": self.step, "valid_wer": round(r["wer"], 3)})
        improved = r["wer"] < self.best["wer"]
        if improved:
            self.best.update(wer=r["wer"], epoch=round(epoch, 3), step=self.step)
            checkpointing.save(self, self.step, epoch)
        self.curve.row(step=self.step, epoch=round(epoch, 3), train_minutes=round(self.training_minutes(), 2),
                       valid_wer=round(r["wer"], 3))
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
        teacher_x = collate(self.teacher_data, idx, self.targets)[0] if self.teacher_data else None
        if hasattr(self.model, "on_step"):
            self.model.on_step(self.step)  # e.g. the Zipformer's ScheduledFloat batch count
        loss = compute_loss(self.model, x, lens, y, ylens, self.distill, teacher_x=teacher_x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, args.clip)
        if torch.isfinite(gnorm):
            self.opt.step()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def _log_progress(self, bi: int, n_batches: int, mean_loss: float, rate: float) -> None:
        el = time.monotonic() - self.t_start
        p, p0 = self.schedule.progress(self.step), self.progress0  # p0: where a resumed run started
        eta = el * (1 - p) / max(p - p0, 1e-9)
        lr = self.schedule.lr_at(self.step)
        self.curve.row(step=self.step, epoch=round(self.epoch + (bi + 1) / n_batches, 3),
                       train_minutes=round(self.training_minutes(), 2), loss=round(mean_loss, 4), lr=lr,
                       utt_per_s=round(rate, 2))
        self.log(f"[train] epoch {self.epoch + 1} step {self.step} ({bi + 1}/{n_batches}) loss {mean_loss:.3f} "
                 f"lr {lr:.2e} {rate:.0f} utt/s elapsed {_fmt_s(el)} ETA {_fmt_s(eta)}", flush=True)

    def _new_epoch(self) -> None:
        self.batches = make_batches(self.lengths, self.args.batch_frames, self.rng)
        if self.args.sortagrad and self.epoch == 0:  # first epoch shortest-first (Deep Speech 2's SortaGrad)
            self.batches.sort(key=lambda b: int(self.lengths[b].max()))
        self.next_batch = 0

    def _pause_due(self) -> bool:
        """--stop-steps / --stop-minutes: end this run (its state saved) to continue it later."""
        a = self.args
        return bool((getattr(a, "stop_steps", None) and self.step >= a.stop_steps)
                    or (getattr(a, "stop_minutes", None) and time.monotonic() - self.t_start >= a.stop_minutes * 60))

    def run_epoch(self) -> str | None:
        """The current epoch's batches from `next_batch` on; returns why it stopped early
        ("time": --max-minutes, "pause": --stop-*) or None at the epoch's end."""
        args = self.args
        t_ep, utts, run_loss, run_n = time.monotonic(), 0, 0.0, 0
        n = len(self.batches)
        while self.next_batch < n:
            bi = self.next_batch
            idx = self.batches[bi]
            loss = self.train_step(idx)
            self.next_batch += 1
            utts += len(idx)
            run_loss += loss * len(idx); run_n += len(idx)
            if self.step % args.log_every == 0:
                self._log_progress(bi, n, run_loss / run_n, utts / max(time.monotonic() - t_ep, 1e-9))
                run_loss, run_n = 0.0, 0
            if self.schedule.out_of_time():
                self.log(f"[train] --max-minutes {args.max_minutes} reached at step {self.step}")
                return "time"
            if self._pause_due():
                return "pause"
            if self.saver.due():
                self.saver.save(self)
            if args.valid_minutes and time.monotonic() - self.last_valid >= args.valid_minutes * 60 and bi + 1 < n:
                self.validate(self.epoch + (bi + 1) / n)
                self.last_valid = time.monotonic()
        return None

    def run(self) -> dict:
        self.last_valid = time.monotonic()
        self.model.train()
        stop = None
        while stop is None and self.epoch < self.args.epochs:
            if not self.batches:
                self._new_epoch()
            stop = self.run_epoch()
            if stop == "pause":
                break
            epoch_done = self.epoch + self.next_batch / max(len(self.batches), 1)
            if stop is None:
                self.epoch, self.batches, self.next_batch = self.epoch + 1, [], 0
            self.validate(epoch_done)
            self.last_valid = time.monotonic()
        self.saver.save(self)
        if stop == "pause":
            self.log(f"[train] paused at step {self.step} (epoch {self.epoch} batch {self.next_batch}); "
                     f"state in {self.args.state}: run the same command again to continue")
        elif self.best["step"] is None:  # no validation set: keep the last weights
            checkpointing.save(self, self.step, float(self.epoch))
        minutes = (time.monotonic() - self.t_start) / 60
        self.log(f"[train] done: {self.step} steps, {minutes:.1f} min, best streaming valid WER "
                 f"{self.best['wer']:.2f}% (epoch {self.best['epoch']}) -> {self.args.out}")
        return {"best": self.best, "history": self.history, "minutes": minutes, "steps": self.step,
                "losses": self.losses}


def train(args, log=print) -> dict:
    """Train as the CLI's arguments say; returns the best valid WER, the
    validation history, the per-step losses and the run's length."""
    return Trainer(args, log).run()
