"""A shipped graph made static for one chunk, and checked against itself.

`make_static` gives the file our input layout (targets/onnx_layout.py), fixes
the inputs to one chunk's shapes and folds what is then known
(targets/onnx_fold.py). `probe_rewritten` runs the result beside the
untouched file in a child process (targets/onnx_source.py's probe): their
outputs must agree, and the rewritten graph's output shapes are read there.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from edge.errors import UserError

from .onnx_layout import adapt_input

PROBE = "targets.onnx_source:probe"  # run in a child (targets.isolated)


def _set_shape(value, shape: tuple[int, ...]) -> None:
    """Set a value's shape, rank included (an input that changed layout)."""
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for n in shape:
        dims.add().dim_value = int(n)


def make_static(proto, io: dict, in_shapes: dict, out: Path) -> dict:
    """Our input layout, one chunk's static shapes, and everything that is
    then known folded (targets.onnx_fold); saved to `out` for the probe."""
    from .onnx_fold import fold_static, subgraph_count

    adapt_input(proto, io["input"], io["layout"], tuple(io["shape"]))
    for v in proto.graph.input:
        if v.name in in_shapes:
            _set_shape(v, in_shapes[v.name])
    del proto.graph.value_info[:]
    done = fold_static(proto)
    done["subgraphs_left"] = subgraph_count(proto.graph)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return done


def probe_rewritten(src: Path, rewritten: Path, io: dict, in_shapes: dict, dtypes: dict, initial: dict) -> dict:
    """Output shapes for one chunk, read by running the rewritten graph (in a
    child: ONNX Runtime has crashed on foreign graphs) beside the source."""
    from .isolated import run_isolated
    from .onnx_source import PROBE_CHUNKS, PROBE_TOLERANCE

    got = run_isolated(f"ONNX Runtime's first run of {src.name}", PROBE, src=str(src),
                       rewritten=str(rewritten), io=io, in_shapes={k: list(v) for k, v in in_shapes.items()},
                       dtypes=dtypes, initial=initial)
    if got["max_abs_diff"] > PROBE_TOLERANCE:
        raise UserError(f"the rewritten {src.name} (constants folded, branches inlined) differs from the file by "
                        f"{got['max_abs_diff']:.2e} over {PROBE_CHUNKS} chunks (tolerance {PROBE_TOLERANCE:g}); "
                        "please report it with the file")
    return {k: tuple(v) for k, v in got["shapes"].items()}
