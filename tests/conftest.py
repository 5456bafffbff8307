"""Test-wide settings. Torch and ONNX Runtime default to one thread per core;
on a 2-core CI machine running several backends that oversubscribes the CPU
and makes tiny models 50x slower. Set before any of them is imported; torch
itself is not imported here, so import-graph tests stay meaningful."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
