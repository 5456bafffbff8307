"""A rewrite of the .ort route (targets/ort_rewrite.py lists it): feed-forward chains in 2-D.

A batch-1 chunk graph keeps its activations 3-D ([1, T, D] for a conformer,
[T, 1, D] for icefall's Zipformer). ONNX Runtime fuses a MatMul and its bias
Add into a Gemm, which is 2-D only, so each fused pair gets a Reshape to 2-D
before it and one back after it: a feed-forward block (Linear, activation,
Linear) runs as Reshape, Gemm, Reshape, activation, Reshape, Gemm, Reshape.

`linear_chains_2d` finds such chains: a MatMul with a constant 2-D weight,
and everything after it that does not care about the leading axes (another
such MatMul, a bias or scale that broadcasts over the last axis only, an
element-wise activation, a product or sum of two tensors of the chain). It
flattens the leading axes once at the entry and restores them at each exit,
so ORT's Gemms need no Reshape of their own. A chain is rewritten only where
that saves Reshapes: each MatMul with a bias inside it saves two, the entry
and every exit cost one.
"""

from __future__ import annotations

import numpy as np
import onnx

from .onnx_graph import Graph
from .ort_graph import Uses, fill_shapes, splice

_UNARY = {"Sigmoid", "Relu", "Tanh", "Exp", "Log", "Abs", "Neg", "Erf", "Sqrt", "Softplus", "LeakyRelu", "Elu",
          "HardSigmoid", "Reciprocal", "Identity"}
_BINARY = {"Add", "Sub", "Mul", "Div"}


def _last_axis_const(g: Graph, name: str, width: int):
    """A constant that broadcasts over the last axis only (scalar, [width], [1, ..., width]) as 0-D / 1-D."""
    v = g.consts.get(name)
    if v is None or v.dtype.kind != "f" or any(d != 1 for d in v.shape[:-1]):
        return None
    flat = v.reshape(v.shape[-1:]) if v.ndim else v
    return flat if flat.size in (1, width) else None


class _Chain:
    """The members of one chain, the leading axes it flattens, and the last dim of each tensor it computes."""

    def __init__(self, g: Graph, lead: tuple):
        self.g, self.lead, self.nodes = g, lead, []
        self.width = {}  # chain tensor -> its last dim

    def joins(self, node) -> bool:
        """Whether `node` computes on chain tensors only (and constants of the right kind)."""
        g, ins = self.g, list(node.input)
        if node.op_type == "MatMul":
            w = g.consts.get(ins[1])
            return ins[0] in self.width and w is not None and w.ndim == 2 and w.shape[0] == self.width[ins[0]]
        if node.op_type in _UNARY:
            return len(ins) == 1 and ins[0] in self.width
        if node.op_type in _BINARY and len(ins) == 2:
            inside = [i for i in ins if i in self.width]
            if len(inside) == 2:
                return self.width[ins[0]] == self.width[ins[1]]
            if len(inside) == 1:
                return _last_axis_const(g, ins[1 - ins.index(inside[0])], self.width[inside[0]]) is not None
        return False

    def add(self, node) -> None:
        self.nodes.append(node)
        ins = [i for i in node.input if i in self.width]
        w = self.g.consts[node.input[1]].shape[1] if node.op_type == "MatMul" else self.width[ins[0]]
        self.width[node.output[0]] = w

    def saved(self, exits: list[str]) -> int:
        """Reshapes ORT would add (two per MatMul whose bias Add is in the chain) minus the ones we add."""
        adds = {i for n in self.nodes if n.op_type == "Add" for i in n.input}
        fused = sum(1 for n in self.nodes if n.op_type == "MatMul" and n.output[0] in adds)
        return 2 * fused - 1 - len(exits)


def _grow(g: Graph, uses: Uses, start, x: str, lead: tuple, taken: set) -> _Chain:
    chain = _Chain(g, lead)
    chain.width[x] = g.shapes[x][-1]
    chain.add(start)
    del chain.width[x]  # the entry is read through its flattened copy, it is not a chain tensor
    grew = True
    while grew:
        grew = False
        for t in list(chain.width):
            for r in uses.readers.get(t, []):
                if r.output[0] not in chain.width and r.output[0] not in taken and chain.joins(r):
                    chain.add(r)
                    grew = True
    return chain


def linear_chains_2d(model: onnx.ModelProto) -> int:
    g = Graph(model)
    uses = Uses(g)
    starts = [n for n in g.g.node if n.op_type == "MatMul" and n.input[1] in g.consts
              and g.consts[n.input[1]].ndim == 2 and n.input[0] not in g.consts]
    fill_shapes(g, [n.input[0] for n in starts])
    order = {n.output[0]: i for i, n in enumerate(g.g.node)}
    taken: set = set()
    edits, count = [], 0
    for start in starts:
        x = start.input[0]
        shape = g.shapes.get(x)
        if start.output[0] in taken or shape is None or len(shape) < 3:
            continue
        chain = _grow(g, uses, start, x, tuple(shape[:-1]), taken)
        chain.nodes.sort(key=lambda n: order[n.output[0]])
        inside = {n.output[0] for n in chain.nodes}
        exits = [t for t in chain.width if t in uses.outputs
                 or any(r.output[0] not in inside for r in uses.readers.get(t, []))]
        if chain.saved(exits) <= 0:
            continue
        taken |= inside
        edits += _flattened(g, chain, x, exits)
        count += 1
    splice(g, edits)
    return count


def _flattened(g: Graph, chain: _Chain, x: str, exits: list[str]) -> list:
    """Edits [(member, its new nodes)]: each member on 2-D tensors where it was, the Reshape in before the
    first, a Reshape back out right after each member whose output leaves the chain (a reader outside may
    come before the chain's last member)."""
    rows = int(np.prod(chain.lead))
    entry = g.node("Reshape", [x, g.const(np.array([rows, g.shapes[x][-1]], np.int64), "rows")], "flat_in")
    rename = {x: entry.output[0]}
    edits = []
    for n in chain.nodes:
        new = onnx.NodeProto()
        new.CopyFrom(n)
        new.name = g.name(f"flat_{n.op_type.lower()}")
        for k, i in enumerate(n.input):
            if i in rename:
                new.input[k] = rename[i]
            elif i in g.consts and n.op_type in _BINARY:
                flat = _last_axis_const(g, i, chain.width[n.output[0]])
                if flat is not None and flat.shape != g.consts[i].shape:
                    new.input[k] = g.const(flat, "last_axis")
        t = n.output[0]
        rename[t] = new.output[0] = g.name("flat")
        nodes = ([entry] if not edits else []) + [new]
        if t in exits:
            back = np.array(list(chain.lead) + [chain.width[t]], np.int64)
            nodes.append(g.node("Reshape", [rename[t], g.const(back, "lead")], "flat_out", output=t))
        edits.append(([n], nodes))
    return edits
