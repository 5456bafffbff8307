"""A model file's own inputs and outputs, compared with the graph declared for it.

A bundle's manifest declares each graph's inputs, outputs and states (names,
shapes, dtypes); the model file knows its own. Every runner
(`backends.open_runner`) compares the two as it opens a file, before the
client allocates a state, so a manifest that does not describe its model
files is one error naming the tensor, both shapes and the file, instead of a
runtime error at the first chunk. CoreML files, which do not run here, are
compared from their spec where coremltools is installed.

What is compared (`first_disagreement`):
- names: every declared input and state is an input of the file, and the
  file has no input left unfed; every declared output and `<state>_next` is
  an output of the file (a file may have more outputs: they are not asked for);
- shapes: the same rank and the same size on every fixed axis; an axis the
  file leaves dynamic (a symbolic ONNX dim, -1 in a LiteRT shape signature,
  a CoreML shape range) matches any declared size;
- dtypes: equal, except where a runner converts: LiteRT and CoreML files
  may hold a declared int64 as int32 (the LiteRT runner casts, CoreML has
  no int64).

Torch-free; coremltools is imported only to read a CoreML spec.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .signature import GraphSpec, TensorSpec

# declared dtype -> the dtypes a file of that backend may hold for it (default: the same)
CONVERTED_DTYPES = {"tflite": {"int64": ("int64", "int32")}, "coreml": {"int64": ("int32",)}}
# ONNX Runtime's type strings and CoreML's ArrayDataType names, as numpy dtype names
_ORT_TYPES = {"float": "float32", "double": "float64"}
_COREML_TYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32"}


@dataclass(frozen=True)
class FileTensor:
    """One input or output as the model file describes it. A None dim is
    dynamic; a None shape is unknown (matches any)."""
    name: str
    shape: tuple[int | None, ...] | None
    dtype: str


def _dims(shape, dynamic=lambda d: not isinstance(d, int) or d < 0) -> tuple[int | None, ...]:
    return tuple(None if dynamic(d) else int(d) for d in shape)


def ort_io(session) -> tuple[list[FileTensor], list[FileTensor]]:
    """An onnxruntime InferenceSession's inputs and outputs (symbolic dims
    are strings or None there)."""
    def one(t):
        kind = t.type[len("tensor("):-1] if t.type.startswith("tensor(") else t.type
        shape = None if t.shape is None else _dims(t.shape)
        return FileTensor(t.name, shape, _ORT_TYPES.get(kind, kind))
    return [one(t) for t in session.get_inputs()], [one(t) for t in session.get_outputs()]


def tflite_tensor(name: str, details: dict) -> FileTensor:
    """A LiteRT signature runner's input/output details, under `name`."""
    shape = details.get("shape_signature")
    shape = details["shape"] if shape is None or len(shape) != len(details["shape"]) else shape
    return FileTensor(name, _dims([int(d) for d in shape]), np.dtype(details["dtype"]).name)


def coreml_spec(path: Path | str):
    """The Model protobuf of an .mlpackage (needs coremltools' proto module)."""
    from coremltools.proto import Model_pb2

    path = Path(path)
    manifest = json.loads((path / "Manifest.json").read_text())
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    spec = Model_pb2.Model()
    spec.ParseFromString((path / "Data" / root["path"]).read_bytes())
    return spec


def coreml_io(path: Path | str) -> tuple[list[FileTensor], list[FileTensor]]:
    from coremltools.proto import FeatureTypes_pb2

    names = {v: k for k, v in FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}

    def one(f):
        arr = f.type.multiArrayType
        flexible = arr.WhichOneof("ShapeFlexibility") is not None
        shape = tuple(None if flexible else int(d) for d in arr.shape)
        name = names.get(arr.dataType, str(arr.dataType))
        return FileTensor(f.name, shape, _COREML_TYPES.get(name, name.lower()))
    spec = coreml_spec(path)
    return [one(f) for f in spec.description.input], [one(f) for f in spec.description.output]


def _shape_differs(declared: tuple[int, ...], got) -> bool:
    if got is None:
        return False
    return len(declared) != len(got) or any(g is not None and g != d for d, g in zip(declared, got))


def _show(shape) -> str:
    return "unknown" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def first_disagreement(graph: GraphSpec, inputs: list[FileTensor], outputs: list[FileTensor],
                       file_name: str, backend: str = "ort") -> str | None:
    """The first way the file's I/O differs from the declared graph, as one
    sentence naming the tensor, both shapes and the file; None when it agrees."""
    declared_in = [("input", t) for t in graph.inputs] + [("state", s) for s in graph.states]
    declared_out = [("output", t) for t in graph.outputs] + [
        ("state output", TensorSpec(s.next_name, s.shape, s.dtype)) for s in graph.states]
    accepted = CONVERTED_DTYPES.get(backend, {})
    where = f"graph {graph.name!r}"
    for side, declared, have in (("input", declared_in, inputs), ("output", declared_out, outputs)):
        names = [t.name for _, t in declared]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            return f"{where} declares {side} {twice[0]!r} twice; {file_name} has one"
        by_name = {t.name: t for t in have}
        for kind, t in declared:
            got = by_name.get(t.name)
            if got is None:
                return (f"{where} declares {kind} {t.name!r} {list(t.shape)}, but {file_name} has no such "
                        f"{side}; its {side}s are {sorted(by_name)}")
            if _shape_differs(t.shape, got.shape):
                return (f"{kind} {t.name!r} of {where} is declared {list(t.shape)}, "
                        f"but {file_name} has {_show(got.shape)}")
            if got.dtype not in accepted.get(t.dtype, (t.dtype,)):
                return (f"{kind} {t.name!r} of {where} is declared {t.dtype}, but {file_name} holds "
                        f"{got.dtype}")
        unfed = [t.name for t in have if t.name not in names] if side == "input" else []
        if unfed:
            return f"{file_name} has input {unfed[0]!r}, which {where} does not declare (nothing would feed it)"
    return None
