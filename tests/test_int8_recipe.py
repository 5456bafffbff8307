"""A new int8 recipe is one module: tests/int8_toy.py (`TOY`: dynamic int8 of
MatMul only, no calibration) handed to the "ort" backend, and edge-build
makes, checks and records the ort int8 artifact with it, without any other
file changing. The shipped recipe on the same model also quantises the LSTM
(DynamicQuantizeLSTM), so the file itself tells which recipe ran."""

from __future__ import annotations

import dataclasses

import pytest

from targets.backends import BACKENDS
from tests.int8_toy import NAME, TOY

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def _ort_int8(tmp_path, name):
    from runtime_py.manifest import Bundle
    from targets.build import build_bundle
    from tests.test_build import tiny

    out = build_bundle("lstm", "rpi", tmp_path / name, model=tiny("lstm"), backends=[("ort", "int8")],
                       parity_chunks=8)
    return Bundle(out).find("encoder", "ort", "int8").parity


def test_a_new_int8_recipe_is_one_module(tmp_path, monkeypatch):
    shipped = _ort_int8(tmp_path, "shipped")
    assert shipped["int8_recipe"]["ops_quantised"]["dynamic"].get("com.microsoft.DynamicQuantizeLSTM", 0) > 0
    monkeypatch.setitem(BACKENDS, "ort", dataclasses.replace(BACKENDS["ort"], int8=TOY))
    toy = _ort_int8(tmp_path, "toy")
    ops = toy["int8_recipe"]["ops_quantised"]
    assert toy["int8_recipe"]["recipe"] == NAME and "static" not in ops  # the toy recipe ran, not the shipped one
    assert "com.microsoft.DynamicQuantizeLSTM" not in ops["dynamic"]
    assert ops["dynamic"].get("com.microsoft.DynamicQuantizeMatMul", 0) > 0 and toy["quantized_ops"] > 0
    assert toy["passed"]  # and it was rolled out against the reference like any int8 file


def test_every_int8_recipe_calibrates_from_one_source():
    """ORT's recipe and TFLite's full-integer option take their feeds from targets/calibration.py
    (tests/test_quantize.py and test_targets_tflite.py check that the feeds carry a rollout's states)."""
    from targets import calibration, quantize
    from targets.tflite import convert

    assert quantize.calibration_feeds is calibration.calibration_feeds
    assert convert.rollout_feeds is calibration.rollout_feeds
    assert not hasattr(quantize, "_ort_session")
