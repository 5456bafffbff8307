"""Tiny bundles and test audio for the client tests (session, recogniser, demo).

`tiny_bundle(family, out_dir)` -> (bundle path, the PyTorch model), built by
`targets.build.build_bundle` from a small seeded model (FAMILY_TEST_CONFIGS).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from targets.build import build_bundle
from tests.test_families import FAMILY_TEST_CONFIGS, build

FAMILIES = sorted(FAMILY_TEST_CONFIGS)
PARITY_CHUNKS = 8  # the build's own parity rollout; the client tests check more


def tiny_model(family: str, seed: int = 0):
    """A small seeded model (untrained) with non-trivial CMVN statistics."""
    return build(family, seed=seed)


def tiny_bundle(family: str, out_dir: Path, seed: int = 0, backends=(("ort", "fp32"),)):
    """Build a bundle of a tiny model with targets.build.build_bundle;
    returns (bundle path, the PyTorch model it was built from)."""
    model = tiny_model(family, seed)
    path = build_bundle(family, "rpi", Path(out_dir) / f"demo-{family}-rpi", model=model,
                        backends=list(backends), parity_chunks=PARITY_CHUNKS)
    return Path(path), model


_CACHE_DIR: Path | None = None


@functools.lru_cache(maxsize=None)
def cached_bundle(family: str):
    """One bundle per family per test process (read-only: copy it before
    changing anything), so the three client test modules share the builds."""
    global _CACHE_DIR
    if _CACHE_DIR is None:
        _CACHE_DIR = Path(tempfile.mkdtemp(prefix="edge-client-tests-"))
        atexit.register(shutil.rmtree, _CACHE_DIR, True)
    return tiny_bundle(family, _CACHE_DIR / family)


# -- test audio ---------------------------------------------------------------------

def speechlike(seconds: float, rate: int = 16000, seed: int = 0, level: float = 0.2) -> np.ndarray:
    """Loud, varying audio (harmonics with a moving pitch plus noise): the
    energy VAD calls it speech and the features change frame to frame."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 60 * np.sin(2 * np.pi * 1.3 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    x *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 3.0 * t + seed))  # syllables
    x = x / np.max(np.abs(x)) * level + 0.02 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def silence(seconds: float, rate: int = 16000, seed: int = 1, level: float = 1e-4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def odd_blocks(x: np.ndarray, sizes=(1, 37, 160, 999, 3, 4096, 517)):
    """Split into blocks of varying, odd sizes (0 included)."""
    i, k = 0, 0
    out = [x[:0]]
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(x[i: i + n])
        i += n
        k += 1
    return out
