"""Streaming ONNX models we did not export, taken through the same targets.

A third-party model already has explicit state ports, under its own names.
A small spec (JSON file, or `--state IN=OUT` flags) says which input feeds
which output; this module rewrites the graph to our contract (states renamed
`<name>` -> `<name>_next`, dynamic dims fixed to one chunk, signature
embedded) and derives the Signature from the file itself, so the targets,
parity checks, bundle and client work unchanged. The parity reference is the
source model run by ONNX Runtime.

Spec keys (all optional except `states`):
    {"states": {"h_in": "h_out"},              input -> output pairs
     "input": "feats",                         the feature input (default: the one non-state input)
     "output": "logits",                       the output to decode (default: the first non-state output)
     "chunk_frames": 16, "shift_frames": 16,   needed when the time axis is dynamic
     "subsampling": 4,                         default: chunk / output frames
     "reset": {"h_in": "utterance"}, "initial": {"h_in": 0.0},
     "frontend": {... FrontendSpec fields ...}, "blank_id": 0, "family": "thirdparty"}
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from edge.errors import UserError
from runtime_py.signature import FrontendSpec, GraphSpec, Signature, SignatureError, StateSpec, TensorSpec

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}


def load_spec(path: Path | str | None, state_flags: list[str] | None = None) -> dict:
    spec: dict = {}
    if path:
        try:
            spec = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"spec file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise UserError(f"spec file {path} is not valid JSON: {e}") from None
        if not isinstance(spec, dict):
            raise UserError(f"spec file {path} must hold a JSON object")
    states = dict(spec.get("states", {}))
    for flag in state_flags or []:
        if "=" not in flag:
            raise UserError(f"--state {flag!r} must look like INPUT=OUTPUT (e.g. h_in=h_out)")
        k, v = flag.split("=", 1)
        states[k.strip()] = v.strip()
    if not states:
        raise UserError("a third-party model needs its state ports: --state IN=OUT (repeatable) or "
                        "\"states\" in --spec; a model without states is not a streaming model")
    spec["states"] = states
    return spec


def _value_infos(values) -> dict[str, tuple[list, str]]:
    out = {}
    for v in values:
        tt = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        out[v.name] = (dims, _DTYPES.get(tt.elem_type, f"onnx-type-{tt.elem_type}"))
    return out


def _fix(dims: list, name: str, time_len: int | None) -> tuple[int, ...]:
    """Batch (axis 0) -> 1; a dynamic axis 1 (time) -> time_len."""
    fixed = []
    for axis, d in enumerate(dims):
        if d is None:
            if axis == 0:
                d = 1
            elif axis == 1 and time_len:
                d = time_len
            else:
                raise UserError(f"input/output {name!r} has a dynamic axis {axis} that cannot be fixed; "
                                "give chunk_frames in the spec or export the model with static shapes")
        fixed.append(int(d))
    return tuple(fixed)


def _set_dims(value, shape: tuple[int, ...]) -> None:
    dims = value.type.tensor_type.shape.dim
    for d, n in zip(dims, shape):
        d.Clear()
        d.dim_value = n


def _probe_output_shapes(src: Path, in_shapes: dict, dtypes: dict) -> dict[str, tuple[int, ...]]:
    """Output shapes for one chunk, read by running the source once: dynamic
    axes in a foreign file rarely let shape inference fix them."""
    import numpy as np
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
        feeds = {n: np.zeros(shape, dtype=dtypes[n]) for n, shape in in_shapes.items()}
        names = [o.name for o in sess.get_outputs()]
        return {n: tuple(int(d) for d in v.shape) for n, v in zip(names, sess.run(names, feeds))}
    except Exception as e:  # onnxruntime raises its own exception types
        raise UserError(f"running {src.name} once on one chunk {in_shapes} failed: {e}") from None


def normalise(src: Path | str, spec: dict, out: Path | str) -> tuple[Path, Signature]:
    """Rewrite a foreign stateful ONNX to our contract; return (path, signature)."""
    src = Path(src)
    if not src.exists():
        raise UserError(f"ONNX model {src} does not exist")
    try:
        proto = onnx.load(str(src))
    except Exception as e:  # protobuf raises several types for a non-ONNX file
        raise UserError(f"{src} is not a readable ONNX model: {e}") from None
    inits = {i.name for i in proto.graph.initializer}
    ins = {k: v for k, v in _value_infos(proto.graph.input).items() if k not in inits}
    outs = _value_infos(proto.graph.output)
    states = spec["states"]
    for i, o in states.items():
        if i not in ins:
            raise UserError(f"state input {i!r} is not an input of {src.name}; inputs: {sorted(ins)}")
        if o not in outs:
            raise UserError(f"state output {o!r} is not an output of {src.name}; outputs: {sorted(outs)}")
    plain_in = [n for n in ins if n not in states]
    plain_out = [n for n in outs if n not in states.values()]
    x_name = spec.get("input") or (plain_in[0] if len(plain_in) == 1 else None)
    if x_name is None or x_name not in plain_in:
        raise UserError(f"say which input takes the features (\"input\" in the spec); candidates: {plain_in}")
    if len(plain_in) != 1:
        raise UserError(f"only one non-state input is supported, got {plain_in}")
    y_name = spec.get("output") or (plain_out[0] if plain_out else None)
    if y_name not in plain_out:
        raise UserError(f"output {y_name!r} not found; non-state outputs: {plain_out}")

    chunk = spec.get("chunk_frames") or ins[x_name][0][1]
    if not chunk:
        raise UserError(f"input {x_name!r} has a dynamic time axis; give \"chunk_frames\" in the spec")
    x_shape = _fix(ins[x_name][0], x_name, chunk)
    if len(x_shape) != 3:
        raise UserError(f"feature input {x_name!r} must be [batch, frames, dim], got {x_shape}")
    in_shapes = {x_name: x_shape}
    in_shapes.update({i: _fix(ins[i][0], i, None) for i in states})
    out_shapes = _probe_output_shapes(src, in_shapes, {n: ins[n][1] for n in in_shapes})
    y_shape = out_shapes[y_name]
    if len(y_shape) != 3:
        raise UserError(f"output {y_name!r} must be [batch, frames, vocab], got {y_shape}")
    subsampling = spec.get("subsampling") or x_shape[1] // y_shape[1]
    rename, state_specs = {}, []
    for i, o in states.items():
        shape = in_shapes[i]
        if out_shapes[o] != shape:
            raise UserError(f"state {i!r} {shape} and its output {o!r} {out_shapes[o]} differ in shape")
        state_specs.append(StateSpec(i, shape, ins[i][1], doc=f"third-party state {i} -> {o}",
                                     initial=float(spec.get("initial", {}).get(i, 0.0)),
                                     batch_axis=int(spec.get("batch_axis", {}).get(i, 0 if len(shape) < 3 else 1)),
                                     reset=spec.get("reset", {}).get(i, "utterance")))
        rename[o] = i + "_next"
    try:
        graph = GraphSpec("encoder", inputs=(TensorSpec(x_name, x_shape, ins[x_name][1]),),
                          outputs=(TensorSpec(y_name, y_shape, outs[y_name][1]),), states=tuple(state_specs))
        frontend = FrontendSpec(**{**{"num_mel_bins": x_shape[2]}, **spec.get("frontend", {})})
        signature = Signature(spec.get("family", "thirdparty"), frontend, x_shape[1],
                              int(spec.get("shift_frames", x_shape[1])), int(subsampling), (graph,),
                              vocab_size=y_shape[-1], blank_id=int(spec.get("blank_id", 0)), decoder="ctc",
                              extra={"source": src.name})
    except (SignatureError, TypeError) as e:
        raise UserError(f"third-party spec: {e}") from None

    for node in proto.graph.node:  # rename state outputs to our <state>_next convention
        node.output[:] = [rename.get(n, n) for n in node.output]
    shapes = {t.name: t.shape for t in graph.all_inputs()}
    keep_out = [y_name] + list(states.values())
    kept = []
    for v in proto.graph.output:
        if v.name in keep_out:
            shape = y_shape if v.name == y_name else shapes[[k for k, o in states.items() if o == v.name][0]]
            v.name = rename.get(v.name, v.name)
            _set_dims(v, shape)
            kept.append(v)
    order = {n: i for i, n in enumerate(graph.output_names)}
    kept.sort(key=lambda v: order[v.name])
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    inputs = [v for v in proto.graph.input if v.name not in inits]
    in_order = {n: i for i, n in enumerate(graph.input_names)}
    for v in inputs:
        _set_dims(v, shapes[v.name])
    rest = [v for v in proto.graph.input if v.name in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(sorted(inputs, key=lambda v: in_order[v.name]) + rest)
    del proto.graph.value_info[:]  # stale dynamic shapes; re-inferred below
    proto = onnx.shape_inference.infer_shapes(proto)

    from edge.export import embed_metadata
    embed_metadata(proto, signature, graph)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out, signature
