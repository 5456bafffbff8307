"""The build's backends: one `Backend` object each (targets/backends/base.py
says what one holds), one module each, registered here by ordinary imports.

edge-build (targets/build/) reads nothing else about a backend: `--quant`
and `--list` take their precisions and build needs from here, the build
loops over these objects to convert, check int8, inspect what cannot run here
and write side files. A new backend is one module defining a `Backend` (plus
its client row in runtime_py/formats.py when clients run its files), added to
the registry with `register` (tests/test_backends.py registers one defined in
the test).
"""

from __future__ import annotations

from runtime_py import formats

from . import coreml, onnx, ort, tflite
from .base import Backend, Int8Recipe, Made

BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add (or replace) a backend; returns it."""
    BACKENDS[backend.name] = backend
    return backend


for _module in (ort, onnx, tflite, coreml):
    register(_module.BACKEND)


def get_backend(name: str) -> Backend:
    """The backend called `name`; KeyError naming the known ones otherwise."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None


def all_precisions() -> tuple[str, ...]:
    """Every precision some backend builds, in formats.PRECISIONS order."""
    made = {p for b in BACKENDS.values() for p in b.precisions}
    return tuple(p for p in formats.PRECISIONS if p in made) + tuple(sorted(made - set(formats.PRECISIONS)))


__all__ = ["Backend", "BACKENDS", "Int8Recipe", "Made", "all_precisions", "get_backend", "register"]
