"""Core ML target: one ML program (`.mlpackage`) per graph.

- `to_coreml(model, graph, signature, out_dir, precision)` traces
  `model.graph_module(graph.name)` and converts it with coremltools
  (PyTorch source; coremltools 9 no longer converts ONNX). I/O are declared
  explicitly with the signature's names and shapes. Core ML has no int64
  tensors: an int64 input (the transducer's `y`) is declared int32, which is
  the one dtype mapping (`COREML_DTYPES`) `inspect_mlpackage` accepts. Nor
  rank-0 tensors: a scalar state (a position counter) is shape [1] in the
  package, reshaped inside the traced wrapper (`coreml_shape`).
- The package is made reproducible: coremltools names the two package items
  with random UUIDs in `Manifest.json`; they are replaced by UUIDs derived
  from the item paths, so converting twice gives identical bytes.
- `inspect_mlpackage(path, graph)`: what can be verified on Linux, where Core
  ML cannot execute: I/O names/shapes/dtypes, the MIL op set, deployment
  target, metadata. Raises `CoremlSpecError` when something differs.
- `mlpackage_sha256(path)`: the bundle's folder hash.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np

from runtime_py.signature import METADATA_KEY, GraphSpec
from runtime_py.manifest import sha256_path

from .common import require

PRECISIONS = ("fp16", "fp32")  # what edge-build makes (targets/backends/coreml.py); fp16 first: the default
DEPLOYMENT_TARGET = "iOS16"  # ML program + fp16 I/O support; ~all devices in use
# Core ML specification version per deployment target (coremltools' table).
SPEC_VERSIONS = {"iOS15": 6, "iOS16": 7, "iOS17": 8, "iOS18": 9}
# signature dtype -> Core ML multi-array dtype
COREML_DTYPES = {"float32": "FLOAT32", "int32": "INT32", "int64": "INT32", "bool": "BOOL"}
_UUID_NAMESPACE = uuid.UUID("6b1f0d2e-2c1a-4f43-9d59-7f0e2b8a5e10")


class CoremlSpecError(ValueError):
    """An .mlpackage does not match the signature it is meant to implement."""


def _ct():
    # coremltools imports TensorFlow when it is installed, whose C++ start-up lines ("Could not find cuda
    # drivers") go to fd 2: hidden unless --verbose, like LiteRT's (runtime_py.backends)
    from runtime_py.backends import native_stderr_silenced

    with native_stderr_silenced():
        return require("coremltools", "coreml")


def _register_missing_ops() -> None:
    """Torch ops coremltools 9 has no translation for, written with MIL ops it
    has. logaddexp: icefall's Zipformer activations (SwooshL/R) use it;
    unsafe_chunk: nn.LSTMCell (a recurrent VAD's cell) splits its gates so."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "unsafe_chunk" not in _TORCH_OPS_REGISTRY.name_to_func_mapping:
        def unsafe_chunk(context, node):  # nn.LSTMCell's gate split: torch.chunk without its copy
            x, chunks, dim = _get_inputs(context, node, expected=3)
            axis = int(dim.val) % x.rank
            total, n = x.shape[axis], int(chunks.val)
            size = -(-total // n)  # torch.chunk: ceil-sized pieces, the last one smaller
            sizes = [size] * (total // size) + ([total % size] if total % size else [])
            context.add(mb.split(x=x, split_sizes=sizes, axis=axis, name=node.name), torch_name=node.name)
        register_torch_op(unsafe_chunk)
    if "logaddexp" not in _TORCH_OPS_REGISTRY.name_to_func_mapping:
        def logaddexp(context, node):  # log(e^a + e^b) = max(a, b) + softplus(-|a - b|), exact and overflow-free
            a, b = _get_inputs(context, node, expected=2)
            gap = mb.abs(x=mb.sub(x=a, y=b))
            context.add(mb.add(x=mb.maximum(x=a, y=b), y=mb.softplus(x=mb.mul(x=gap, y=-1.0)), name=node.name))
        register_torch_op(logaddexp)


def to_coreml(model, graph: GraphSpec, signature, out_dir: Path | str, precision: str = "fp16") -> Path:
    """Write `<out_dir>/<graph>.<precision>.mlpackage` (ML program, iOS 16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Core ML precision {precision!r} must be one of {PRECISIONS}")
    ct = _ct()
    _register_missing_ops()
    import torch

    from edge.export import example_inputs

    module = _scalars_as_rank_one(model.graph_module(graph.name).eval(), graph)
    feeds = example_inputs(graph, signature)
    args = tuple(torch.from_numpy(feeds[n]).reshape(coreml_shape(t.shape)) for n, t in
                 zip(graph.input_names, graph.all_inputs()))
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        # shapes the tracer fixes are meant to be fixed (batch 1, one chunk); parity of the
        # ONNX graph from the same step is what proves the trace (as in edge.export)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        traced = torch.jit.trace(module, args, check_trace=False)
    np_dtypes = {"FLOAT32": np.float32, "INT32": np.int32, "BOOL": np.bool_}
    inputs = [ct.TensorType(name=t.name, shape=coreml_shape(t.shape), dtype=np_dtypes[COREML_DTYPES[t.dtype]])
              for t in graph.all_inputs()]
    # Explicit output dtypes: with fp16 compute coremltools would otherwise
    # make float outputs FLOAT16 (iOS16+); the states stay fp32 across calls.
    outputs = [ct.TensorType(name=t.name, dtype=np_dtypes[COREML_DTYPES[t.dtype]]) for t in graph.all_outputs()]
    with _progress_bars_hidden():
        mlmodel = ct.convert(
            traced, inputs=inputs, outputs=outputs, convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            compute_precision=(ct.transform.FP16ComputePrecision(op_selector=_fp16_op)
                               if precision == "fp16" else ct.precision.FLOAT32),
            skip_model_load=True)
    mlmodel.author = "edge-speech"
    mlmodel.short_description = (f"{signature.family} streaming model, graph {graph.name!r} "
                                 f"({precision}); explicit states, see {METADATA_KEY}")
    mlmodel.version = f"schema {signature.schema_version}"
    mlmodel.user_defined_metadata[METADATA_KEY] = signature.to_json()
    mlmodel.user_defined_metadata["edge.graph"] = graph.name
    mlmodel.user_defined_metadata["edge.precision"] = precision
    for t in graph.all_inputs():
        if t.doc:
            mlmodel.input_description[t.name] = t.doc
    for t in graph.all_outputs():
        if t.doc:
            mlmodel.output_description[t.name] = t.doc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{graph.name}.{precision}.mlpackage"
    if path.exists():
        import shutil
        shutil.rmtree(path)
    mlmodel.save(str(path))
    _deterministic_spec(path)
    _deterministic_manifest(path)
    return path


def _progress_bars_hidden():
    """coremltools draws a tqdm bar per conversion pass on sys.stderr (five per
    graph): hidden unless --verbose (EDGE_SPEECH_VERBOSE). Our own progress
    line holds its own stream and keeps going; errors arrive as exceptions."""
    import contextlib
    import io
    import os

    if os.environ.get("EDGE_SPEECH_VERBOSE"):
        return contextlib.nullcontext()
    return contextlib.redirect_stderr(io.StringIO())


def coreml_shape(shape: tuple) -> tuple:
    """Core ML refuses rank-0 tensors ("Rank-0 (input None) is unsupported"):
    a scalar (WeNet's offset counter) is a [1] array in the .mlpackage, and
    the app feeds and reads it as [1] (the card and the inspect report say so)."""
    return tuple(shape) if len(shape) else (1,)


def _rank_one_scalars():
    import torch

    class RankOneScalars(torch.nn.Module):
        """The graph with each rank-0 input taken as [1] and each rank-0
        output given as [1]; reshaped inside, so the step sees its scalars."""

        def __init__(self, inner, graph: GraphSpec):
            super().__init__()
            self.inner = inner
            self.scalar_in = [not t.shape for t in graph.all_inputs()]
            self.scalar_out = [not t.shape for t in graph.all_outputs()]

        def forward(self, *args):
            args = [a.reshape(()) if s else a for a, s in zip(args, self.scalar_in)]
            outs = self.inner(*args)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            return tuple(o.reshape(1) if s else o for o, s in zip(outs, self.scalar_out))
    return RankOneScalars


def _scalars_as_rank_one(inner, graph: GraphSpec):
    if not any(not t.shape for t in list(graph.all_inputs()) + list(graph.all_outputs())):
        return inner  # nothing to reshape: trace the graph module itself
    return _rank_one_scalars()(inner, graph)


def _fp16_op(op) -> bool:
    """fp16 everywhere except log-softmax (coremltools lowers it to softmax then
    log): in fp16 a small probability underflows to 0 and its log to -inf;
    and except an audio-in encoder's frontend (ops named after its fbank_*
    variables, and the ops reading them): samples scaled to the int16 range
    give powers up to ~1e16 (fp16 stops at 65504) and 16-bit samples need
    more than fp16's 11 bits."""
    if _frontend_op(op):
        return False
    if op.op_type == "log":
        return False
    if op.op_type == "softmax":
        return not any(child.op_type == "log" for out in op.outputs for child in out.child_ops)
    return True


def _frontend_op(op) -> bool:
    from runtime_py.audio_in import FRONTEND_OP_PREFIX

    names = [op.name]
    for v in op.inputs.values():
        names += [x.name for x in (v if isinstance(v, (list, tuple)) else [v]) if hasattr(x, "name")]
    return any(n.startswith(FRONTEND_OP_PREFIX) for n in names)


SPEC_FILE = "Data/com.apple.CoreML/model.mlmodel"
CONVERSION_DATE_KEY = "com.github.apple.coremltools.conversion_date"


def _deterministic_spec(package: Path) -> None:
    """Rewrite the model spec with protobuf's deterministic serialisation,
    without coremltools' conversion date: it writes the user-defined
    metadata map in hash order, which changes from one Python process to the
    next, and stamps the day of the build ("...conversion_date":
    "2026-12-05"), so two builds of the same model gave different bytes."""
    from coremltools.proto import Model_pb2

    path = package / SPEC_FILE
    spec = Model_pb2.Model()
    spec.ParseFromString(path.read_bytes())
    spec.description.metadata.userDefined.pop(CONVERSION_DATE_KEY, None)
    path.write_bytes(spec.SerializeToString(deterministic=True))


def _deterministic_manifest(package: Path) -> None:
    """Replace the random item UUIDs of Manifest.json by ones derived from each
    item's path, and write it with sorted keys."""
    manifest = package / "Manifest.json"
    data = json.loads(manifest.read_text())
    entries = data.get("itemInfoEntries", {})
    mapping = {old: str(uuid.uuid5(_UUID_NAMESPACE, info["path"])).upper() for old, info in entries.items()}
    data["itemInfoEntries"] = {mapping[old]: info for old, info in entries.items()}
    if data.get("rootModelIdentifier") in mapping:
        data["rootModelIdentifier"] = mapping[data["rootModelIdentifier"]]
    manifest.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n")


def mlpackage_sha256(path: Path | str) -> str:
    """sha256 over the sorted `relpath\\0sha256\\n` lines of the package's files."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not an .mlpackage folder")
    return sha256_path(root)  # the manifest's folder rule, so both agree


# -- inspection ---------------------------------------------------------------

def _load_spec(path: Path):
    _ct()
    from runtime_py.modelio import coreml_spec  # the one reader; the client checks I/O with it too

    return coreml_spec(path)


def _ops(block, acc: list) -> None:
    for op in block.operations:
        acc.append(op.type)
        for inner in op.blocks:
            _ops(inner, acc)


def compute_dtypes(spec) -> dict:
    """Which ops of the ML program compute in float16 and which in float32,
    read from each op's output dtype (consts and casts compute nothing): the
    float32 ones split into the in-graph frontend's (FRONTEND_OP_PREFIX
    names, which `_fp16_op` keeps) and the rest by op type (the log of a
    log-softmax, which `_fp16_op` keeps, and whatever coremltools itself
    keeps, e.g. its lstm). The card describes an .mlpackage from this."""
    from coremltools.proto import MIL_pb2

    from runtime_py.audio_in import FRONTEND_OP_PREFIX

    f16, f32 = MIL_pb2.DataType.Value("FLOAT16"), MIL_pb2.DataType.Value("FLOAT32")
    out: dict = {"float16_ops": 0, "float32_frontend_ops": 0, "float32_other_ops": {}}

    def walk(block):
        for op in block.operations:
            for inner in op.blocks:
                walk(inner)
            if op.type in ("const", "cast"):
                continue
            dtypes = {o.type.tensorType.dataType for o in op.outputs}
            names = [o.name for o in op.outputs] + [a.name for v in op.inputs.values() for a in v.arguments if a.name]
            if f16 in dtypes:
                out["float16_ops"] += 1
            elif f32 in dtypes and any(n.startswith(FRONTEND_OP_PREFIX) for n in names):
                out["float32_frontend_ops"] += 1
            elif f32 in dtypes:
                out["float32_other_ops"][op.type] = out["float32_other_ops"].get(op.type, 0) + 1

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            walk(block)
    out["float32_other_ops"] = dict(sorted(out["float32_other_ops"].items()))
    return out


def inspect_mlpackage(path: Path | str, graph: GraphSpec) -> dict:
    """Check an .mlpackage's spec against the graph's signature, without
    running it. Returns a report; raises CoremlSpecError on a mismatch."""
    from coremltools.proto import FeatureTypes_pb2

    path = Path(path)
    spec = _load_spec(path)
    dt_names = {v: k for k, v in FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}

    def describe(features):
        out = []
        for f in features:
            arr = f.type.multiArrayType
            out.append((f.name, tuple(int(d) for d in arr.shape), dt_names.get(arr.dataType, str(arr.dataType))))
        return out

    problems = []
    want_in = [(t.name, coreml_shape(t.shape), COREML_DTYPES[t.dtype]) for t in graph.all_inputs()]
    want_out = [(t.name, coreml_shape(t.shape), COREML_DTYPES[t.dtype]) for t in graph.all_outputs()]
    got_in, got_out = describe(spec.description.input), describe(spec.description.output)
    if got_in != want_in:
        problems.append(f"inputs {got_in} != signature {want_in}")
    if got_out != want_out:
        problems.append(f"outputs {got_out} != signature {want_out}")
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type is {spec.WhichOneof('Type')!r}, not an ML program")
    want_version = SPEC_VERSIONS[DEPLOYMENT_TARGET]
    if spec.specificationVersion < want_version:
        problems.append(f"specification version {spec.specificationVersion} < {want_version} ({DEPLOYMENT_TARGET})")
    meta = spec.description.metadata
    user = dict(meta.userDefined)
    if METADATA_KEY not in user:
        problems.append(f"user_defined_metadata lacks {METADATA_KEY!r}")
    else:
        from runtime_py.signature import Signature

        embedded = Signature.from_json(user[METADATA_KEY])
        if embedded.graph(graph.name) != graph:
            problems.append(f"embedded signature's graph {graph.name!r} differs from the expected one")
    if not meta.author or not meta.shortDescription:
        problems.append("author/short description missing")

    ops: list[str] = []
    if spec.WhichOneof("Type") == "mlProgram":
        for fn in spec.mlProgram.functions.values():
            for block in fn.block_specializations.values():
                _ops(block, ops)
    if not ops:
        problems.append("the ML program has no operations")
    if problems:
        raise CoremlSpecError(f"{path.name} does not implement graph {graph.name!r}:\n  " + "\n  ".join(problems))

    target = next((k for k, v in sorted(SPEC_VERSIONS.items(), key=lambda kv: kv[1])
                   if v == spec.specificationVersion), f"spec {spec.specificationVersion}")
    checks = {"inputs": got_in, "outputs": got_out, "ml_program": True,
              "specification_version": spec.specificationVersion, "deployment_target": target,
              "metadata": sorted(user), "author": meta.author, "op_count": len(ops),
              "compute": compute_dtypes(spec)}
    scalars = [t.name for t in list(graph.all_inputs()) + list(graph.all_outputs()) if not t.shape]
    if scalars:
        checks["rank0_as_shape_1"] = scalars  # the app feeds and reads these as [1] arrays
    return {
        "verified": False,
        "reason": (f"CoreML cannot execute on Linux; verified spec: I/O names, shapes and dtypes equal "
                   f"the signature (int64 declared as int32"
                   + (f"; rank-0 {', '.join(scalars)} as shape [1]" if scalars else "") + f"), ML program for {target}, "
                   f"{len(ops)} MIL ops, {METADATA_KEY} metadata embedded"),
        "spec_checks": checks,
        "ops": sorted(set(ops)),
    }
