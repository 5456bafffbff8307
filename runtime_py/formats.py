"""The one table of model formats: what each backend's files are, how they are
made, how they run, and which one a client picks first.

Every tool reads this table: edge-build (its targets, `--quant`, `--list`,
conversion dispatch and parity runners), edge-verify, edge-demo and the
session's backend choice, edge-bench, and the manifest's validation. It is
plain data, torch-free, and imports nothing: converters and runners are named
by dotted path ("targets.ort:convert") and loaded only when a tool calls
them, so the Raspberry Pi runtime never imports `targets` or `edge`.

A new backend is one module plus one row: `register(Format(...))`.

The one converter signature (see targets/build/convert.py):
    convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]
options: `work` (a scratch folder), `torch_model` (the PyTorch model, for
converters that start from it), `calibration` (encoder feature chunks).
The one runner signature (see runtime_py/backends.py):
    runner(path, graph, threads=1, strict=False, providers=None) -> run(feeds) -> dict
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

# Every precision a bundle artifact may declare, in the order tools list them.
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Format:
    backend: str  # the name in manifests, --quant/--backend and file names
    suffix: str  # the artifact's file (or folder) suffix
    precisions: tuple[str, ...]  # what edge-build makes of it
    extra: str  # the pip extra (`pip install -e '.[extra]'`) that runs (or, without a runner, builds) it
    converter: str  # "module:function" with the one converter signature
    # (python module, extra) pairs the converter imports: checked before any build work starts
    build_needs: tuple[tuple[str, str], ...] = ()
    runner: str | None = None  # "module:function" with the one runner signature; None: not on this host
    runtime_module: str | None = None  # the package the runner imports (is it installed here?)
    not_here: str = ""  # why it cannot run here, when runner is None
    # A client's preference when the user names no backend: lower first, across all rows; a precision
    # missing here ranks after every listed pair. Exact fp32 first, then the quantised/half-precision
    # files (lower accuracy, checked by token agreement only).
    preference: tuple[tuple[str, int], ...] = ()
    quantized_count: str | None = None  # "module:function" path -> quantised ops/tensors (an int8 check)
    # "module:function" (path, graph) -> parity record, for files that cannot run here (required then)
    inspect: str | None = None

    @property
    def runs_here(self) -> bool:
        return self.runner is not None

    def installed(self) -> bool:
        """Whether the package this format's runner needs can be imported."""
        return self.runs_here and (self.runtime_module is None
                                   or importlib.util.find_spec(self.runtime_module) is not None)


_ORT_NEEDS = (("onnxruntime", "runtime"),)

FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a row; returns it."""
    FORMATS[fmt.backend] = fmt
    return fmt


register(Format(
    "ort", ".ort", ("fp32", "int8"), "runtime", "targets.ort:convert", _ORT_NEEDS,
    runner="runtime_py.backends:ort_runner", runtime_module="onnxruntime",
    preference=(("fp32", 0), ("int8", 3), ("fp16", 7)), quantized_count="targets.ort_ops:quantized_op_count"))
register(Format(
    "onnx", ".onnx", ("fp32",), "runtime", "targets.build.convert:copy_onnx", (("onnx", "export"),),
    runner="runtime_py.backends:ort_runner", runtime_module="onnxruntime",
    preference=(("fp32", 1), ("int8", 4), ("fp16", 8)), quantized_count="targets.ort_ops:quantized_op_count"))
register(Format(
    "tflite", ".tflite", ("fp32", "fp16", "int8"), "litert", "targets.build.convert:tflite",
    (("onnx2tf", "tflite"), ("tensorflow", "tflite"), ("onnxsim", "tflite")),
    runner="runtime_py.backends:tflite_runner", runtime_module="ai_edge_litert",
    preference=(("fp32", 2), ("fp16", 5), ("int8", 6)), quantized_count="targets.tflite:quantized_tensor_count"))
register(Format(
    "coreml", ".mlpackage", ("fp16", "fp32"), "coreml", "targets.build.convert:coreml", (("coremltools", "coreml"),),
    not_here="CoreML packages run only on Apple devices (iOS/macOS); use an ort, onnx or tflite artifact here",
    inspect="targets.build.convert:inspect_coreml"))


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


def all_precisions() -> tuple[str, ...]:
    """Every precision some backend builds, in PRECISIONS order."""
    made = {p for f in FORMATS.values() for p in f.precisions}
    return tuple(p for p in PRECISIONS if p in made) + tuple(sorted(made - set(PRECISIONS)))


def preference_order() -> tuple[tuple[str, str], ...]:
    """(backend, precision) pairs, best first, from every row's `preference`."""
    ranked = sorted((rank, b, p) for b, f in FORMATS.items() for p, rank in f.preference)
    return tuple((b, p) for _, b, p in ranked)


def load(dotted: str):
    """'package.module:function' -> the function (imported now, not before)."""
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["Format", "FORMATS", "PRECISIONS", "register", "get_format", "backends", "runnable",
           "all_precisions", "preference_order", "load"]
