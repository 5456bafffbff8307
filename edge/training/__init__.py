"""Train a streaming family on the synthetic corpus (`edge-train`, cli.py).

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

One module per concern:
- features.py       features of a split (computed once, cached), CMVN statistics, token ids;
- batching.py       length-bucketed batches, SpecAugment, padding into tensors;
- losses.py         CTC, RNN-T and the distillation term;
- schedule.py       learning rate (warm-up, cosine) and the run's progress;
- loop.py           the Trainer: set-up in a fixed order, steps, epochs, validation;
- checkpointing.py  the best checkpoint and its reproducibility metadata;
- resume.py         a run's whole state (--state), to stop and continue it exactly; the curve (--curve);
- external.py       your own transducer (--model FILE.py:FUNCTION), e.g. the Zipformer's trainable_small;
- cli.py            `edge-train`'s arguments and entry point.

PyTorch and the modules that need it are imported inside the functions that
use them: `edge-train --help` answers at once, and a runtime-only install
gets one line naming the extra instead of a traceback.
"""

from .cli import build_parser, main, parse_args
from .loop import train

__all__ = ["build_parser", "main", "parse_args", "train"]
