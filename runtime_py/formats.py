"""The client's table of model formats: what each backend's files are called,
how a client runs them, and which one it picks first.

Every client reads this table: edge-demo and the session's backend choice,
edge-verify, edge-bench and the manifest's validation. It is plain data,
torch-free, and imports nothing from `targets` or `edge`, so the Raspberry Pi
runtime never imports them. How a backend's files are *made* (its
precisions, converter, int8 check, side files) is the build's business: one
object per backend in targets/backends/ (`targets.backends.Backend`), which
names its client row here by `backend`.

The one runner signature (runtime_py/runners.py has the two a client uses;
runtime_py/backends.py opens files through this table):
    runner(path, graph, threads=1, strict=False, providers=None) -> run(feeds) -> dict
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

from .runners import ort_runner, tflite_runner

# Every precision a bundle artifact may declare, in the order tools list them: the one precision
# list; each backend builds a subset of it (targets/backends/).
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Format:
    backend: str  # the name in manifests, --quant/--backend and file names
    suffix: str  # the artifact's file (or folder) suffix
    extra: str  # the pip extra (`pip install -e '.[extra]'`) that runs (or, without a runner, builds) it
    runner: Callable | None = None  # the one runner signature; None: its files do not run on this host
    runtime_module: str | None = None  # the package the runner imports (is it installed here?)
    not_here: str = ""  # why it cannot run here, when runner is None
    # A client's preference when the user names no backend: lower first, across all rows; a precision
    # missing here ranks after every listed pair. Exact fp32 first, then the quantised/half-precision
    # files (lower accuracy, checked by token agreement only).
    preference: tuple[tuple[str, int], ...] = ()

    @property
    def runs_here(self) -> bool:
        return self.runner is not None

    def installed(self) -> bool:
        """Whether the package this format's runner needs can be imported."""
        return self.runs_here and (self.runtime_module is None
                                   or importlib.util.find_spec(self.runtime_module) is not None)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a row; returns it."""
    FORMATS[fmt.backend] = fmt
    return fmt


register(Format(
    "ort", ".ort", "runtime", runner=ort_runner, runtime_module="onnxruntime",
    preference=(("fp32", 0), ("int8", 3), ("fp16", 7))))
register(Format(
    "onnx", ".onnx", "runtime", runner=ort_runner, runtime_module="onnxruntime",
    preference=(("fp32", 1), ("int8", 4), ("fp16", 8))))
register(Format(
    "tflite", ".tflite", "litert", runner=tflite_runner, runtime_module="ai_edge_litert",
    preference=(("fp32", 2), ("fp16", 5), ("int8", 6))))
register(Format(
    "coreml", ".mlpackage", "coreml",
    not_here="CoreML packages run only on Apple devices (iOS/macOS); use an ort, onnx or tflite artifact here"))


def get_format(backend: str) -> Format:
    """The row for `backend`; KeyError naming the known ones otherwise."""
    try:
        return FORMATS[backend]
    except KeyError:
        raise KeyError(f"unknown backend {backend!r}; known: {', '.join(FORMATS)}") from None


def backends() -> tuple[str, ...]:
    return tuple(FORMATS)


def runnable() -> tuple[str, ...]:
    """Backends whose files run on this kind of host (a Linux/Windows/Mac CPU)."""
    return tuple(b for b, f in FORMATS.items() if f.runs_here)


def split_artifact(text: str, precision: str | None = None, *, backends=None,
                   labels: tuple[str, str] = ("backend", "precision")) -> tuple[str, str | None]:
    """'ort:int8' -> ('ort', 'int8'); 'ort' -> ('ort', precision): the
    BACKEND[:PRECISION] form of edge-demo --backend, edge-bench --backends and
    Model.from_bundle(backend=...). The backend must be one of `backends`
    (default: those that run here), the precision one of PRECISIONS. A
    precision named both ways must agree (`labels` name the two arguments in
    that error). Raises ValueError."""
    backend, sep, named = str(text).strip().lower().partition(":")
    backends = runnable() if backends is None else tuple(backends)
    if backend not in backends or (sep and named not in PRECISIONS):
        raise ValueError(f"unknown artifact {text!r}; use BACKEND[:PRECISION] with backend {'/'.join(backends)} "
                         f"and precision {'/'.join(PRECISIONS)}, e.g. ort:fp32")
    if sep and precision is not None and precision != named:
        raise ValueError(f"{labels[0]} {text!r} and {labels[1]} {precision!r} disagree; name the precision once "
                         f"({labels[0]} {backend}:{precision} or {backend}:{named})")
    return backend, named or precision


def preference_order() -> tuple[tuple[str, str], ...]:
    """(backend, precision) pairs, best first, from every row's `preference`."""
    ranked = sorted((rank, b, p) for b, f in FORMATS.items() for p, rank in f.preference)
    return tuple((b, p) for _, b, p in ranked)


__all__ = ["Format", "FORMATS", "PRECISIONS", "register", "get_format", "backends", "runnable",
           "preference_order", "split_artifact"]
