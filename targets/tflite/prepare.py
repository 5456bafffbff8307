"""The graph onnx2tf is given: the simplified ONNX graph after the generic
rewrites (rewrite.py), proven to compute what the simplified graph computes
by rolling both out in ONNX Runtime with the states carried. Runs in the
converter's child process (worker.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import TfliteConversionError

REWRITE_CHECK_CHUNKS = 20
# The rewrites move the same values (a Gather instead of a Slice, a reshaped
# constant): any difference is ONNX Runtime choosing another kernel order, ~1e-7.
REWRITE_TOLERANCE = 1e-5


def rewritten(sim_path: Path, g: dict, tmp: Path) -> tuple[Path, dict]:
    """(graph for onnx2tf, report). The report names the rewrites with their
    counts and the check's result; with no rewrite applied the simplified
    graph itself is returned."""
    import onnx

    from .rewrite import rewrite

    model, counts = rewrite(onnx.load(str(sim_path)), simplify=simplify)
    report = {"rewrites": counts}
    if not any(counts.values()):
        return sim_path, report
    out = tmp / f"{g['name']}.rewritten.onnx"
    onnx.save(model, str(out))
    diff = rollout_diff(sim_path, out, g, REWRITE_CHECK_CHUNKS)
    report["rewrite_check"] = {"chunks": REWRITE_CHECK_CHUNKS, "max_abs_diff": float(diff),
                               "tolerance": REWRITE_TOLERANCE, "against": "the simplified ONNX graph in ONNX Runtime"}
    if not diff <= REWRITE_TOLERANCE:
        raise TfliteConversionError(f"the ONNX rewrites for onnx2tf ({counts}) changed graph {g['name']!r}'s outputs "
                                    f"by {diff:.3g} (tolerance {REWRITE_TOLERANCE:g}) over {REWRITE_CHECK_CHUNKS} "
                                    "chunks; not converted")
    return out, report


def simplify(model, what: str = "rewritten graph"):
    """onnxsim's simplified `model`; TfliteConversionError when onnxsim
    cannot validate it (`what` names the graph in the message)."""
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise TfliteConversionError(f"onnxsim could not validate the {what}")
    return simplified


def start_feeds(g: dict, rng: np.random.Generator, random_float_states: bool = False) -> dict:
    """Inputs for a first chunk: states at their declared initial values
    (a counter must start where the model expects it), other inputs random;
    float states random too with `random_float_states` (distinct values on
    every axis, for finding layouts)."""
    initial = g.get("initial", {})
    feeds = {}
    for name, shape, dtype in g["inputs"]:
        if name in initial and not (random_float_states and dtype.startswith("float")):
            feeds[name] = np.full(shape, initial[name], dtype=dtype)
        elif dtype.startswith("int"):
            feeds[name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def rollout_diff(a_path: Path, b_path: Path, g: dict, chunks: int) -> float:
    """Largest |a - b| over every output of `chunks` steps, both graphs fed
    the same inputs and the states `a` returns."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a, b = (ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for p in (a_path, b_path))
    names = [n for n, _, _ in g["outputs"]]
    states = [n for n in g.get("initial", {})]
    rng = np.random.default_rng(0)
    feeds, worst = start_feeds(g, rng), 0.0
    for _ in range(chunks):
        ra, rb = a.run(names, feeds), b.run(names, feeds)
        worst = max([worst] + [float(np.max(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
                               for x, y in zip(ra, rb)])
        nxt = start_feeds(g, rng)
        got = dict(zip(names, ra))
        feeds = {**nxt, **{s: got[f"{s}_next"] for s in states}}
    return worst
