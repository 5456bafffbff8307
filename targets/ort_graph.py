"""Graph plumbing shared by the .ort route's rewrites (targets/ort_rewrite.py, targets/ort_chains.py):
who reads a tensor, constants and shapes (with the shapes ONNX shape inference leaves unknown taken from one
ONNX Runtime run), and splicing node lists by name."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .onnx_graph import Graph


class Uses:
    """Who reads each tensor, for the 'read only inside the pattern' checks."""

    def __init__(self, g: Graph):
        self.readers: dict[str, list] = {}
        for n in g.g.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.g.output}

    def only(self, name: str, *nodes) -> bool:
        """`name` is read by exactly `nodes` and is no graph output."""
        return name not in self.outputs and sorted(key(n) for n in self.readers.get(name, [])) == \
            sorted(key(n) for n in nodes)


def fill_shapes(g: Graph, names: list[str]) -> None:
    """Shapes ONNX shape inference left unknown (behind a data-started Slice,
    an Expand of computed sizes), as ONNX Runtime computes them for the
    graph's fixed input shapes: one run of a copy that returns those values.
    A chunk graph's shapes do not depend on the values fed."""
    names = sorted({n for n in names if n and n not in g.shapes})
    if not names:
        return
    try:
        _probe(g, names)
    except Exception:  # noqa: BLE001 - a graph that zeros cannot run: its shapes stay unknown, nothing is rewritten
        return


def _probe(g: Graph, names: list[str]) -> None:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(g.model)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 4  # a failed probe is not the user's error: no ORT log line in the build's output
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    dtypes = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
              "tensor(bool)": np.bool_, "tensor(double)": np.float64}
    feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtypes.get(i.type, np.float32))
             for i in sess.get_inputs()}
    for n, v in zip(names, sess.run(names, feeds)):
        g.shapes[n] = tuple(v.shape)


def zero_partners(g: Graph, ops) -> list[str]:
    """The other inputs of binary `ops` nodes that read a constant of zeros: the shapes the rewrites need."""
    out = []
    for n in g.g.node:
        if n.op_type in ops and len(n.input) == 2:
            for i, j in (n.input[:2], n.input[1::-1]):
                v = g.consts.get(i)
                if v is not None and v.dtype.kind == "f" and not v.any() and j not in g.consts:
                    out.append(j)
    return out


def scalar(g: Graph, name: str):
    v = g.consts.get(name)
    return float(v.ravel()[0]) if v is not None and v.size == 1 and v.dtype.kind == "f" else None


def zeros_for(g: Graph, name: str, other: str) -> bool:
    """`name` is a constant of zeros whose broadcast with `other` keeps `other`'s shape."""
    v = g.consts.get(name)
    shape = g.shapes.get(other)
    if v is None or v.dtype.kind != "f" or v.any() or shape is None:
        return False
    try:
        return tuple(np.broadcast_shapes(v.shape, shape)) == tuple(shape)
    except ValueError:
        return False


def other(node, name: str) -> str | None:
    """The second input of a binary node one of whose inputs is `name`."""
    a, b = node.input[:2]
    return b if a == name else a if b == name else None


def key(node) -> str:
    return node.output[0]  # output names are unique (SSA): a node's identity across protobuf copies


def splice(g: Graph, edits: list) -> None:
    """Apply `edits` [(old nodes, new nodes)]: each `old` removed and its `new`
    put where the last old node was (every input of `new` is computed before
    the pattern, every reader of its output after it). One pass: protobuf
    copies nodes on every rebuild, so matching works on names, not objects."""
    drop = {key(n) for old, _ in edits for n in old}
    at = {}
    order = {key(n): i for i, n in enumerate(g.g.node)}
    for old, new in edits:
        at.setdefault(key(max(old, key=lambda n: order[key(n)])), []).extend(new)
    kept = []
    for n in g.g.node:
        if key(n) not in drop:
            kept.append(n)
        kept.extend(at.get(key(n), []))
    del g.g.node[:]
    g.g.node.extend(kept)
    drop_dead_nodes(g.g)


def drop_dead_nodes(graph) -> None:
    """Nodes nothing reads any more (the Constant nodes of a replaced pattern)."""
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if any(o in read for o in n.output)]
        if len(keep) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(keep)
