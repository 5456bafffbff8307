"""`edge-train`: arguments (grouped, per-family defaults), the recorded
command, and the entry point's checks and error lines."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..cliutil import add_family, add_verbose, make_parser, preflight
from ..errors import fail

DESCRIPTION = """Train a streaming family on the synthetic corpus (how: edge/training/__init__.py).

    edge-train --family conformer --corpus data/corpus -o runs/conformer.pt   (then: --checkpoint runs/conformer.pt)
    edge-train --family lstm -o lstm.pt --epochs 4 --max-minutes 30 --threads 2
    edge-train --model examples/zipformer_factory.py:trainable_small -o zf/best.pt --state zf/state.pt
        (a resumable run: the same command again continues it from zf/state.pt)"""

DEFAULTS = {  # per family: peak learning rate and batch size used for the shipped checkpoints
    "lstm": dict(lr=1.5e-3, batch_frames=6000),
    "conformer": dict(lr=2e-3, batch_frames=6000),
    "transducer": dict(lr=1.5e-3, batch_frames=6000),
}


def build_parser() -> argparse.ArgumentParser:
    ap = make_parser("edge-train", DESCRIPTION)
    add_family(ap)
    ap.add_argument("--corpus", default="data/corpus",
                    help="corpus folder with train/valid.jsonl (make one with: python -m edge.data.corpus)")
    ap.add_argument("-o", "--output", dest="out", metavar="CHECKPOINT",
                    help="checkpoint path (the best one is kept here)")
    ap.add_argument("--out", dest="out", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation, batching and augmentation")
    ap.add_argument("--init", default=None, help="continue training from this checkpoint")
    ap.add_argument("--config", default=None, help='JSON dict of family config overrides, e.g. \'{"d_model": 96}\'')
    ap.add_argument("--model", default=None, metavar="FILE.py:FUNCTION",
                    help="train your own transducer instead of --family: FUNCTION(tokens) returns an "
                         "edge.training.external.Trainable (e.g. examples/zipformer_factory.py:trainable_small)")
    run = ap.add_argument_group("length of the run")
    run.add_argument("--epochs", type=int, default=10, help="passes over the training split")
    run.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall time")
    run.add_argument("--train-limit", type=int, default=None, help="first N train utterances only")
    run.add_argument("--state", default=None, metavar="FILE",
                     help="resumable run: its whole state (weights, optimiser, data position, random generators) "
                          "is written here; started again with this file present, the run continues from it with "
                          "its first command's arguments")
    run.add_argument("--save-minutes", type=float, default=10, help="with --state: write it every M minutes")
    run.add_argument("--stop-steps", type=int, default=None,
                     help="pause after this many steps in all (the schedule is unchanged; --state to continue)")
    run.add_argument("--stop-minutes", type=float, default=None,
                     help="pause after this wall time (unlike --max-minutes the schedule is unchanged)")
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
    val.add_argument("--curve", default=None, metavar="FILE.tsv",
                     help="append the learning curve here (loss every --log-every steps, valid WER per validation)")
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
    if args.state and args.max_minutes:
        return fail("--max-minutes fits the schedule to one run's wall time; a resumable run (--state) "
                    "pauses with --stop-minutes instead")
    if args.model and (args.init or args.config):
        return fail("--model cannot be combined with --init or --config (its factory sizes it; continue with --state)")
    from ..checkpoint import CheckpointError
    from ..errors import UserError
    from .loop import train

    try:
        train(args, log=lambda *a, **k: print(*a, **{"flush": True, **k}))
    except (CheckpointError, FileNotFoundError, ValueError, UserError) as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
