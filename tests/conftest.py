"""Test-wide settings. Torch and ONNX Runtime default to one thread per core;
on a 2-core CI machine running several backends that oversubscribes the CPU
and makes tiny models 50x slower. Set before any of them is imported; torch
itself is not imported here, so import-graph tests stay meaningful."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """edge-build's stream proof rolls an hour of audio by default, on ONNX
    Runtime and the PyTorch reference side by side (within a compute budget).
    The suite builds dozens of tiny bundles: 40 s of audio each proves the
    mechanism (as long as the two minutes on ONNX Runtime alone took before the
    reference ran too); tests/test_proofs.py checks real limits."""
    import targets.proofs

    targets.proofs.STREAM_CHECK_SECONDS = 40.0
