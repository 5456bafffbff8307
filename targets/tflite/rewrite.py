"""Generic ONNX rewrites that let onnx2tf convert attention models.

A chunk graph at batch 1 has static shapes, but three patterns still defeat
onnx2tf 1.28 (measured on icefall's Zipformer2 and a WeNet-style conformer):

- a Slice whose start is data (WeNet's `pe[:, offset - cache : offset -
  cache + size]`) but whose length is a constant: onnx2tf builds the begin
  vector with `tensor_scatter_nd_update` and fails, and every shape after it
  is unknown. It becomes a Gather of `start + arange(length)`;
- a reversing Slice (step -1, the Zipformer's `flip`): onnx2tf mistranslates
  it with no error (a 64-value flip off by 5.1; the Zipformer's outputs off
  by 0.1). It becomes a Gather with the reversed indices;
- a Constant node (a 0-d one: onnx2tf hands it on as a Python float, which its
  accuracy check for Div cannot take). It becomes an initializer.

Not here, though a probe suggested it: turning rank >= 3 constants into 2-D
constants plus a Reshape. Neither model needed it, and on the Zipformer it
broke the conv front end: onnx2tf transposes a 4-D constant to its
channels-last layout itself, and a Reshape hides the constant from it
("Dimensions must be equal, but are 8 and 43").

Each rewrite is a function `(model) -> number of nodes changed` that edits
the graph in place, chosen by pattern only (never by model name).
`rewrite(model, simplify)` applies them in order and returns the counts;
prepare.py then checks the rewritten graph against the original in ONNX
Runtime before onnx2tf sees it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..onnx_graph import Graph, drop_unused_initializers

_SMALL = 16  # an integer tensor of at most this many elements can be followed symbolically


def _replace(g: Graph, old: onnx.NodeProto, new: list) -> None:
    """Put `new` where `old` was (keeping the topological order)."""
    nodes = list(g.g.node)
    at = nodes.index(old)
    del g.g.node[:]
    g.g.node.extend(nodes[:at] + new + nodes[at + 1:])


# -- integer values followed symbolically: start and end of a slice ---------------------------------

def _affine(g: Graph, name: str, depth: int = 0):
    """The elements of a small integer tensor as affine forms
    (constant, {(variable, element): coefficient}), or None. Anything that is
    not plain arithmetic on constants becomes a variable of its own, so two
    forms that differ by a constant prove a constant difference."""
    if name in g.consts:
        v = g.consts[name]
        return [(int(x), {}) for x in v.ravel()] if v.dtype.kind in "iu" and v.size <= _SMALL else None
    shape = g.shapes.get(name)
    opaque = None if shape is None or int(np.prod(shape)) > _SMALL else \
        [(0, {(name, i): 1}) for i in range(int(np.prod(shape)))]
    n = g.producer.get(name)
    if n is None or depth > 32:
        return opaque
    ins = [_affine(g, i, depth + 1) if i else None for i in n.input]
    out = None
    if n.op_type in ("Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten") and ins[0] is not None:
        out = ins[0]
    elif n.op_type == "Cast" and ins[0] is not None and \
            {a.name: a.i for a in n.attribute}.get("to") in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        out = ins[0]
    elif n.op_type in ("Add", "Sub") and ins[0] is not None and ins[1] is not None:
        out = _combine(ins[0], ins[1], 1 if n.op_type == "Add" else -1)
    elif n.op_type == "Neg" and ins[0] is not None:
        out = _scale(ins[0], -1)
    elif n.op_type == "Mul" and None not in ins[:2]:
        a, b = ins[:2]
        if all(not t for _, t in b) and len(b) == 1:
            out = _scale(a, b[0][0])
        elif all(not t for _, t in a) and len(a) == 1:
            out = _scale(b, a[0][0])
    elif n.op_type == "Concat" and all(i is not None for i in ins):
        out = [e for i in ins for e in i]
    return out if out is not None else opaque


def _combine(a, b, sign):
    if len(a) != len(b):
        if len(a) == 1:
            a = a * len(b)
        elif len(b) == 1:
            b = b * len(a)
        else:
            return None
    out = []
    for (ca, ta), (cb, tb) in zip(a, b):
        terms = dict(ta)
        for k, v in tb.items():
            terms[k] = terms.get(k, 0) + sign * v
        out.append((ca + sign * cb, {k: v for k, v in terms.items() if v}))
    return out


def _scale(a, k):
    return [(c * k, {t: v * k for t, v in terms.items()}) for c, terms in a]


# -- rewrite (a): a slice with a data-dependent start and a constant length ------------------------

def data_start_slices(model: onnx.ModelProto) -> int:
    """Slice(data, start(x), start(x) + L) on one axis, step s > 0 -> Gather
    of `clip(start mod dim, 0, dim - span) + s * arange(n)` (the Slice's own
    values wherever it has length n; clamped, never out of bounds, elsewhere).
    A constant table of rank >= 3 with size-1 axes is gathered as 2-D."""
    g = Graph(model)
    changed = 0
    for node in [n for n in g.g.node if n.op_type == "Slice"]:
        plan = _dynamic_axis(g, node)
        if plan is None:
            continue
        _replace(g, node, _gather_nodes(g, node, *plan))
        changed += 1
    return changed


def _dynamic_axis(g: Graph, node):
    """(axis, length n, step, dim) of a one-axis Slice whose start is data
    and whose end is that start plus a constant, or None."""
    data, starts, ends = node.input[:3]
    if starts in g.consts:
        return None
    s, e = _affine(g, starts), _affine(g, ends)
    rank = len(g.shapes.get(data, ()))
    if s is None or e is None or len(s) != 1 or len(e) != 1 or data not in g.shapes:
        return None
    axes = g.consts.get(node.input[3]) if len(node.input) > 3 and node.input[3] else np.array([0])
    steps = g.consts.get(node.input[4]) if len(node.input) > 4 and node.input[4] else np.array([1])
    if axes is None or steps is None or axes.size != 1 or steps.size != 1 or int(steps[0]) <= 0:
        return None
    (c0, t0), (c1, t1) = s[0], e[0]
    if not t0 or t0 != t1:  # the start is constant, or the length depends on data
        return None
    axis, step, length = int(axes[0]) % rank, int(steps[0]), c1 - c0
    dim = g.shapes[data][axis]
    n = -(-length // step)
    if n <= 0 or (n - 1) * step >= dim:
        return None
    return axis, n, step, dim


def _gather_nodes(g: Graph, node, axis: int, n: int, step: int, dim: int) -> list:
    data, starts = node.input[:2]
    out = node.output[0]
    # the start as a scalar: onnx2tf gives an unsqueezed rank-0 input the shape (1, None),
    # which would make the index [1, n]; a reshape to () pins it
    nodes = [g.node("Reshape", [starts, g.const(np.zeros(0, np.int64), "shape")], "start")]
    nodes.append(g.node("Mod", [nodes[-1].output[0], g.const(np.array(dim, np.int64), "dim")], "wrap"))
    nodes.append(g.node("Max", [nodes[-1].output[0], g.const(np.array(0, np.int64), "lo")], "lo"))
    nodes.append(g.node("Min", [nodes[-1].output[0], g.const(np.array(dim - 1 - (n - 1) * step, np.int64),
                                                              "hi")], "hi"))
    idx = g.const(np.arange(n, dtype=np.int64) * step, "arange")
    nodes.append(g.node("Add", [nodes[-1].output[0], idx], "index"))
    index = nodes[-1].output[0]
    table = g.consts.get(data)
    ones = [] if table is None else [d for d in range(table.ndim) if d != axis and table.shape[d] == 1]
    if table is None or table.ndim <= 2 or table.ndim - len(ones) > 2:
        nodes.append(g.node("Gather", [data, index], "gather", output=out, axis=axis))
        return nodes
    # a constant table of rank >= 3 whose other axes are 1 except one: gathered as a
    # 2-D constant, its size-1 axes put back by Unsqueeze (onnx2tf mis-arranges a
    # Reshape from 2-D to 3-D there: values right, order wrong)
    rows = g.const(np.squeeze(table, axis=tuple(ones)), "table2d")
    nodes.append(g.node("Gather", [rows, index], "gather", axis=axis - sum(d < axis for d in ones)))
    nodes.append(g.node("Unsqueeze", [nodes[-1].output[0], g.const(np.array(ones, np.int64), "axes")],
                        "unsqueeze", output=out))
    return nodes


# -- rewrite (b): a reversing slice ----------------------------------------------------------------

def reversing_slices(model: onnx.ModelProto) -> int:
    """Slice with constant parameters and a negative step on an axis of known
    size -> Gather with those indices (numpy computes them with the same
    clamping as ONNX); the positive-step axes stay in a Slice before it."""
    g = Graph(model)
    changed = 0
    for node in [n for n in g.g.node if n.op_type == "Slice"]:
        params = [g.consts.get(i) if i else None for i in list(node.input[1:]) + [""] * (5 - len(node.input))]
        starts, ends, axes, steps = params[:4]
        shape = g.shapes.get(node.input[0])
        if starts is None or ends is None or steps is None or shape is None or not (steps < 0).any():
            continue
        axes = np.arange(starts.size) if axes is None else axes
        keep = [i for i in range(starts.size) if steps[i] > 0]
        nodes, cur = [], node.input[0]
        if keep:
            sl = [g.const(np.array([p[i] for i in keep], np.int64), "p") for p in (starts, ends, axes, steps)]
            nodes.append(g.node("Slice", [cur] + sl, "rest"))
            cur = nodes[-1].output[0]
        flips = [i for i in range(starts.size) if steps[i] < 0]
        for k, i in enumerate(flips):
            ax = int(axes[i]) % len(shape)
            idx = np.arange(shape[ax], dtype=np.int64)[int(starts[i]):int(ends[i]):int(steps[i])]
            nodes.append(g.node("Gather", [cur, g.const(idx, "reversed")], "flip", axis=ax,
                                output=node.output[0] if k == len(flips) - 1 else None))
            cur = nodes[-1].output[0]
        _replace(g, node, nodes)
        changed += 1
    return changed


# -- rewrite (c): Constant nodes as initializers -------------------------------------------------

def constant_nodes(model: onnx.ModelProto) -> int:
    """Constant node -> initializer of the same name and value. onnx2tf
    hands a 0-d Constant node on as a Python float, which its accuracy check
    for Div/Mul cannot take ("Output tensors of a Functional model must be
    the output of a TensorFlow Layer ... Found: 4.0"); an initializer arrives
    as an array."""
    keep, changed = [], 0
    for n in model.graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(n.attribute[0].t),
                                                                   n.output[0]))
            changed += 1
        else:
            keep.append(n)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return changed


# -- rewrite (d): a transpose onnx2tf cannot tell from its shapes ---------------------------------

def ambiguous_transposes(model: onnx.ModelProto) -> int:
    """Transpose -> Unsqueeze(0), Transpose([0] + perm + 1), Squeeze(0)
    where onnx2tf 1.28 would not apply the ONNX perm:
    - perm[0] != 0 and two axes of the same size: onnx2tf rebuilds the perm
      by matching sizes, first match first, so icefall's attention
      `permute(2, 1, 0, 3)` of a [4 frames, 1, 4 heads, 32] tensor is
      an identity (the 23.6 M Zipformer's outputs off by 3.1e-3);
    - a perm that keeps the shape, read by a Softmax: onnx2tf keeps the
      input as it is.
    With a leading unit axis the perm starts with 0 and is applied as given."""
    g = Graph(model)
    consumers = {}
    for n in g.g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for node in [n for n in g.g.node if n.op_type == "Transpose"]:
        shape = g.shapes.get(node.input[0])
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if shape is None or perm is None or perm == sorted(perm) or len(shape) < 2:
            continue
        first = consumers.get(node.output[0], [None])[0]
        same_shape = tuple(shape[p] for p in perm) == tuple(shape)
        if not ((perm[0] != 0 and len(set(shape)) < len(shape))
                or (first is not None and first.op_type == "Softmax" and same_shape)):
            continue
        axis0 = g.const(np.array([0], np.int64), "axis0")
        up = g.node("Unsqueeze", [node.input[0], axis0], "lead")
        t = g.node("Transpose", [up.output[0]], "perm", perm=[0] + [p + 1 for p in perm])
        _replace(g, node, [up, t, g.node("Squeeze", [t.output[0], axis0], "drop", output=node.output[0])])
        changed += 1
    return changed


SLICE_REWRITES = (("data_start_slice_to_gather", data_start_slices),
                  ("reversing_slice_to_gather", reversing_slices))
CONSTANT_REWRITES = (("constant_node_to_initializer", constant_nodes),
                     ("ambiguous_transpose_with_unit_axis", ambiguous_transposes))


def rewrite(model: onnx.ModelProto, simplify=None) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply every rewrite; returns (model, {rewrite: nodes changed}).
    `simplify(model) -> model` (onnxsim) runs again after the slice rewrites:
    with the slices' lengths now static, the shape arithmetic behind them
    folds ("folded_after_slices": nodes removed). The Constant-node rewrite
    comes last, as a simplifier would turn initializers back into nodes."""
    counts = {name: fn(model) for name, fn in SLICE_REWRITES}
    if simplify is not None and any(counts.values()):
        before = len(model.graph.node)
        model = simplify(model)
        counts["folded_after_slices"] = before - len(model.graph.node)
    counts.update({name: fn(model) for name, fn in CONSTANT_REWRITES})
    drop_unused_initializers(model)
    onnx.checker.check_model(model)
    return model, counts
