"""The ORT int8 recipe (targets/quantize.py) on a small streaming Zipformer2.

The small Zipformer (examples/zipformer_factory.py:build_small_untrained, ~3 M
parameters) has both kinds of weights the recipe treats differently: Conv
(depthwise and pointwise convolutions, the embed's Conv2d) and MatMul.
What the recipe guarantees, checked here:
- Conv is statically quantised (QLinearConv in the .ort) and MatMul
  dynamically (DynamicQuantizeMatMul / MatMulIntegerToFloat), both > 0;
- calibration feeds carry the states of a real rollout, not the zeros a
  first chunk sees;
- the int8 encoder stays within the int8 relative-error bar (0.1, the bar of
  runtime_py.stateloop.RELATIVE_ERROR_BARS; this model measured ~0.05 with
  dynamic int8) of the fp32 graph over 40 chunks of speech with states
  carried;
- without a signature (no calibration speech) it falls back to dynamic only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
if importlib.util.find_spec("zipformer") is None:
    pytest.skip("the PyPI zipformer package is not installed (see docs/bring-your-own-model.md)",
                allow_module_level=True)

from runtime_py.backends import open_runner  # noqa: E402
from runtime_py.stateloop import RELATIVE_ERROR_BARS, StateLoop  # noqa: E402
from targets import ort as T  # noqa: E402
from targets import quantize as Q  # noqa: E402
from targets.golden import parity_stream  # noqa: E402

ROLLOUT = 40
FACTORY = Path(__file__).resolve().parent.parent / "examples" / "zipformer_factory.py"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from edge.export import export_onnx
    from edge.factory import load_model

    model = load_model(f"{FACTORY}:build_small_untrained")
    sig = model.signature()
    d = tmp_path_factory.mktemp("quant")
    onnx = export_onnx(model, d / "onnx")
    enc = sig.graph("encoder")
    return sig, onnx, {"fp32": T.to_ort(onnx["encoder"], d / "fp32", "fp32"),
                       "recipe": T.to_ort(onnx["encoder"], d / "recipe", "int8", enc, sig),
                       "dynamic": T.to_ort(onnx["encoder"], d / "dynamic", "int8")}


def _rollout(path, graph, chunks):
    loop = StateLoop(graph, open_runner(path, graph, "ort"))
    return np.concatenate([loop.step({graph.inputs[0].name: c})[graph.outputs[0].name] for c in chunks])


def test_recipe_quantises_conv_statically_and_matmul_dynamically(small):
    _, _, files = small
    ops = Q.quantized_ops(files["recipe"])
    assert ops["static"].get("QLinearConv", 0) > 0, ops
    assert sum(ops["dynamic"].values()) > 0, ops
    rec = Q.recipe_record(files["recipe"])
    assert rec["recipe"] == Q.RECIPE and rec["calibration"] == Q.CALIBRATION_SOURCE
    assert rec["ops_quantised"] == ops


def test_without_a_signature_int8_is_dynamic_only(small):
    _, _, files = small
    ops = Q.quantized_ops(files["dynamic"])
    assert "static" not in ops and sum(ops["dynamic"].values()) > 0
    assert Q.recipe_record(files["dynamic"])["calibration"] is None


def test_calibration_feeds_carry_rollout_states(small):
    sig, onnx, _ = small
    enc = sig.graph("encoder")
    feeds = Q.calibration_feeds(onnx["encoder"], enc, sig, n=4)
    assert len(feeds) == 4 and all(set(f) == set(enc.input_names) for f in feeds)
    first, later = feeds[0], feeds[3]
    moved = [s.name for s in enc.states if not np.array_equal(first[s.name], later[s.name])]
    assert len(moved) > len(enc.states) // 2, moved  # the caches filled as the stream went on


def test_recipe_stays_within_the_int8_error_bar(small):
    sig, _, files = small
    enc = sig.graph("encoder")
    chunks = parity_stream(sig, ROLLOUT)  # seed 0: not the calibration stream (seed 1)
    ref = _rollout(files["fp32"], enc, chunks)
    err = np.linalg.norm(_rollout(files["recipe"], enc, chunks) - ref) / np.linalg.norm(ref)
    assert np.isfinite(err) and err <= RELATIVE_ERROR_BARS["int8"], err
