"""The graph onnx2tf is given: the simplified ONNX graph after the generic
rewrites (rewrite.py), proven to compute what the simplified graph computes
by rolling both out in ONNX Runtime, each carrying its own states, over
speech for an encoder (targets.parity.rollout_check, the check the .ort
route's rewrites pass too). Runs in the converter's child process
(worker.py), which gets the signature as JSON in its job."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import TfliteConversionError

REWRITE_CHECK_CHUNKS = 20
# The rewrites move the same values (a Gather instead of a Slice, a reshaped
# constant): any difference is ONNX Runtime choosing another kernel order, ~1e-7.
REWRITE_TOLERANCE = 1e-5


def rewritten(sim_path: Path, g: dict, tmp: Path, signature=None) -> tuple[Path, dict]:
    """(graph for onnx2tf, report). The report names the rewrites with their
    counts and the check's result; with no rewrite applied the simplified
    graph itself is returned. The check needs the model's `signature` (a
    runtime_py.signature.Signature): without it a rewritten graph is refused."""
    import onnx

    from runtime_py.stateloop import within

    from ..parity import rollout_check
    from .rewrite import rewrite

    model, counts = rewrite(onnx.load(str(sim_path)), simplify=simplify)
    report = {"rewrites": counts}
    if not any(counts.values()):
        return sim_path, report
    if signature is None:
        raise TfliteConversionError(f"the ONNX rewrites for onnx2tf ({counts}) changed graph {g['name']!r}, and "
                                    "their check needs the model's signature (onnx_to_tflite(..., signature=)); "
                                    "not converted")
    out = tmp / f"{g['name']}.rewritten.onnx"
    onnx.save(model, str(out))
    check = rollout_check(sim_path, out, signature.graph(g["name"]), signature, REWRITE_CHECK_CHUNKS)
    report["rewrite_check"] = {**check, "tolerance": REWRITE_TOLERANCE,
                               "against": "the simplified ONNX graph in ONNX Runtime"}
    if not within(check, REWRITE_TOLERANCE):
        raise TfliteConversionError(f"the ONNX rewrites for onnx2tf ({counts}) changed graph {g['name']!r}'s outputs "
                                    f"by {check['max_abs_diff']:.3g} and its states by "
                                    f"{check['state_max_scaled_diff']:.3g} (scaled; tolerance "
                                    f"{REWRITE_TOLERANCE:g}) over {check['chunks']} chunks; not converted")
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
