"""ONNX export derived entirely from a family's signature.

`export_onnx(model, out_dir)` writes one `<graph>.onnx` per graph (opset 17,
TorchScript exporter, fixed shapes), embeds the signature in every file's
metadata, and checks that the file's I/O names, shapes and dtypes are exactly
the declared ones.

`export_onnx(model, out_dir, dynamic_batch=True)` (ONNX / ONNX Runtime only:
LiteRT and CoreML keep batch 1) names axis 0 of every input and output and
each state's `batch_axis` "batch", traced at batch 2 so the families' batch-1
shortcuts are not baked in, and records `dynamic_batch` on every graph of
the embedded signature, so a client (runtime_py.stream.Model.decode_streams)
knows it may stack streams. Every state then needs a batch axis. `torch_runner` and `onnx_runner` turn a graph into the
`run(feeds) -> dict` callable the shared state loop drives, so parity is
checked with the same loop the client uses.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from runtime_py.stateloop import TOLERANCES, StateLoop, compare_rollouts, initial_states, within
from runtime_py.stream import stack, unstack
from .families.base import StreamingModel
from runtime_py.signature import METADATA_KEY, ONNX_ELEM_TYPES
from .signature import GraphSpec, Signature

OPSET = 17  # the one opset every exported graph uses


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


def torch_runner(model: StreamingModel, graph: GraphSpec, unclamped: bool = False):
    """PyTorch on one graph as run(feeds) -> dict. unclamped: the user's own
    step with its counters running past their declared max (a declared
    model's unclamped_module), what the stream proof compares against."""
    make = getattr(model, "unclamped_module", None) if unclamped else None
    module = (make(graph.name) if make else model.graph_module(graph.name)).eval()
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


BATCH_DIM = "batch"  # the name of the dynamic batch axis in a dynamic_batch export


def batch_axes(graph: GraphSpec) -> dict[str, int]:
    """Input/output name -> its batch axis: 0 for inputs and outputs, the
    declared batch_axis for a state and its `_next`."""
    axes = {t.name: 0 for t in list(graph.inputs) + list(graph.outputs)}
    for s in graph.states:
        if s.batch_axis is None:
            raise ExportError(f"graph {graph.name!r}: state {s.name!r} has no batch axis, so the graph cannot "
                              "take a dynamic batch; export it without a batch axis (no --dynamic-batch)")
        axes[s.name] = axes[s.next_name] = s.batch_axis
    return axes


def _groups(graph: GraphSpec) -> dict[str, int]:
    groups = {t.name: 1 for t in list(graph.inputs) + list(graph.outputs)}
    for s in graph.states:
        groups[s.name] = groups[s.next_name] = s.batch_groups
    return groups


BATCH_TOLERANCE = 1e-4  # relative: fp32, a batch only changes the summation order


def stream_feeds(graph: GraphSpec, signature: Signature, run, streams: int, chunks: int) -> list[dict]:
    """Each of `streams` seeded streams rolled over `chunks - 1` random chunks
    on its own: the complete feeds (input and states) of its last chunk."""
    feeds = []
    for seed in range(streams):
        loop = StateLoop(graph, run)
        seq = random_chunks(graph, signature, chunks, seed=seed)
        for c in seq[:-1]:
            loop.step(c)
        feeds.append(loop.feeds(seq[-1]))
    return feeds


def batch_mismatch(graph: GraphSpec, got: dict, wants: list[dict]) -> tuple[int, str] | None:
    """(stream, output) of the first batched output that is not that stream's
    own result, split by the graph's batch axes and groups; None if all match."""
    axes, groups = batch_axes(graph), _groups(graph)
    for name in graph.output_names:
        parts = unstack(got[name], len(wants), axes[name], groups[name])
        for i, (want, part) in enumerate(zip((w[name] for w in wants), parts)):
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
            if part.shape != want.shape or float(np.max(np.abs(part - want), initial=0.0)) > BATCH_TOLERANCE * scale:
                return i, name
    return None


def batch_layout(model: StreamingModel, graph: GraphSpec, signature: Signature) -> GraphSpec:
    """The graph marked dynamic_batch, with the batch_groups of each state
    found by running PyTorch: two streams, each rolled 3 seeded chunks on its
    own, must give the same outputs and next states when stacked as one batch
    (relative 1e-4: fp32, only summation order differs). A layer-major cache
    whose batch sits inside each layer's block (the conformer's) needs
    groups = layers; the smallest grouping that matches is taken."""
    axes = batch_axes(graph)
    if not graph.states:
        return replace(graph, dynamic_batch=True)
    run = torch_runner(model, graph)
    feeds = stream_feeds(graph, signature, run, streams=2, chunks=3)
    results = [run(f) for f in feeds]
    lengths = {s.name: s.shape[s.batch_axis] for s in graph.states}
    for g in sorted({d for n in lengths.values() for d in range(1, n + 1) if n % d == 0}):
        states = tuple(replace(s, batch_groups=g if lengths[s.name] % g == 0 else 1) for s in graph.states)
        candidate = replace(graph, states=states, dynamic_batch=True)
        groups = _groups(candidate)
        try:
            got = run({n: stack([f[n] for f in feeds], axes[n], groups[n]) for n in feeds[0]})
        except Exception:  # noqa: BLE001 - a wrong stacking can make the model raise
            continue
        if batch_mismatch(candidate, got, results) is None:
            return candidate
    raise ExportError(f"graph {graph.name!r}: no stacking of the states along their batch axes gives each "
                      "stream's own result; the model may mix streams, export it without a batch axis (no --dynamic-batch)")


def _declare_output_shapes(model_proto: onnx.ModelProto, graph: GraphSpec) -> None:
    """With dynamic axes the tracer names every output dim it cannot prove
    fixed ('Castattn_cache_next_dim_1'); the signature knows them: write the
    declared shapes, the batch axis named BATCH_DIM."""
    axes = batch_axes(graph)
    specs = {t.name: t for t in graph.all_outputs()}
    for v in model_proto.graph.output:
        t = specs.get(v.name)
        if t is None:
            continue
        dims = v.type.tensor_type.shape.dim
        del dims[:]
        for i, d in enumerate(t.shape):
            if axes.get(t.name) == i:
                dims.add().dim_param = BATCH_DIM
            else:
                dims.add().dim_value = d


def _check_io(model_proto: onnx.ModelProto, graph: GraphSpec) -> None:
    def describe(values):
        out = []
        for v in values:
            tt = v.type.tensor_type
            out.append((v.name, tuple(d.dim_param or d.dim_value for d in tt.shape.dim), tt.elem_type))
        return out

    axes = batch_axes(graph) if graph.dynamic_batch else {}

    def shape(t):
        return tuple(BATCH_DIM if axes.get(t.name) == i else d for i, d in enumerate(t.shape))

    init_names = {i.name for i in model_proto.graph.initializer}
    got_in = [x for x in describe(model_proto.graph.input) if x[0] not in init_names]
    want_in = [(t.name, shape(t), ONNX_ELEM_TYPES[t.dtype]) for t in graph.all_inputs()]
    got_out = describe(model_proto.graph.output)
    want_out = [(t.name, shape(t), ONNX_ELEM_TYPES[t.dtype]) for t in graph.all_outputs()]
    if got_in != want_in or got_out != want_out:
        what = io_differences("input", got_in, want_in) + io_differences("output", got_out, want_out)
        raise ExportError(
            f"graph {graph.name!r}: exported I/O differs from the signature: " + "; ".join(what) + "\n"
            f"  inputs  got {got_in}\n          want {want_in}\n"
            f"  outputs got {got_out}\n          want {want_out}")


_DTYPE_NAMES = {v: k for k, v in ONNX_ELEM_TYPES.items()}


def io_differences(kind: str, got: list[tuple], want: list[tuple]) -> list[str]:
    """Each way the exported (name, shape, elem type) list differs from the
    declared one, in words that say what to change."""
    got_by, want_by = {g[0]: g for g in got}, {w[0]: w for w in want}
    out = []
    for name in [w[0] for w in want if w[0] not in got_by]:
        out.append(f"{kind} {name!r} is missing" + (
            ": the exporter drops an input the step does not use (a state must flow into the computation of "
            "its *_next, a feature input into an output)" if kind == "input" else ""))
    for name in [g[0] for g in got if g[0] not in want_by]:
        out.append(f"{kind} {name!r} is not in the signature")
    for name, shape, elem in want:
        if name not in got_by:
            continue
        _, got_shape, got_elem = got_by[name]
        if got_elem != elem:
            out.append(f"{kind} {name!r} is {_DTYPE_NAMES.get(got_elem, got_elem)}, the signature says "
                       f"{_DTYPE_NAMES.get(elem, elem)}: cast it in the step")
        if len(got_shape) != len(shape):
            out.append(f"{kind} {name!r} has rank {len(got_shape)} {tuple(got_shape)}, the signature says "
                       f"{tuple(shape)}")
            continue
        for i, (g, w) in enumerate(zip(got_shape, shape)):
            if g == w:
                continue
            if isinstance(g, str) and not isinstance(w, str):
                out.append(f"{kind} {name!r} dimension {i} is symbolic ({g!r}), the signature says {w}: pin it "
                           f"with a reshape to {tuple(shape)} in the step (the tracer keeps a size it computed "
                           "from a tensor's shape)")
            else:
                out.append(f"{kind} {name!r} dimension {i} is {g!r}, the signature says {w!r}")
    if not out and [g[0] for g in got] != [w[0] for w in want]:
        out.append(f"{kind}s are in the order {[g[0] for g in got]}, the signature's order is "
                   f"{[w[0] for w in want]}")
    return out


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
                 extra_metadata: dict | None = None) -> Path:
    """One graph to `path`. When `graph.dynamic_batch` (see export_onnx), the
    batch axes are dynamic and the trace runs at batch 2."""
    module = model.graph_module(graph.name).eval()
    feeds = example_inputs(graph, signature)
    dynamic_axes = None
    if graph.dynamic_batch:
        axes = batch_axes(graph)
        second, groups = example_inputs(graph, signature, seed=1), _groups(graph)
        feeds = {n: stack([v, second[n]], axes[n], groups[n]) for n, v in feeds.items()}
        dynamic_axes = {n: {ax: BATCH_DIM} for n, ax in axes.items()}
    args = tuple(torch.from_numpy(feeds[n]) for n in graph.input_names)
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
                              output_names=graph.output_names, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True, dynamic_axes=dynamic_axes)
    except Exception as e:  # the exporter's own message names the op; add where it happened
        raise ExportError(f"exporting graph {graph.name!r} of family {signature.family!r} failed: "
                          f"{type(e).__name__}: {e}") from e
    proto = onnx.load_from_string(buf.getvalue())
    if graph.dynamic_batch:
        _declare_output_shapes(proto, graph)
    _check_io(proto, graph)
    embed_metadata(proto, signature, graph, extra_metadata)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path


CHECK_BATCH = 3  # not the traced batch (2): a batch size the tracer baked into the graph shows here


def check_batch(path: Path, graph: GraphSpec, signature: Signature, n: int = CHECK_BATCH) -> None:
    """The exported batch-axis graph, in ONNX Runtime, run on n streams
    stacked must give each stream's own batch-1 result (relative 1e-4, as in
    batch_layout). A model whose code turns a size into a Python number
    (`x.size(0)` used as an int) gets that number baked in by the tracer and
    fails here, with the node ONNX Runtime names, instead of in a client."""
    axes, groups = batch_axes(graph), _groups(graph)
    try:  # batch 1 first: a graph traced at batch 2 may not even run at 1
        run = onnx_runner(path, graph)  # its I/O check sees a batch size baked into an output's shape
        feeds = stream_feeds(graph, signature, run, streams=n, chunks=2)
        got = run({k: stack([f[k] for f in feeds], axes[k], groups[k]) for k in feeds[0]})
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's own error types, a next state of the wrong size
        raise ExportError(f"graph {graph.name!r}: the batch-axis export does not run on 1 and {n} streams "
                          f"({' '.join(str(e).split())[:300]}); the model bakes a batch size into the graph: "
                          "export it without a batch axis (no --dynamic-batch)") from None
    bad = batch_mismatch(graph, got, [run(f) for f in feeds])
    if bad is not None:
        raise ExportError(f"graph {graph.name!r}: on {n} streams in one batch, stream {bad[0]}'s {bad[1]!r} "
                          "differs from its own batch-1 result; export it without a batch axis (no --dynamic-batch)")


def export_onnx(model: StreamingModel, out_dir: Path | str, extra_metadata: dict | None = None,
                dynamic_batch: bool = False) -> dict[str, Path]:
    """Export every graph of the model's signature to `out_dir/<graph>.onnx`.
    dynamic_batch: a batch axis on every graph (ONNX / ONNX Runtime only; see
    the module doc), recorded in the signature written with the files."""
    out_dir = Path(out_dir)
    model = model.eval()
    signature = model.signature()
    if dynamic_batch:
        signature = replace(signature, graphs=tuple(batch_layout(model, g, signature) for g in signature.graphs))
    paths = {}
    for graph in signature.graphs:
        paths[graph.name] = export_graph(model, graph, out_dir / f"{graph.name}.onnx", signature, extra_metadata)
        if dynamic_batch and graph.states:  # what decode_streams batches (decoder/joiner run per stream)
            try:
                check_batch(paths[graph.name], graph, signature)
            except ExportError:
                for written in paths.values():  # files this call wrote, claiming a batch axis that does not work
                    written.unlink(missing_ok=True)
                raise
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
