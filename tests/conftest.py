"""Test-wide settings. Torch and ONNX Runtime default to one thread per core;
on a 2-core CI machine running several backends that oversubscribes the CPU
and makes tiny models 50x slower. Set before any of them is imported; torch
itself is not imported here, so import-graph tests stay meaningful."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """edge-build's stream proof rolls an hour of audio by default (seconds per
    model on ONNX Runtime). The suite builds dozens of tiny bundles: two minutes
    of audio each proves the mechanism; tests/test_proofs.py checks a real limit."""
    import targets.proofs

    targets.proofs.STREAM_CHECK_SECONDS = 120.0
