"""ONNX export derived entirely from a family's signature.

`export_onnx(model, out_dir)` writes one `<graph>.onnx` per graph (opset 17,
TorchScript exporter, fixed shapes), embeds the signature in every file's
metadata, and checks that the file's I/O names, shapes and dtypes are exactly
the declared ones. `torch_runner` and `onnx_runner` turn a graph into the
`run(feeds) -> dict` callable the shared state loop drives, so parity is
checked with the same loop the client uses.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from runtime_py.stateloop import TOLERANCES, compare_rollouts, initial_states, within
from .families.base import StreamingModel
from .signature import GraphSpec, Signature

OPSET = 17
METADATA_KEY = "edge.signature"
_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64,
                "int32": onnx.TensorProto.INT32, "bool": onnx.TensorProto.BOOL}


class ExportError(RuntimeError):
    pass


def _random_input(t, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    if t.dtype.startswith("int"):
        return rng.integers(0, vocab_size, size=t.shape).astype(t.dtype)
    return rng.standard_normal(t.shape).astype(np.float32)


def example_inputs(graph: GraphSpec, signature: Signature, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs of the declared shapes (features ~ N(0, 1), tokens from
    the vocabulary) with every state at its initial value."""
    rng = np.random.default_rng(seed)
    feeds = {t.name: _random_input(t, signature.vocab_size, rng) for t in graph.inputs}
    feeds.update(initial_states(graph))
    return feeds


def random_chunks(graph: GraphSpec, signature: Signature, n: int, seed: int = 0) -> list[dict]:
    """n seeded chunks of the graph's non-state inputs, for rollouts."""
    rng = np.random.default_rng(seed)
    return [{t.name: _random_input(t, signature.vocab_size, rng) for t in graph.inputs} for _ in range(n)]


def torch_runner(model: StreamingModel, graph: GraphSpec):
    module = model.graph_module(graph.name).eval()
    names = graph.input_names
    out_names = graph.output_names

    @torch.no_grad()
    def run(feeds: dict) -> dict:
        outs = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names])
        return {n: o.numpy() for n, o in zip(out_names, outs)}
    return run


def onnx_runner(path: Path | str, graph: GraphSpec, threads: int = 1):
    """ONNX Runtime on an exported graph: the client's runner (runtime_py.backends)."""
    from runtime_py.backends import open_runner

    return open_runner(path, graph, "onnx", threads)


def batch_axes(graph: GraphSpec) -> tuple[list[int], list[int]]:
    """The batch axis of every input and output: 0, or the state's own."""
    return ([0] * len(graph.inputs) + [s.batch_axis for s in graph.states],
            [0] * len(graph.outputs) + [s.batch_axis for s in graph.states])


def _check_io(model_proto: onnx.ModelProto, graph: GraphSpec, dynamic_batch: bool = False) -> None:
    """Names, dtypes and shapes as declared; with dynamic_batch the batch axis
    is symbolic (-1 here) and every other dim fixed."""
    def describe(values):
        out = []
        for v in values:
            tt = v.type.tensor_type
            out.append((v.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim),
                        tt.elem_type))
        return out

    def want(specs, axes):
        return [(t.name, tuple(-1 if dynamic_batch and k == ax else d for k, d in enumerate(t.shape)),
                 _ONNX_DTYPES[t.dtype]) for t, ax in zip(specs, axes)]

    in_axes, out_axes = batch_axes(graph)
    want_in, want_out = want(graph.all_inputs(), in_axes), want(graph.all_outputs(), out_axes)
    if dynamic_batch:
        # The exporter leaves dims computed by reshapes symbolic: declare the outputs' fixed dims.
        for v, (name, shape, _) in zip(model_proto.graph.output, want_out):
            dims = v.type.tensor_type.shape.dim
            if v.name == name and len(dims) == len(shape):
                for d, n in zip(dims, shape):
                    if n >= 0 and not d.HasField("dim_value"):
                        d.dim_value = n
    init_names = {i.name for i in model_proto.graph.initializer}
    got_in = [x for x in describe(model_proto.graph.input) if x[0] not in init_names]
    got_out = describe(model_proto.graph.output)
    if got_in != want_in or got_out != want_out:
        raise ExportError(
            f"graph {graph.name!r}: exported I/O differs from the signature\n"
            f"  inputs  got {got_in}\n          want {want_in}\n"
            f"  outputs got {got_out}\n          want {want_out}\n"
            "An input the step does not use is dropped by the exporter; a state must flow to its *_next.")


def embed_metadata(model_proto: onnx.ModelProto, signature: Signature, graph: GraphSpec,
                   extra: dict | None = None) -> None:
    meta = {METADATA_KEY: signature.to_json(), "edge.graph": graph.name, "edge.family": signature.family,
            "edge.schema_version": str(signature.schema_version)}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    existing = {p.key: p for p in model_proto.metadata_props}
    for key in sorted(meta):
        if key in existing:
            existing[key].value = meta[key]
        else:
            model_proto.metadata_props.add(key=key, value=meta[key])


def read_signature(path: Path | str) -> Signature:
    """The signature embedded in an exported ONNX file."""
    m = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in m.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: no {METADATA_KEY!r} metadata; it was not exported by edge-export")
    return Signature.from_json(props[METADATA_KEY])


def export_graph(model: StreamingModel, graph: GraphSpec, path: Path, signature: Signature,
                 extra_metadata: dict | None = None, dynamic_batch: bool = False) -> Path:
    """One graph to `path`. dynamic_batch (opt-in; bundles keep batch 1, which
    mobile targets want) makes the batch axis of every input, output and state
    symbolic "N", for runtimes that stack streams (sherpa-onnx decode_streams)."""
    module = model.graph_module(graph.name).eval()
    feeds = example_inputs(graph, signature)
    args = tuple(torch.from_numpy(feeds[n]) for n in graph.input_names)
    dynamic = None
    if dynamic_batch:
        in_axes, out_axes = batch_axes(graph)
        dynamic = {t.name: {ax: "N"} for t, ax in zip(graph.all_inputs(), in_axes)}
        dynamic.update({t.name: {ax: "N"} for t, ax in zip(graph.all_outputs(), out_axes)})
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The families branch on the batch size (`if b == 1`: 3-D tensors for
            # the batch-1 step); the exported signature fixes batch 1, so the
            # tracer's "treated as a constant" is the intent there. Tracer
            # warnings from anywhere else still show.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"edge\.families\.")
            # A user's model (edge.declare) warns the same way on every assert
            # and shape branch: parity over a long rollout with the states
            # carried is what shows whether a traced constant was wrong.
            if not isinstance(model, StreamingModel) or getattr(model, "steps", None) is not None:
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(module, args, buf, input_names=graph.input_names,
                              output_names=graph.output_names, opset_version=OPSET, dynamic_axes=dynamic,
                              dynamo=False, do_constant_folding=True)
    except Exception as e:  # the exporter's own message names the op; add where it happened
        raise ExportError(f"exporting graph {graph.name!r} of family {signature.family!r} failed: "
                          f"{type(e).__name__}: {e}") from e
    proto = onnx.load_from_string(buf.getvalue())
    _check_io(proto, graph, dynamic_batch)
    embed_metadata(proto, signature, graph, extra_metadata)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


def export_onnx(model: StreamingModel, out_dir: Path | str, extra_metadata: dict | None = None) -> dict[str, Path]:
    """Export every graph of the model's signature to `out_dir/<graph>.onnx`."""
    out_dir = Path(out_dir)
    model = model.eval()
    signature = model.signature()
    paths = {}
    for graph in signature.graphs:
        paths[graph.name] = export_graph(model, graph, out_dir / f"{graph.name}.onnx", signature, extra_metadata)
    (out_dir / "signature.json").write_text(json.dumps(signature.to_dict(), indent=2, sort_keys=True) + "\n")
    return paths


FP32_TOLERANCE = TOLERANCES["fp32"]


def check_onnx_parity(model: StreamingModel, paths: dict[str, Path], chunks: int = 200,
                      seed: int = 0, inputs: dict[str, list[dict]] | None = None) -> dict[str, dict]:
    """Roll PyTorch and ONNX Runtime over the same chunks for every graph.
    `inputs` may give real chunks per graph; otherwise seeded random ones."""
    signature = model.signature()
    report = {}
    for graph in signature.graphs:
        seq = (inputs or {}).get(graph.name) or random_chunks(graph, signature, chunks, seed)
        r = compare_rollouts(graph, torch_runner(model, graph), onnx_runner(paths[graph.name], graph), seq)
        r.pop("per_chunk")
        r["tolerance"] = FP32_TOLERANCE
        r["passed"] = within(r, FP32_TOLERANCE)
        report[graph.name] = r
    return report
