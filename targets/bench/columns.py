"""The columns edge-bench can time, as one table: a new backend or int8
recipe is one row here (and, for an artifact, the bundle precision it reads).

kind:
- "pytorch":  the model's graph modules in eager PyTorch
- "artifact": a bundle artifact (backend, precision) through runtime_py.backends
- "sherpa":   sherpa-onnx's C++ OnlineRecognizer on a sherpa-form export
              (`export` = "ours": targets.sherpa's export of this model;
              "package": the zipformer package's own bin/export.py files)
- "client":   our runtime_py client on the very files of a sherpa column
"""

from __future__ import annotations

from dataclasses import dataclass


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Column:
    label: str
    kind: str
    backend: str  # runtime_py backend name (pytorch, ort, onnx, tflite) or "sherpa-onnx"
    precision: str  # the bundle's quantisation label
    export: str | None = None  # sherpa/client columns: "ours" or "package"
    about: str = ""
    search: str = "client"  # the Pipeline's search (pipeline.SEARCHES): "beam" is modified beam search, beam 4;
    # "sherpa" is greedy with at most one symbol per frame, as sherpa-onnx searches


_SHERPA = "sherpa-onnx C++ (OnlineRecognizer, greedy search)"
COLUMNS: dict[str, Column] = {c.label: c for c in (
    Column("pytorch", "pytorch", "pytorch", "fp32", about="PyTorch eager, inference_mode"),
    Column("ort:fp32", "artifact", "ort", "fp32", about="ONNX Runtime, the bundle's .ort fp32"),
    Column("ort:int8", "artifact", "ort", "int8", about="ONNX Runtime, the bundle's .ort int8 (targets.quantize's recipe for the model)"),
    Column("ort:fp32+beam", "artifact", "ort", "fp32", search="beam",
           about="ONNX Runtime, the bundle's .ort fp32, transducer modified beam search (beam 4)"),
    Column("ort:int8+beam", "artifact", "ort", "int8", search="beam",
           about="ONNX Runtime, the bundle's .ort int8, transducer modified beam search (beam 4)"),
    Column("ort:fp32+1sym", "artifact", "ort", "fp32", search="sherpa",
           about="ONNX Runtime, the bundle's .ort fp32, greedy search with at most one symbol per frame "
                 "(sherpa-onnx's rule; the client's default allows 3)"),
    Column("ort:int8+1sym", "artifact", "ort", "int8", search="sherpa",
           about="ONNX Runtime, the bundle's .ort int8, greedy search with at most one symbol per frame"),
    Column("onnx:fp32", "artifact", "onnx", "fp32", about="ONNX Runtime on the bundle's .onnx"),
    Column("onnx:int8", "artifact", "onnx", "int8", about="ONNX Runtime on the bundle's int8 .onnx"),
    Column("tflite:fp32", "artifact", "tflite", "fp32", about="LiteRT, onnx2tf fp32"),
    Column("tflite:fp16", "artifact", "tflite", "fp16", about="LiteRT, onnx2tf fp16 weights"),
    Column("tflite:int8", "artifact", "tflite", "int8", about="LiteRT, onnx2tf int8"),
    Column("sherpa:fp32", "sherpa", "sherpa-onnx", "fp32", "ours", f"{_SHERPA} on our sherpa-form export"),
    Column("sherpa:int8", "sherpa", "sherpa-onnx", "int8", "ours", f"{_SHERPA} on our sherpa-form export, int8 (the bundle's recipe)"),
    Column("client:sherpa-fp32", "client", "onnx", "fp32", "ours",
           "our client (runtime_py, ONNX Runtime) on the very files of sherpa:fp32"),
    Column("client:sherpa-int8", "client", "onnx", "int8", "ours",
           "our client (runtime_py, ONNX Runtime) on the very files of sherpa:int8"),
    Column("sherpa:pkg-fp32", "sherpa", "sherpa-onnx", "fp32", "package",
           f"{_SHERPA} on the zipformer package's own streaming export"),
    Column("sherpa:pkg-int8", "sherpa", "sherpa-onnx", "int8", "package",
           f"{_SHERPA} on the zipformer package's own export, int8 as it makes it (MatMul, QInt8)"),
)}
# names a user may type for a group of columns
ALIASES = {
    "torch": ("pytorch",), "eager": ("pytorch",),
    "ort": ("ort:fp32",), "onnx": ("onnx:fp32",), "tflite": ("tflite:fp32",),
    "sherpa-onnx": ("sherpa:fp32", "sherpa:int8", "client:sherpa-fp32", "client:sherpa-int8",
                    "sherpa:pkg-fp32", "sherpa:pkg-int8"),
}
ALL_BACKENDS = tuple(COLUMNS)
DEFAULT_BACKENDS = ("pytorch", "ort:fp32", "ort:int8", "tflite:fp32")
ARTIFACT_BACKENDS = tuple(dict.fromkeys(c.backend for c in COLUMNS.values() if c.kind == "artifact"))
PRECISIONS = tuple(dict.fromkeys(c.precision for c in COLUMNS.values() if c.kind == "artifact"))


def column(label: str) -> Column:
    return COLUMNS[label]


def parse_backends(spec) -> list[str]:
    """'pytorch,ort:fp32,sherpa-onnx,...' or a list -> column labels, in order, once each."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    out = []
    for item in items:
        item = item.lower()
        labels = ALIASES.get(item, (item,))
        for lb in labels:
            if lb not in COLUMNS:
                raise BenchError(f"unknown backend {item!r}; use one of {', '.join(ALL_BACKENDS)} "
                                 f"(or {', '.join(ALIASES)})")
            if lb not in out:
                out.append(lb)
    if not out:
        raise BenchError("no backend given")
    return out


def parse_threads(spec) -> list[int]:
    items = spec.split(",") if isinstance(spec, str) else spec
    out = sorted({int(t) for t in items if str(t).strip()})
    if not out or out[0] < 1:
        raise BenchError(f"threads must be positive integers, got {spec!r}")
    return out


def split_label(label: str) -> tuple[str, str]:
    """(backend, precision) of a column."""
    c = COLUMNS[label]
    return c.backend, c.precision
