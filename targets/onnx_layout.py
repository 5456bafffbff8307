"""The feature input of a shipped ONNX file, in whatever layout it has.

Our graphs take one chunk as `[1, chunk, dim]` (dim 1 for raw samples), so
one generic client drives every model. A file may take raw samples as
`[1, T]` or `[T]`, features time-major `[T, 1, D]`, or channels-first
`[1, D, T]` (NeMo). The spec's `layout` names the file's axes (B batch,
T time in frames or samples, F feature), as `edge.Step(layout=...)` does for
a PyTorch step; without it the rank decides (3: BTF, 2: BT, 1: T). The graph
gets a new input of our shape under the file's input name, and a Reshape or
Transpose to the file's layout in front of everything that read it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.errors import UserError

LAYOUTS = ("BTF", "TBF", "BFT", "BT", "T")  # edge.Step's layouts, and "T" for a file without a batch axis
_DEFAULT = {3: "BTF", 2: "BT", 1: "T"}


def resolve_layout(given: str | None, rank: int, name: str) -> str:
    layout = given or _DEFAULT.get(rank)
    if layout not in LAYOUTS:
        raise UserError(f"\"layout\" {given!r} must be one of {list(LAYOUTS)} (B batch, T time, F feature)"
                        if given else f"feature input {name!r} has rank {rank}; give \"layout\" (one of "
                        f"{list(LAYOUTS)}) to say which axis is time")
    if len(layout) != rank:
        raise UserError(f"\"layout\": {layout!r} has {len(layout)} axes, but input {name!r} has rank {rank}")
    return layout


def source_shape(layout: str, dims: list, chunk: int | None, name: str) -> tuple[int, ...]:
    """The file's input shape for one chunk at batch 1."""
    t_axis = layout.index("T")
    chunk = chunk or dims[t_axis]
    if not chunk:
        raise UserError(f"input {name!r} has a dynamic time axis; give \"chunk\" in the spec (frames, or samples "
                        "for raw audio)")
    shape = []
    for axis, (letter, d) in enumerate(zip(layout, dims)):
        want = {"B": 1, "T": chunk}.get(letter, d)
        if want is None:
            raise UserError(f"input {name!r}: its feature axis {axis} is dynamic; export the file with a fixed "
                            "feature size")
        if d is not None and d != want:
            raise UserError(f"input {name!r}: axis {axis} ({letter}) is {d} in the file, the spec needs {want}")
        shape.append(int(want))
    return tuple(shape)


def contract_shape(layout: str, src_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Our `[1, chunk, dim]` for the file's one-chunk shape."""
    chunk = src_shape[layout.index("T")]
    dim = src_shape[layout.index("F")] if "F" in layout else 1
    return 1, chunk, dim


def to_source(x: np.ndarray, layout: str, src_shape: tuple[int, ...]) -> np.ndarray:
    """A `[1, chunk, dim]` chunk in the file's layout (the reference runner's feed)."""
    if layout in ("BT", "T"):
        return x.reshape(src_shape)
    return np.ascontiguousarray(np.transpose(x, _PERM[layout]))


_PERM = {"BTF": (0, 1, 2), "TBF": (1, 0, 2), "BFT": (0, 2, 1)}


def adapt_input(proto: onnx.ModelProto, name: str, layout: str, src_shape: tuple[int, ...]) -> None:
    """Give input `name` our shape; what read it reads the file's layout."""
    if layout == "BTF":
        return
    inner = f"{name}__{layout.lower()}"
    for node in proto.graph.node:
        _rename_reads(node, name, inner)
    if layout in ("BT", "T"):
        shape = numpy_helper.from_array(np.asarray(src_shape, dtype=np.int64), f"{inner}__shape")
        proto.graph.initializer.append(shape)
        adapter = helper.make_node("Reshape", [name, shape.name], [inner], name=f"{inner}__reshape")
    else:
        adapter = helper.make_node("Transpose", [name], [inner], perm=list(_PERM[layout]), name=f"{inner}__transpose")
    proto.graph.node.insert(0, adapter)


def _rename_reads(node, old: str, new: str) -> None:
    node.input[:] = [new if i == old else i for i in node.input]
    for a in node.attribute:
        for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            for n in sub.node:
                _rename_reads(n, old, new)
