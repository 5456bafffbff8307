"""Train a streaming family on the synthetic corpus.

    edge-train --family conformer --corpus data/corpus -o edge/checkpoints/conformer/model.pt
    edge-train --family lstm -o lstm.pt --epochs 4 --max-minutes 30 --threads 2

- Features: `runtime_py.frontend.compute_features` (the device frontend) of
  each utterance followed by the client's tail padding (0.3 s of zeros), computed
  once (multiprocessing) and cached as float16 in `<corpus>/../features/<corpus name>-<split>.npz`.
- CMVN statistics of the training features go into the model (`set_stats`).
- Batches: length-bucketed, at most `--batch-frames` padded feature frames.
- AdamW, linear warm-up then cosine decay over the run's progress (steps, or
  wall time when `--max-minutes` is the tighter bound), gradient clipping,
  light SpecAugment (2 frequency and 2 time masks per utterance).
- Losses: CTC (lstm, conformer); RNN-T (`edge.rnnt_loss`, transducer). The
  printed loss is -log P(y|x) per utterance (mean over the batch).
- Validation: WER through the streaming path (`edge.evaluate`) on the first
  `--valid-utts` valid utterances, after every epoch (and every
  `--valid-minutes`); the best checkpoint is kept at `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from runtime_py.frontend import compute_features
from runtime_py.recognizer import TAIL_PADDING_S

from .cliutil import add_family, add_verbose, make_parser, preflight
from .data.corpus import load_split, worker_pool, read_wav16, tokens as corpus_tokens, write_tokens
from .errors import fail

# PyTorch and the modules that need it are imported inside the functions that
# use them: `edge-train --help` answers at once, and a runtime-only install
# gets one line naming the extra instead of a traceback.

CACHE_VERSION = 1


# -- features ------------------------------------------------------------------

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


def load_features(corpus: Path | str, split: str, spec, cache_dir: Path | str | None = None,
                  workers: int = 2, log=print) -> dict:
    """Features of every utterance of a split, cached: {"feats": float16 [N, D]
    (all utterances concatenated), "offsets": [n+1], "texts", "speakers", "paths"}."""
    corpus = Path(corpus)
    cache_dir = Path(cache_dir) if cache_dir else corpus.parent / "features"
    rows = load_split(corpus, split)
    key = _cache_key(corpus, split, spec)
    cache = cache_dir / f"{corpus.name}-{split}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return {"feats": z["feats"], "offsets": z["offsets"], "texts": [r["text"] for r in rows],
                        "speakers": [r["speaker"] for r in rows], "paths": [r["path"] for r in rows]}
    t0 = time.monotonic()
    jobs = [(str(corpus / r["path"]), dataclasses.asdict(spec)) for r in rows]
    feats = []
    if workers > 1 and len(jobs) > 64:
        with worker_pool(workers) as pool:
            for i, f in enumerate(pool.imap(_features_job, jobs, chunksize=32)):
                feats.append(f)
                if (i + 1) % 2000 == 0:
                    log(f"[features] {split}: {i + 1}/{len(jobs)} ({time.monotonic() - t0:.0f} s)")
    else:
        feats = [_features_job(j) for j in jobs]
    lengths = np.array([len(f) for f in feats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    allf = np.concatenate(feats, axis=0) if feats else np.zeros((0, spec.feature_dim), np.float16)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, feats=allf, offsets=offsets, key=np.array(key))
    tmp.replace(cache)
    log(f"[features] {split}: {len(feats)} utterances, {len(allf)} frames in {time.monotonic() - t0:.0f} s "
        f"-> {cache}")
    return {"feats": allf, "offsets": offsets, "texts": [r["text"] for r in rows],
            "speakers": [r["speaker"] for r in rows], "paths": [r["path"] for r in rows]}


LOG_FLOOR = float(np.log(np.finfo(np.float32).eps))  # fbank value of digital silence


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


# -- batching and augmentation ------------------------------------------------

def make_batches(lengths: np.ndarray, batch_frames: int, rng: np.random.Generator,
                 max_utts: int = 256) -> list[np.ndarray]:
    """Length-bucketed batches: sort (with a little noise, so batches differ per
    epoch), cut so that B * max_len <= batch_frames, shuffle the batch order."""
    noisy = lengths * rng.uniform(0.9, 1.1, size=len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, int(lengths[i]))
        if cur and (m * (len(cur) + 1) > batch_frames or len(cur) >= max_utts):
            batches.append(np.array(cur)); cur, m = [], int(lengths[i])
        cur.append(i); cur_max = m
    if cur:
        batches.append(np.array(cur))
    rng.shuffle(batches)
    return batches


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, fill: torch.Tensor, gen: torch.Generator,
                 freq_masks: int = 2, freq_width: int = 10, time_masks: int = 2, time_width: int = 20,
                 time_frac: float = 0.1) -> torch.Tensor:
    """Mask bands of bins and spans of frames (filled with the CMVN mean, i.e.
    zero after normalisation). Time masks are at most time_frac of each utterance."""
    import torch

    b, t, d = x.shape
    mask = torch.zeros(b, t, d, dtype=torch.bool)
    fpos = torch.arange(d)
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (b, 1), generator=gen)
        f0 = (torch.rand(b, 1, generator=gen) * (d - w)).long()
        mask |= ((fpos[None] >= f0) & (fpos[None] < f0 + w))[:, None, :]
    tpos = torch.arange(t)
    for _ in range(time_masks):
        maxw = torch.clamp((lengths.float() * time_frac).long(), max=time_width)[:, None]
        w = (torch.rand(b, 1, generator=gen) * (maxw + 1).float()).long()
        t0 = (torch.rand(b, 1, generator=gen) * (lengths[:, None] - w).clamp_min(1).float()).long()
        mask |= ((tpos[None] >= t0) & (tpos[None] < t0 + w))[:, :, None]
    return torch.where(mask, fill.to(x.dtype), x)


def collate(data: dict, idx: np.ndarray, targets: list[list[int]]):
    import torch

    offs = data["offsets"]
    lens = np.array([offs[i + 1] - offs[i] for i in idx])
    t = int(lens.max())
    d = data["feats"].shape[1]
    x = np.zeros((len(idx), t, d), dtype=np.float32)
    for k, i in enumerate(idx):
        x[k, : lens[k]] = data["feats"][offs[i]: offs[i + 1]]
    tl = np.array([len(targets[i]) for i in idx])
    y = np.zeros((len(idx), max(int(tl.max()), 1)), dtype=np.int64)
    for k, i in enumerate(idx):
        y[k, : tl[k]] = targets[i]
    return torch.from_numpy(x), torch.from_numpy(lens), torch.from_numpy(y), torch.from_numpy(tl)


# -- loss ---------------------------------------------------------------------

def compute_loss(model, x, lens, y, ylens, distill: dict | None = None) -> torch.Tensor:
    """-log P(y|x) averaged over the batch (CTC or RNN-T by the model's decoder).

    distill (optional): {"teacher": a CTC model with the same output frame rate,
    "weight": w, "delay": d frames, "aux": for the transducer, a Linear from the
    encoder's hidden size to the vocabulary (a training-only head, not saved)}.
    Adds w * KL(teacher || student) per utterance on the frame posteriors, the
    teacher's delayed by d frames (a causal student cannot fire as early as a
    chunked teacher). It gets a student past the CTC/RNN-T plateau quickly."""
    import torch

    from .rnnt_loss import decoder_contexts, rnnt_loss

    ctc = model.signature().decoder == "ctc"
    if ctc:
        out, out_lens = model(x, lens)
        student = out
    else:
        hidden, out_lens = model.encoder.offline(x, lens)
        out = model.encoder_proj(hidden)
        student = torch.log_softmax(distill["aux"](hidden), dim=-1) if distill else None
    out_lens = out_lens.clamp(max=out.shape[1])
    if ctc:
        loss = torch.nn.functional.ctc_loss(out.transpose(0, 1), y, out_lens, ylens, blank=0,
                                            reduction="sum", zero_infinity=True) / x.shape[0]
    else:
        ctx = decoder_contexts(y[:, : int(ylens.max())], model.config.context_size, model.config.blank_id)
        dec = model.decoder(ctx)  # [B, U+1, J]
        logits = model.joiner(out[:, :, None, :], dec[:, None, :, :])  # [B, T, U+1, V]
        loss = rnnt_loss(logits, y, out_lens, ylens, blank=model.config.blank_id, reduction="mean")
    if distill and distill["weight"] > 0:
        with torch.no_grad():
            t_lp, _ = distill["teacher"](x, lens)
        d = distill["delay"]
        if d > 0:
            t_lp = torch.cat([t_lp[:, :1].expand(-1, d, -1), t_lp[:, : t_lp.shape[1] - d]], dim=1)
        t = min(t_lp.shape[1], student.shape[1])
        valid = (torch.arange(t)[None, :] < out_lens[:, None]).float()
        kl = (t_lp[:, :t].exp() * (t_lp[:, :t] - student[:, :t])).sum(-1)
        loss = loss + distill["weight"] * (kl * valid).sum() / x.shape[0]
    return loss


# -- the loop -------------------------------------------------------------------

def _fmt_s(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s"


def train(args, log=print) -> dict:
    import torch

    from .checkpoint import save_checkpoint
    from .evaluate import evaluate, load_utterances, streaming_decode_fn
    from .families import get_family

    t_start = time.monotonic()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    fam = get_family(args.family)
    overrides = json.loads(args.config) if args.config else {}
    init_meta = None
    if args.init:  # continue from a checkpoint: its config, weights and CMVN stats
        from .checkpoint import load_checkpoint

        model, info = load_checkpoint(args.init, args.family)
        init_meta = info["meta"]
        if overrides:
            raise SystemExit("--config cannot be combined with --init (the checkpoint's config is used)")
        overrides = {k: v for k, v in dataclasses.asdict(model.config).items()
                     if getattr(fam.config_cls(), k) != v}
    else:
        model = fam.build(**overrides)
    sig = model.signature()
    tokens = corpus_tokens()
    if len(tokens) != model.vocab_size:
        raise SystemExit(f"corpus has {len(tokens)} tokens, model vocab_size is {model.vocab_size}")
    corpus = Path(args.corpus)
    data = load_features(corpus, "train", sig.frontend, args.feature_cache, workers=args.workers, log=log)
    if args.train_limit:
        n = args.train_limit
        data = {**data, "offsets": data["offsets"][: n + 1], "texts": data["texts"][:n],
                "feats": data["feats"][: data["offsets"][n]]}
    if init_meta is None:
        mean, std = feature_stats(data["feats"])
        model.cmvn().set_stats(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))
    targets = [encode_text(t, tokens) for t in data["texts"]]
    lengths = np.diff(data["offsets"])
    valid = load_utterances(corpus, "valid", args.valid_utts) if args.valid_utts else []
    nparams = sum(p.numel() for p in model.parameters())
    log(f"[train] {args.family}: {nparams / 1e6:.2f} M params, config {json.dumps(dataclasses.asdict(model.config))}")
    log(f"[train] {len(lengths)} train utterances ({lengths.sum() / 360000:.2f} h of features), "
        f"{len(valid)} valid utterances for streaming WER; threads {args.threads}")

    distill = None
    params = list(model.parameters())
    if args.teacher:
        from .checkpoint import load_checkpoint

        teacher, tinfo = load_checkpoint(args.teacher)
        if teacher.signature().decoder != "ctc" or teacher.signature().subsampling != sig.subsampling:
            raise SystemExit("--teacher must be a CTC model with the student's subsampling")
        for p_ in teacher.parameters():
            p_.requires_grad_(False)
        distill = {"teacher": teacher.eval(), "weight": args.distill_weight, "delay": args.distill_delay,
                   "aux": None}
        if sig.decoder != "ctc":
            distill["aux"] = torch.nn.Linear(model.config.hidden, model.vocab_size)
            params += list(distill["aux"].parameters())
        log(f"[train] distilling from {args.teacher} (valid WER {tinfo['meta'].get('best_valid_wer')}%), "
            f"weight {args.distill_weight} annealed to 0 at {args.distill_until:.0%} of the run, "
            f"delay {args.distill_delay} frames")
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
    batches_per_epoch = len(make_batches(lengths, args.batch_frames, np.random.default_rng(0)))
    total_steps = max(1, args.epochs * batches_per_epoch)
    budget_s = args.max_minutes * 60 if args.max_minutes else None
    fill = model.cmvn().mean.detach().clone()

    def progress(step: int) -> float:
        p = step / total_steps
        if budget_s:
            p = max(p, (time.monotonic() - t_start) / budget_s)
        return min(p, 1.0)

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(args.warmup, 1))
        p = progress(step)
        return args.lr * warm * (args.final_lr_frac + (1 - args.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    best = {"wer": float("inf"), "epoch": None, "step": None}
    history = []
    losses = []

    def validate(epoch: float, step: int) -> float:
        if not valid:
            return float("nan")
        model.eval()
        r = evaluate(streaming_decode_fn(model, tokens), valid, keep_hypotheses=False)
        model.train()
        history.append({"epoch": round(epoch, 3), "step": step, "valid_wer": round(r["wer"], 3)})
        improved = r["wer"] < best["wer"]
        if improved:
            best.update(wer=r["wer"], epoch=round(epoch, 3), step=step)
            save(step, epoch)
        log(f"[valid] epoch {epoch:.2f} step {step}: streaming WER {r['wer']:.2f}% "
            f"(sub {r['sub']} del {r['del']} ins {r['ins']}, {r['utterances']} utts, {r['seconds']:.0f} s)"
            f"{'  * best, saved' if improved else ''}", flush=True)
        return r["wer"]

    def save(step: int, epoch: float):
        c = get_family(args.family).config_cls()
        meta = {
            "trained": True,
            "reproduce": args.reproduce,
            "seed": args.seed,
            "training_minutes": round((time.monotonic() - t_start) / 60
                                      + (init_meta or {}).get("training_minutes", 0.0), 2),
            "init": None if init_meta is None else {"checkpoint": str(args.init),
                                                    "reproduce": init_meta.get("reproduce"),
                                                    "training_minutes": init_meta.get("training_minutes")},
            "epochs": round(epoch, 3), "steps": step,
            "best_valid_wer": round(best["wer"], 3),
            "valid_utterances": len(valid), "valid_metric": "streaming WER % (PyTorch step, greedy)",
            "corpus": {"dir": str(corpus), **_corpus_info(corpus)},
            "train_utterances": len(lengths),
            "config_overrides": {k: v for k, v in overrides.items() if getattr(c, k, None) != v},
            "hyper": {"lr": args.lr, "warmup": args.warmup, "batch_frames": args.batch_frames,
                      "weight_decay": args.weight_decay, "clip": args.clip, "specaugment": not args.no_specaugment,
                      "time_masks": args.time_masks, "sortagrad": args.sortagrad,
                      "teacher": args.teacher, "distill_weight": args.distill_weight,
                      "distill_until": args.distill_until, "distill_delay": args.distill_delay, "cmvn": "global, digital-silence frames excluded",
                      "threads": args.threads},
            "loss": "ctc" if sig.decoder == "ctc" else "rnnt (edge.rnnt_loss), mean over batch of -log P(y|x)",
            "features": "runtime_py.frontend.compute_features (kaldi fbank) + 0.3 s tail zeros, cached float16",
            "torch": str(torch.__version__),
        }
        save_checkpoint(model, args.out, tokens, meta)
        write_tokens(Path(args.out).parent / "tokens.txt")

    step, epoch = 0, 0
    stop = False
    last_valid = time.monotonic()
    model.train()
    while not stop and epoch < args.epochs:
        batches = make_batches(lengths, args.batch_frames, rng)
        if args.sortagrad and epoch == 0:  # first epoch shortest-first (Deep Speech 2's SortaGrad)
            batches.sort(key=lambda b: int(lengths[b].max()))
        t_ep, utts, run_loss, run_n = time.monotonic(), 0, 0.0, 0
        for bi, idx in enumerate(batches):
            x, lens, y, ylens = collate(data, idx, targets)
            if not args.no_specaugment:
                x = spec_augment(x, lens, fill, gen, time_masks=args.time_masks)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            if distill:
                distill["weight"] = args.distill_weight * max(0.0, 1.0 - progress(step) / args.distill_until)
            loss = compute_loss(model, x, lens, y, ylens, distill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, args.clip)
            if torch.isfinite(gnorm):
                opt.step()
            step += 1
            utts += len(idx)
            losses.append(loss.item())
            run_loss += losses[-1] * len(idx); run_n += len(idx)
            if step % args.log_every == 0:
                el = time.monotonic() - t_start
                rate = utts / max(time.monotonic() - t_ep, 1e-9)
                p = progress(step)
                eta = el / max(p, 1e-9) - el
                log(f"[train] epoch {epoch + 1} step {step} ({bi + 1}/{len(batches)}) loss {run_loss / run_n:.3f} "
                    f"lr {lr_at(step):.2e} {rate:.0f} utt/s elapsed {_fmt_s(el)} ETA {_fmt_s(eta)}", flush=True)
                run_loss, run_n = 0.0, 0
            if budget_s and time.monotonic() - t_start >= budget_s:
                log(f"[train] --max-minutes {args.max_minutes} reached at step {step}")
                stop = True
                break
            if args.valid_minutes and time.monotonic() - last_valid >= args.valid_minutes * 60 \
                    and bi + 1 < len(batches):
                validate(epoch + (bi + 1) / len(batches), step)
                last_valid = time.monotonic()
        epoch_done = epoch + (bi + 1) / len(batches) if batches else epoch + 1
        epoch += 1
        validate(epoch_done, step)
        last_valid = time.monotonic()
    if best["step"] is None:  # no validation set: keep the last weights
        save(step, float(epoch))
    minutes = (time.monotonic() - t_start) / 60
    log(f"[train] done: {step} steps, {minutes:.1f} min, best streaming valid WER {best['wer']:.2f}% "
        f"(epoch {best['epoch']}) -> {args.out}")
    return {"best": best, "history": history, "minutes": minutes, "steps": step, "losses": losses}


def _corpus_info(corpus: Path) -> dict:
    try:
        meta = json.loads((corpus / "corpus.json").read_text())
        return {"seed": meta.get("seed"), "counts": meta.get("counts")}
    except (OSError, ValueError):
        return {}


DEFAULTS = {  # per family: peak learning rate and batch size used for the shipped checkpoints
    "lstm": dict(lr=1.5e-3, batch_frames=6000),
    "conformer": dict(lr=2e-3, batch_frames=6000),
    "transducer": dict(lr=1.5e-3, batch_frames=6000),
}


def build_parser() -> argparse.ArgumentParser:
    ap = make_parser("edge-train", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
    add_family(ap)
    ap.add_argument("--corpus", default="data/corpus",
                    help="corpus folder with train/valid.jsonl (make one with: python -m edge.data.corpus)")
    ap.add_argument("-o", "--output", dest="out", metavar="CHECKPOINT",
                    help="checkpoint path (the best one is kept here)")
    ap.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation, batching and augmentation")
    ap.add_argument("--init", default=None, help="continue training from this checkpoint")
    ap.add_argument("--config", default=None, help='JSON dict of family config overrides, e.g. \'{"d_model": 96}\'')
    run = ap.add_argument_group("length of the run")
    run.add_argument("--epochs", type=int, default=10, help="passes over the training split")
    run.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    run.add_argument("--train-limit", type=int, default=None, help="first N train utterances only")
    opt = ap.add_argument_group("optimiser")
    opt.add_argument("--batch-frames", type=int, default=None,
                     help="padded feature frames per batch (default: per family, 6000)")
    opt.add_argument("--lr", type=float, default=None, help="peak learning rate (default: per family)")
    opt.add_argument("--warmup", type=int, default=300, help="linear warm-up steps")
    opt.add_argument("--final-lr-frac", type=float, default=0.02,
                     help="learning rate at the end of the cosine decay, as a fraction of the peak")
    opt.add_argument("--weight-decay", type=float, default=1e-3, help="AdamW weight decay")
    opt.add_argument("--clip", type=float, default=5.0, help="gradient norm clipping")
    aug = ap.add_argument_group("augmentation and curriculum")
    aug.add_argument("--no-specaugment", action="store_true", help="train without SpecAugment masks")
    aug.add_argument("--time-masks", type=int, default=2, help="SpecAugment time masks per utterance")
    aug.add_argument("--sortagrad", action="store_true", help="first epoch in order of increasing length")
    dis = ap.add_argument_group("distillation from a CTC teacher")
    dis.add_argument("--teacher", default=None, help="CTC checkpoint to distil frame posteriors from")
    dis.add_argument("--distill-weight", type=float, default=1.0, help="weight of the KL term at the start")
    dis.add_argument("--distill-until", type=float, default=0.6, help="fraction of the run when the weight reaches 0")
    dis.add_argument("--distill-delay", type=int, default=2, help="teacher posteriors delayed by this many frames")
    val = ap.add_argument_group("validation, logging and machine")
    val.add_argument("--valid-utts", type=int, default=200, help="valid utterances scored per validation")
    val.add_argument("--valid-minutes", type=float, default=0, help="also validate every M minutes (0: per epoch only)")
    val.add_argument("--log-every", type=int, default=50, help="print the loss every N steps")
    val.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    val.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    val.add_argument("--feature-cache", default=None, help="feature cache folder (default: <corpus>/../features)")
    add_verbose(ap)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """The CLI's arguments with the per-family defaults filled in and the
    exact command recorded (args.reproduce)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "out", None):
        parser.error("-o/--output CHECKPOINT is required (where the best checkpoint is kept)")
    fam_defaults = DEFAULTS.get(args.family, DEFAULTS["lstm"])
    if args.lr is None:
        args.lr = fam_defaults["lr"]
    if args.batch_frames is None:
        args.batch_frames = fam_defaults["batch_frames"]
    args.reproduce = "edge-train " + " ".join(shlex.quote(a) for a in argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    code = preflight(args)
    if code:
        return code
    corpus = Path(args.corpus)
    if not (corpus / "train.jsonl").is_file():
        return fail(f"corpus {corpus} not found (no train.jsonl there); make one with: "
                    f"python -m edge.data.corpus --out {corpus}")
    for flag, path in (("--init", args.init), ("--teacher", args.teacher)):
        if path and not Path(path).is_file():
            return fail(f"{flag} {path}: no such checkpoint file")
    from .checkpoint import CheckpointError

    try:
        train(args, log=lambda *a, **k: print(*a, **{"flush": True, **k}))
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
