"""The one rollout check both rewrite routes prove a rewritten ONNX graph with (targets.parity.rollout_check:
the .ort route's targets/ort_rewrite.py and the TFLite route's targets/tflite/prepare.py): each graph carries
its own states, so a change inside a cache path shows in the outputs as it accumulates, where feeding both
graphs the reference's states would show it for one step only. Tiny hand-made graphs, no onnx2tf: seconds."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from runtime_py.signature import FrontendSpec, GraphSpec, Signature, StateSpec, TensorSpec
from targets.parity import rollout_check

pytest.importorskip("onnxruntime")
FRAMES, BINS = 8, 80  # one chunk of the default fbank frontend
DRIFT = 1e-3  # what the "wrong rewrite" adds to the state per chunk
CHUNKS = 20


def _signature() -> Signature:
    enc = GraphSpec("encoder", (TensorSpec("x", (1, FRAMES, BINS)),), (TensorSpec("y", (1, BINS)),),
                    (StateSpec("s", (1, BINS)),))
    return Signature(family="toy", frontend=FrontendSpec(), chunk_frames=FRAMES, shift_frames=FRAMES, subsampling=1,
                     graphs=(enc,), vocab_size=2)


def _accumulator(path, drift: float = 0.0, constant_node: bool = False):
    """y = s + mean_t(x) * c, s_next = s + mean_t(x) + drift (c = 1, as a Constant node when asked): the
    state is a running sum, like a cache; `drift` is a rewrite that is wrong only in the state path."""
    n = helper.make_node
    nodes = [n("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0), n("Mul", ["m", "c"], ["mc"]),
             n("Add", ["s", "mc"], ["y"]), n("Add", ["s", "m"], ["acc"]), n("Add", ["acc", "drift"], ["s_next"])]
    inits = [numpy_helper.from_array(np.array(drift, np.float32), "drift")]
    if constant_node:
        nodes.insert(0, n("Constant", [], ["c"], value=numpy_helper.from_array(np.array(1.0, np.float32))))
    else:
        inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "c"))
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "acc", [vi("x", TensorProto.FLOAT, [1, FRAMES, BINS]),
                                         vi("s", TensorProto.FLOAT, [1, BINS])],
                          [vi("y", TensorProto.FLOAT, [1, BINS]), vi("s_next", TensorProto.FLOAT, [1, BINS])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_a_drift_in_a_cache_path_shows_in_the_outputs_over_time(tmp_path):
    sig = _signature()
    ref, bad = _accumulator(tmp_path / "ref.onnx"), _accumulator(tmp_path / "bad.onnx", drift=DRIFT)
    r = rollout_check(ref, bad, sig.graph("encoder"), sig, CHUNKS, relative=True)
    assert r["chunks"] == CHUNKS and set(r) == {"chunks", "max_abs_diff", "state_max_scaled_diff", "relative_error"}
    # chunk i's output reads a state that has drifted i times: (CHUNKS - 1) * DRIFT at the last chunk; fed the
    # reference's states instead, the outputs would not differ at all. 2 %: float32 rounding of a sum ~1e2.
    assert r["max_abs_diff"] == pytest.approx((CHUNKS - 1) * DRIFT, rel=0.02)
    assert r["state_max_scaled_diff"] > 0


def test_the_tflite_route_checks_its_rewrites_with_the_shared_rollout(tmp_path):
    """prepare.rewritten (in the converter's child process) on a graph its Constant-node rewrite changes: the
    record is the shared check's (chunks, outputs, scaled states) with the route's own tolerance; without the
    signature (what the child gets as JSON) a rewritten graph is refused, never converted unchecked."""
    from targets.tflite import TfliteConversionError
    from targets.tflite import prepare
    from targets.tflite.convert import _job

    sig = _signature()
    graph = sig.graph("encoder")
    src = _accumulator(tmp_path / "sim.onnx", constant_node=True)
    g = _job(src, graph, tmp_path, ("fp32",))["graph"]
    out, report = prepare.rewritten(src, g, tmp_path, Signature.from_dict(sig.to_dict()))
    assert out != src and report["rewrites"]["constant_node_to_initializer"] == 1
    check = report["rewrite_check"]
    assert check["chunks"] == prepare.REWRITE_CHECK_CHUNKS and check["tolerance"] == prepare.REWRITE_TOLERANCE
    assert check["max_abs_diff"] == 0.0 and check["state_max_scaled_diff"] == 0.0  # a value moved, not recomputed
    with pytest.raises(TfliteConversionError, match="needs the model's signature"):
        prepare.rewritten(src, g, tmp_path, None)


def test_the_tflite_route_refuses_a_rewrite_that_drifts_in_a_cache_path(tmp_path, monkeypatch):
    from targets.tflite import TfliteConversionError
    from targets.tflite import prepare, rewrite
    from targets.tflite.convert import _job

    sig = _signature()
    src = _accumulator(tmp_path / "sim.onnx")
    drifting = onnx.load(str(_accumulator(tmp_path / "drift.onnx", drift=DRIFT)))
    monkeypatch.setattr(rewrite, "rewrite", lambda model, simplify: (drifting, {"a_wrong_rewrite": 1}))
    g = _job(src, sig.graph("encoder"), tmp_path, ("fp32",))["graph"]
    with pytest.raises(TfliteConversionError, match=r"a_wrong_rewrite.*states by .*not converted"):
        prepare.rewritten(src, g, tmp_path, sig)
