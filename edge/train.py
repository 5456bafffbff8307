"""`edge-train` (and `python -m edge.train`): the training CLI. The code is
in the `edge.training` package, one module per concern; this name stays so
that the command, its entry point and existing imports keep working."""

from __future__ import annotations

import sys

from .training import build_parser, main, parse_args, train
from .training.batching import collate, make_batches, spec_augment
from .training.features import encode_text, feature_stats, load_features
from .training.losses import compute_loss

__all__ = ["build_parser", "collate", "compute_loss", "encode_text", "feature_stats", "load_features",
           "main", "make_batches", "parse_args", "spec_augment", "train"]

if __name__ == "__main__":
    sys.exit(main())
