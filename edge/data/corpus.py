"""Deterministic synthetic speech corpus made with espeak-ng.

Small streaming ASR models (CTC and Transducer, words as tokens) are trained on
it and must generalise to *unseen voices*.  A speaker is an espeak-ng English
accent combined with a voice variant ("en-us+m3").  The splits hold out whole
variants: every test speaker uses a variant (timbre) that never occurs in
train, spoken in accents that do occur in train.  Test and valid word
sequences never occur in train either.

Everything is a pure function of the seed: utterance i of a split draws all of
its randomness from (seed, split, i), so the same seed gives byte-identical
WAV files whatever the number of worker processes.

    python -m edge.data.corpus --out data/corpus --seed 0

Needs the espeak-ng and sox programs (apt-get install espeak-ng sox).

Modules: vocabulary (words, tokens), speakers (accents x variants, held-out
split), synthesis (espeak-ng, sox, augmentation), wavio (16-bit WAV), plan
(per-utterance random choices), generate (writing and reading a corpus); this
module re-exports them and is the command line.
"""
from __future__ import annotations

import argparse
import sys

# The corpus by concern; everything is importable from here, as before the split.
from .generate import (DEFAULT_COUNTS, PROGRESS_EVERY, WORKERS, corpus_meta, generate,
                       load_split, plan_corpus, worker_pool)
from .plan import (MAX_RESAMPLE_TRIES, MAX_WORDS, MIN_WORDS, PITCH, RATE_WPM, SPLIT_IDS,
                   plan_utterance)
from .speakers import (ACCENTS, HELDOUT_FRACTION, SPEAKER_SPLIT_SEED, SPLITS, VARIANT_GROUPS,
                       all_variants, speaker_split)
from .synthesis import (AMPLITUDE, CLEAN_PROB, GAIN_DB, NOISE_KINDS, PEAK_NORM, SILENCE_S, SNR_DB,
                        augment, check_tools, check_voices, synthesize)
from .vocabulary import BLANK, COMMANDS, DIGITS, SAMPLE_RATE, VOCABULARY, WORD_MARK, tokens, write_tokens
from .wavio import read_wav16, to_pcm16, write_wav16

__all__ = ['ACCENTS', 'AMPLITUDE', 'BLANK', 'CLEAN_PROB', 'COMMANDS', 'DEFAULT_COUNTS', 'DIGITS', 'GAIN_DB',
           'HELDOUT_FRACTION', 'MAX_RESAMPLE_TRIES', 'MAX_WORDS', 'MIN_WORDS', 'NOISE_KINDS', 'PEAK_NORM',
           'PITCH', 'PROGRESS_EVERY', 'RATE_WPM', 'SAMPLE_RATE', 'SILENCE_S', 'SNR_DB', 'SPEAKER_SPLIT_SEED',
           'SPLITS', 'SPLIT_IDS', 'VARIANT_GROUPS', 'VOCABULARY', 'WORD_MARK', 'WORKERS', 'all_variants',
           'augment', 'check_tools', 'check_voices', 'corpus_meta', 'generate', 'load_split', 'plan_corpus',
           'plan_utterance', 'read_wav16', 'speaker_split', 'synthesize', 'to_pcm16', 'tokens', 'worker_pool',
           'write_tokens', 'write_wav16', 'main']


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate the synthetic espeak-ng command corpus.")
    ap.add_argument("--out", default="data/corpus", help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=DEFAULT_COUNTS["train"])
    ap.add_argument("--valid", type=int, default=DEFAULT_COUNTS["valid"])
    ap.add_argument("--test", type=int, default=DEFAULT_COUNTS["test"])
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--only", choices=SPLITS, action="append", default=None, metavar="SPLIT",
                    help="render only this split (repeatable), e.g. --only test to score a model: every split is "
                         "still planned, so it holds the very utterances of the full corpus")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    generate(args.out, seed=args.seed, n_train=args.train, n_valid=args.valid,
             n_test=args.test, progress=not args.quiet, workers=args.workers, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
