"""A small rewrite that lets onnx2tf read a graph from the ONNX-in route.

onnx2tf keeps 3-D tensors channels-last and translates each op's axes. The
Silero VAD (after its `If` branches were folded) slices the channels of a
Conv output apart (an STFT done as a Conv: real and imaginary halves) after
a Slice of its time axis; onnxsim merges such Slices into one over several
axes, and onnx2tf then cut the wrong axis (one half came out whole, the
other empty, and the LSTM behind it failed to build). A constant Slice that
cuts exactly one axis of a tensor of rank >= 3 becomes a Gather of those
indices on that axis, which onnx2tf maps right. It is exact (same values,
same order), so parity is unchanged; the ORT files keep the graph as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_fold import static_shapes


def prepare(src: Path | str, dst: Path | str) -> dict:
    """Write `src` with the rewrite above to `dst`; returns what it did."""
    model = onnx.load(str(src))
    shapes = static_shapes(model)
    g = model.graph
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    done = {"slice_to_gather": 0}
    nodes = []
    for n in g.node:
        new = None
        if n.op_type == "Slice" and n.input[0] in shapes and len(shapes[n.input[0]]) >= 3:
            new = _gather(g, n, shapes[n.input[0]], known)
            done["slice_to_gather"] += new is not None
        nodes.append(new or n)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(model, str(dst))
    return done


def _gather(g, node, shape, known):
    """A Slice with constant parameters that cuts exactly one axis, as a Gather."""
    params = [i for i in node.input[1:]]
    if not all(p in known for p in params if p):
        return None
    starts, ends = known[params[0]], known[params[1]]
    axes = known[params[2]] if len(params) > 2 and params[2] else np.arange(len(starts))
    steps = known[params[3]] if len(params) > 3 and params[3] else np.ones(len(starts), np.int64)
    cut = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = int(a) % len(shape)
        kept = range(shape[a])[slice(int(s), int(e), int(st))]
        if kept != range(shape[a]):
            cut.append((a, kept))
    if len(cut) != 1 or len(cut[0][1]) == 0:
        return None
    axis, kept = cut[0]
    idx = numpy_helper.from_array(np.asarray(list(kept), np.int64), f"{node.output[0]}__indices")
    g.initializer.append(idx)
    return helper.make_node("Gather", [node.input[0], idx.name], [node.output[0]], axis=axis,
                            name=f"{node.name or node.output[0]}__gather")
