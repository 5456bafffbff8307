"""Streaming ONNX models we did not export, taken through the same targets.

A third-party model already has explicit state ports, under its own names.
A small spec (JSON file, or `--state IN=OUT` flags) says which input feeds
which output; this module rewrites the graph to our contract (states renamed
`<name>` -> `<name>_next`, dynamic dims fixed to one chunk, signature
embedded) and derives the Signature from the file itself, so the targets,
parity checks, bundle and client work unchanged. The parity reference is the
source model run by ONNX Runtime.

Spec keys: targets/onnx_spec.py (SPEC_KEYS), documented in
docs/bring-your-own-model.md; the smallest spec is {"states": {"h_in": "h_out"}}.
A shipped file is taken as it is: its input may be raw samples ([1, T] or
[T]) or features in any layout (targets/onnx_layout.py); scalar inputs such
as a sample rate become constants, and the shape arithmetic and `If`
branches that then have known results are folded away
(targets/onnx_fold.py). The rewritten graph is checked against the source in
a child process (targets/onnx_source.py, targets/isolated.py), and the
source, run as its authors run it, is the parity reference.
This is the same declaration as edge.declare (docs/bring-your-own-model.md),
for a graph that is already ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from edge.errors import UserError
from runtime_py.signature import ONNX_ELEM_TYPES, GraphSpec, Signature, SignatureError, StateSpec, TensorSpec

from .onnx_layout import contract_shape, resolve_layout, source_shape
from .onnx_prepare import make_static, probe_rewritten
from .onnx_spec import check_chunk, check_facts, check_keys, frontend_from_spec, input_roles

_DTYPES = {code: name for name, code in ONNX_ELEM_TYPES.items()}


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
        check_keys(spec)
        if isinstance(spec.get("tokens"), str):  # a tokens.txt beside the spec
            spec["tokens"] = str(Path(path).parent / spec["tokens"])
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


def _fix(dims: list, name: str, time_len: int | None, given=None, batch_axis: int | None = 0) -> tuple[int, ...]:
    """`given` (the spec's state_shapes) wins; else a dynamic batch axis
    (axis 0 unless the spec's batch_axis says otherwise) -> 1 and a dynamic
    axis 1 (time) -> time_len."""
    if given is not None:
        given = tuple(int(d) for d in given)
        if len(given) != len(dims) or any(d is not None and d != g for d, g in zip(dims, given)):
            raise UserError(f"state_shapes[{name!r}] = {list(given)} does not fit the file's shape "
                            f"{[d if d is not None else '?' for d in dims]}")
        return given
    fixed = []
    for axis, d in enumerate(dims):
        if d is None:
            if axis == batch_axis:
                d = 1
            elif axis == 1 and time_len:
                d = time_len
            else:
                raise UserError(f"input/output {name!r} has a dynamic axis {axis} that cannot be fixed; "
                                "give its shape in the spec's \"state_shapes\" (or its \"batch_axis\"), "
                                "or export the model with static shapes")
        fixed.append(int(d))
    return tuple(fixed)


def _set_dims(value, shape: tuple[int, ...]) -> None:
    dims = value.type.tensor_type.shape.dim
    for d, n in zip(dims, shape):
        d.Clear()
        d.dim_value = n


def _fold_roles(proto, spec: dict) -> tuple[dict, dict]:
    """Inputs that are neither features nor states: a const becomes an
    initializer (folded); a counter becomes a state whose next value the graph
    computes (min(value + step, max)). Returns (consts, counters) as the
    source reference feeds them (targets/onnx_source.py)."""
    import numpy as np
    from onnx import helper, numpy_helper

    from edge.roles import Const

    consts, counters = {}, {}
    for name, role in input_roles(spec).items():
        value = next((v for v in proto.graph.input if v.name == name), None)
        if value is None:
            raise UserError(f"\"inputs\" names {name!r}, which is not an input of the model")
        elem = value.type.tensor_type.elem_type
        np_type = onnx.helper.tensor_dtype_to_np_dtype(elem)
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if isinstance(role, Const):
            try:
                arr = np.asarray(role.value, dtype=np_type).reshape([d or 1 for d in dims])
            except (TypeError, ValueError) as e:
                raise UserError(f"input {name!r}: \"value\" {role.value!r} does not fit its "
                                f"{np_type.__name__} of shape {[d or '?' for d in dims]}: {e}") from None
            consts[name] = {"value": arr.tolist(), "dtype": str(arr.dtype), "shape": list(arr.shape)}
            proto.graph.input.remove(value)
            proto.graph.initializer.append(numpy_helper.from_array(arr, name))
            continue
        if elem != onnx.TensorProto.INT64 or len(dims) > 1:
            raise UserError(f"counter {name!r} must be an int64 of rank 0 or 1, the file has "
                            f"{onnx.helper.tensor_dtype_to_string(elem)} of rank {len(dims)}")
        step, top = role.step, role.max  # a Counter, as edge.declare's (same batch axis: none for a scalar, else 0)
        nxt = f"{name}__advanced"
        proto.graph.initializer.extend([numpy_helper.from_array(np.asarray(step, np.int64), f"{name}__step"),
                                        numpy_helper.from_array(np.asarray(top, np.int64), f"{name}__max")])
        proto.graph.node.extend([helper.make_node("Add", [name, f"{name}__step"], [f"{name}__sum"]),
                                 helper.make_node("Min", [f"{name}__sum", f"{name}__max"], [nxt])])
        out = proto.graph.output.add()
        out.CopyFrom(value)
        out.name = nxt
        spec["states"][name] = nxt
        spec.setdefault("initial", {}).setdefault(name, float(role.start))
        spec.setdefault("batch_axis", {}).setdefault(name, None if not dims else 0)
        counters[name] = {"step": step, "max": top, "output": nxt}
    return consts, counters


def _default_axis(rank: int) -> int | None:
    """A state's batch axis unless the spec says: none for a scalar, 0 up to
    rank 2, else 1 ([layers, batch, ...], as an LSTM's h and c)."""
    return None if not rank else 0 if rank < 3 else 1


def spec_tokens(spec: dict) -> list[str]:
    if spec.get("tokens") is None:
        return []
    from edge.declaration import read_tokens  # a list, or a tokens.txt
    return read_tokens(spec["tokens"])


def normalise(src: Path | str, spec: dict, out: Path | str) -> tuple[Path, Signature]:
    """Rewrite a foreign stateful ONNX to our contract; return (path, signature)."""
    check_keys(spec)
    check_facts(spec)  # name, head, max_duration_s: edge.declare's checks
    src = Path(src)
    if not src.exists():
        raise UserError(f"ONNX model {src} does not exist")
    try:
        proto = onnx.load(str(src))
    except Exception as e:  # protobuf raises several types for a non-ONNX file
        raise UserError(f"{src} is not a readable ONNX model: {e}") from None
    spec = {**spec, "states": dict(spec["states"]), "initial": dict(spec.get("initial", {})),
            "batch_axis": dict(spec.get("batch_axis", {}))}  # counters add states: the caller's dict stays
    consts, counters = _fold_roles(proto, spec)
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
        others = [n for n in plain_in if n != x_name]
        raise UserError(f"inputs {others} are neither the features nor states: declare each in the spec's "
                        "\"inputs\" as {\"role\": \"const\", \"value\": ...} or {\"role\": \"counter\", "
                        "\"step\": N, \"max\": M}")
    head = spec.get("head", "ctc")
    if head == "transducer" and not (spec.get("decoder") and spec.get("joiner")):
        raise UserError("head 'transducer' needs the other two graphs: \"decoder\": \"decoder.onnx\", "
                        "\"joiner\": \"joiner.onnx\" in the spec (paths relative to the encoder's folder)")
    y_names = list(spec.get("outputs") or [spec.get("output") or (plain_out[0] if plain_out else None)])
    if head == "ctc":
        y_names = y_names[:1]
    for y in y_names:
        if y not in plain_out:
            raise UserError(f"output {y!r} not found; non-state outputs: {plain_out}")
    y_name = y_names[0]

    layout = resolve_layout(spec.get("layout"), len(ins[x_name][0]), x_name)
    src_x_shape = source_shape(layout, ins[x_name][0], spec.get("chunk"), x_name)
    x_shape = contract_shape(layout, src_x_shape)
    check_chunk(x_shape[1], spec)  # as edge.declare checks chunk and shift
    in_shapes = {x_name: x_shape}
    given, axes = spec.get("state_shapes", {}), spec.get("batch_axis", {})
    in_shapes.update({i: _fix(ins[i][0], i, None, given.get(i), axes.get(i, _default_axis(len(ins[i][0]))))
                      for i in states})
    initial = {i: float(spec.get("initial", {}).get(i, 0.0)) for i in states}
    io = {"input": x_name, "layout": layout, "shape": list(src_x_shape), "consts": consts, "counters": counters,
          "states": {i: o for i, o in states.items() if i not in counters}}
    folded = make_static(proto, io, in_shapes, Path(out))
    out_shapes = probe_rewritten(src, Path(out), io, in_shapes, {n: ins[n][1] for n in in_shapes}, initial)
    y_shape = out_shapes[y_name]
    if head != "none" and len(y_shape) != 3:
        raise UserError(f"output {y_name!r} must be [batch, frames, dim] for a {head} head, got {list(y_shape)}; "
                        "give \"head\": \"none\" for a model whose outputs go to the app")
    subsampling = spec.get("subsampling") or (x_shape[1] // y_shape[1] if head != "none" else 1)
    heads = _transducer_graphs(src, spec, y_shape, Path(out).parent) if head == "transducer" else {}
    rename, state_specs = {}, []
    for i, o in states.items():
        shape = in_shapes[i]
        if out_shapes[o] != shape:
            raise UserError(f"state {i!r} {shape} and its output {o!r} {out_shapes[o]} differ in shape")
        axes = spec.get("batch_axis", {})
        axis = axes[i] if i in axes else _default_axis(len(shape))
        state_specs.append(StateSpec(i, shape, ins[i][1], doc=f"third-party state {i} -> {o}",
                                     initial=initial[i], batch_axis=None if axis is None else int(axis),
                                     reset=spec.get("reset", {}).get(i, "utterance")))
        rename[o] = i + "_next"
    try:
        graph = GraphSpec("encoder", inputs=(TensorSpec(x_name, x_shape, ins[x_name][1]),),
                          outputs=tuple(TensorSpec(y, out_shapes[y], outs[y][1]) for y in y_names),
                          states=tuple(state_specs))
        frontend = frontend_from_spec(spec.get("frontend"), x_shape[2], raw_input=layout in ("BT", "T"))
        tokens = spec_tokens(spec)
        if head == "ctc" and tokens and len(tokens) != y_shape[-1]:
            raise UserError(f"output {y_name!r} is {list(y_shape)}: a CTC head needs [1, frames, vocab="
                            f"{len(tokens)}]; is it a hidden state? Give \"head\": \"none\" or the logits output")
        vocab = {"ctc": y_shape[-1], "none": max(1, len(tokens))}.get(head) or (
            heads["joiner"][1].outputs[0].shape[-1] if heads else 1)
        if head == "transducer" and tokens and len(tokens) != vocab:
            raise UserError(f"the joiner scores {vocab} tokens, the spec's tokens list has {len(tokens)}")
        signature = Signature(spec.get("family", "thirdparty"), frontend, x_shape[1],
                              int(spec.get("shift", x_shape[1])), int(subsampling),
                              (graph,) + tuple(g for _, g in heads.values()),
                              vocab_size=vocab, blank_id=int(spec.get("blank_id", 0)), decoder=head,
                              context_size=heads["decoder"][1].inputs[0].shape[-1] if heads else 0,
                              decoder_start=spec.get("decoder_start"),
                              extra={"source": src.name, "onnx_source": io, "onnx_rewrite": folded})
    except (SignatureError, TypeError) as e:
        raise UserError(f"third-party spec: {e}") from None

    for node in proto.graph.node:  # rename state outputs to our <state>_next convention
        node.output[:] = [rename.get(n, n) for n in node.output]
        node.input[:] = [rename.get(n, n) for n in node.input]  # a state output read again inside the graph
    shapes = {t.name: t.shape for t in graph.all_inputs()}
    keep_out = y_names + list(states.values())
    kept = []
    for v in proto.graph.output:
        if v.name in keep_out:
            shape = out_shapes[v.name] if v.name in y_names else shapes[[k for k, o in states.items() if o == v.name][0]]
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
    for name, (aux, spec_g) in heads.items():  # decoder.onnx, joiner.onnx beside the encoder
        embed_metadata(aux, signature, spec_g)
        onnx.save(aux, str(out.parent / f"{name}.onnx"))
    return out, signature


def _transducer_graphs(src: Path, spec: dict, enc_out: tuple, folder: Path) -> dict:
    """A transducer's stateless decoder and joiner: batch axes fixed to 1, the
    decoder's token context from its input, shapes probed once with ORT.
    Returns {name: (proto, GraphSpec)}; written beside the encoder later."""
    import numpy as np
    import onnxruntime as ort

    out = {}
    dec_out_shape = None
    for name in ("decoder", "joiner"):
        path = (src.parent / spec[name]) if not Path(spec[name]).is_absolute() else Path(spec[name])
        if not path.is_file():
            raise UserError(f"{name} graph {path} does not exist")
        proto = onnx.load(str(path))
        inits = {i.name for i in proto.graph.initializer}
        ins = [(k, v) for k, v in _value_infos(proto.graph.input).items() if k not in inits]
        want = 1 if name == "decoder" else 2
        if len(ins) != want:
            raise UserError(f"{name} graph {path.name} has inputs {[k for k, _ in ins]}; a stateless {name} takes "
                            f"{'the last tokens' if want == 1 else 'one encoder frame and the decoder output'}")
        shapes = {}
        for k, (dims, dtype) in ins:
            if name == "joiner":
                d = enc_out[-1] if k == ins[0][0] else dec_out_shape[-1]
                dims = [dims[0]] + [d if x is None else x for x in dims[1:]]
            shapes[k] = _fix(dims, k, None)
        try:
            sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = {k: np.zeros(shapes[k], dtype=dtype) for k, (_, dtype) in ins}
            res = sess.run(None, feeds)
        except Exception as e:  # noqa: BLE001 - onnxruntime's own types
            raise UserError(f"running the {name} graph {path.name} once on {shapes} failed: {e}") from None
        o_names = [o.name for o in sess.get_outputs()]
        o_shape = tuple(int(d) for d in res[0].shape)
        if name == "decoder":
            dec_out_shape = o_shape
        outs = _value_infos(proto.graph.output)
        g = GraphSpec(name, inputs=tuple(TensorSpec(k, shapes[k], dtype) for k, (_, dtype) in ins),
                      outputs=(TensorSpec(o_names[0], o_shape, outs[o_names[0]][1]),))
        for v in proto.graph.input:
            if v.name in shapes:
                _set_dims(v, shapes[v.name])
        kept = [v for v in proto.graph.output if v.name == o_names[0]]
        _set_dims(kept[0], o_shape)
        del proto.graph.output[:]
        proto.graph.output.extend(kept)
        del proto.graph.value_info[:]
        out[name] = (onnx.shape_inference.infer_shapes(proto), g)
    return out
