"""Make a shipped ONNX graph static once its inputs are fixed to one chunk.

A file exported for every batch size, sample rate and length carries the
machinery for all of them: shape arithmetic (Shape, Gather, Equal, Cast...),
and `If` nodes whose condition is a sample rate or a rank test. For a chunk
graph at batch 1 with its constants folded in, every one of those values is
known before the graph runs. This module computes them and keeps only what
depends on the data:

- a node whose inputs are all known is evaluated (onnx's reference
  evaluator, pure numpy: no native code that could crash) and becomes an
  initializer; `Shape` and `Size` of a tensor whose shape inference gives
  static dims are known too;
- an `If` whose condition is known is replaced by the nodes of the branch it
  takes (the branch's own names renamed where they would collide);
- nodes and initializers nothing reads any more are dropped.

Repeated until nothing changes, so a condition that becomes known after an
outer `If` is inlined is folded in the next round. The result has no
subgraphs when every condition was static, which is what the ORT int8
quantiser and onnx2tf need (both fail on subgraphs that read outer names).
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import helper, numpy_helper

MAX_ROUNDS = 50
# Folding never multiplies a graph's size: a node whose outputs would be
# much larger than its constant inputs (a Tile, an Expand, a big
# ConstantOfShape) stays a node.
GROWTH_LIMIT_BYTES = 1 << 20
NEVER_FOLD = {"If", "Loop", "Scan", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
              "Multinomial", "Bernoulli", "Dropout"}


def fold_static(model: onnx.ModelProto) -> dict:
    """Fold `model` in place; returns counts of what was done."""
    done = {"if_inlined": 0, "nodes_folded": 0, "rounds": 0}
    for _ in range(MAX_ROUNDS):
        done["rounds"] += 1
        shapes = static_shapes(model)
        changed = _fold_round(model, shapes, done)
        _skip_identities(model.graph)
        _drop_dead(model.graph)
        if not changed:
            break
    return done


def subgraph_count(graph: onnx.GraphProto) -> int:
    return sum(1 + subgraph_count(a.g) for n in graph.node for a in n.attribute
               if a.type == onnx.AttributeProto.GRAPH) + sum(
        len(a.graphs) for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPHS)


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """name -> fully static shape, for the top-level graph's values."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - shape inference on a foreign graph: best effort
        return {}
    g = inferred.graph
    out = {}
    for v in itertools.chain(g.input, g.value_info, g.output):
        t = v.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(d >= 0 for d in dims):
            out[v.name] = tuple(dims)
    return out


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def _fold_round(model: onnx.ModelProto, shapes: dict, done: dict) -> bool:
    g = model.graph
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    graph_outputs = {o.name for o in g.output}
    new_nodes, changed = [], False
    for node in g.node:
        if node.op_type == "If" and node.input[0] in known:
            branch = _branch(node, bool(np.asarray(known[node.input[0]]).reshape(-1)[0]))
            new_nodes.extend(_inline(branch, node, _all_names(g, skip=node)))
            done["if_inlined"] += 1
            changed = True
            continue
        values = _evaluate(node, known, shapes, _opset(model))
        if values is None or any(o in graph_outputs for o in node.output):
            new_nodes.append(node)
            continue
        for name, value in values.items():
            known[name] = value
            g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        done["nodes_folded"] += 1
        changed = True
    del g.node[:]
    g.node.extend(new_nodes)
    return changed


def _evaluate(node, known: dict, shapes: dict, opset: int) -> dict | None:
    """The node's outputs if they are known before the graph runs, else None."""
    if node.op_type in NEVER_FOLD or node.domain not in ("", "ai.onnx") or _has_subgraph(node):
        return None
    if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
        shape = np.asarray(shapes[node.input[0]], dtype=np.int64)
        if node.op_type == "Size":
            return {node.output[0]: np.asarray(shape.prod(), dtype=np.int64)}
        attrs = {a.name: a.i for a in node.attribute}
        return {node.output[0]: shape[attrs.get("start", 0):attrs.get("end")]}
    ins = [i for i in node.input if i]
    if not all(i in known for i in ins):
        return None
    from onnx.reference import ReferenceEvaluator

    try:
        ev = ReferenceEvaluator(helper.make_model(
            helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output
                                                   if o],
                              initializer=[numpy_helper.from_array(np.asarray(known[i]), i) for i in set(ins)]),
            opset_imports=[helper.make_opsetid("", opset)]))
        results = ev.run(None, {})
    except Exception:  # noqa: BLE001 - an op the reference evaluator lacks stays a node
        return None
    outs = [o for o in node.output if o]
    size_in = sum(np.asarray(known[i]).nbytes for i in ins)
    if sum(np.asarray(r).nbytes for r in results) > max(GROWTH_LIMIT_BYTES, 4 * size_in):
        return None
    return dict(zip(outs, (np.asarray(r) for r in results)))


def _has_subgraph(node) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _branch(node, cond: bool) -> onnx.GraphProto:
    want = "then_branch" if cond else "else_branch"
    return next(a.g for a in node.attribute if a.name == want)


def _all_names(graph: onnx.GraphProto, skip=None) -> set[str]:
    """Every name used in `graph` and its subgraphs, except inside node `skip`
    (the If being inlined: its other branch goes away with it)."""
    names = {v.name for v in itertools.chain(graph.input, graph.output, graph.initializer)}
    for n in graph.node:
        if n is skip:
            names.update(n.input)
            names.update(n.output)
            continue
        names.update(n.input)
        names.update(n.output)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names |= _all_names(sub)
    return names


def _inline(branch: onnx.GraphProto, if_node, taken: set[str]) -> list:
    """The branch's nodes in place of the If: its initializers move to the
    outer graph's (via Constant nodes, folded next round), its outputs are
    renamed to the If's outputs. A name the branch defines that already
    exists outside it gets a fresh one."""
    local = {o for n in branch.node for o in n.output if o} | {i.name for i in branch.initializer}
    rename = {}
    for name in sorted(local & taken):
        fresh = next(f"{name}__b{i}" for i in itertools.count() if f"{name}__b{i}" not in taken)
        rename[name] = fresh
        taken.add(fresh)
    nodes = []
    for init in branch.initializer:
        nodes.append(helper.make_node("Constant", [], [rename.get(init.name, init.name)], value=init))
    produced_here = {}
    for br_out, if_out in zip(branch.output, if_node.output):
        if br_out.name in local and br_out.name not in produced_here and br_out.name not in {
                i.name for i in branch.initializer}:
            produced_here[br_out.name] = if_out
    rename.update(produced_here)
    for n in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        _rename_node(copy, rename)
        nodes.append(copy)
    for br_out, if_out in zip(branch.output, if_node.output):
        if br_out.name not in produced_here:  # an outer value or a constant passed through
            nodes.append(helper.make_node("Identity", [rename.get(br_out.name, br_out.name)], [if_out]))
    return nodes


def _rename_node(node, rename: dict) -> None:
    node.input[:] = [rename.get(i, i) for i in node.input]
    node.output[:] = [rename.get(o, o) for o in node.output]
    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for n in sub.node:  # a nested subgraph reads the renamed names from its outer scope
                _rename_node(n, rename)
            for o in sub.output:
                o.name = rename.get(o.name, o.name)


def _skip_identities(graph: onnx.GraphProto) -> None:
    """Readers of an Identity read its input instead (inlined branches leave
    one per passed-through value); an Identity that is a graph output stays."""
    outputs = {o.name for o in graph.output}
    rename = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.output[0] not in outputs}
    if not rename:
        return
    for n in graph.node:
        for a in n.attribute:  # a subgraph's reads of outer names, before its own node is renamed
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                for sn in sub.node:
                    _rename_node(sn, {k: _root(k, rename) for k in rename})
        n.input[:] = [_root(i, rename) for i in n.input]


def _root(name: str, rename: dict) -> str:
    while name in rename:
        name = rename[name]
    return name


def _drop_dead(graph: onnx.GraphProto) -> None:
    """Remove nodes whose outputs nothing reads, then unread initializers."""
    while True:
        used = {o.name for o in graph.output} | _reads(graph)
        keep = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {o.name for o in graph.output} | _reads(graph)
    dropped = {i.name for i in graph.initializer if i.name not in used}
    inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    for v in [v for v in graph.input if v.name in dropped]:  # an initializer listed as an input (IR < 4)
        graph.input.remove(v)


def _reads(graph: onnx.GraphProto) -> set[str]:
    out = set()
    for n in graph.node:
        out.update(i for i in n.input if i)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                out |= _reads(sub) | {o.name for o in sub.output}
    return out
