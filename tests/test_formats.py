"""The one table of formats (runtime_py/formats.py): the real rows resolve, the
tools read them, and a new backend is one module plus one row."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime_py import formats
from runtime_py.formats import FORMATS, Format


def test_every_row_names_functions_that_exist():
    for f in FORMATS.values():
        for dotted in filter(None, (f.converter, f.runner, f.quantized_count, f.inspect)):
            assert callable(formats.load(dotted)), f"{f.backend}: {dotted}"
        assert f.suffix.startswith(".") and f.precisions and set(f.precisions) <= set(formats.PRECISIONS)
        # a format that does not run here says why, and how its files are checked instead (edge-build needs both)
        assert f.runs_here or (f.not_here and f.inspect), f.backend


def test_converter_modules_agree_with_the_table():
    """targets/ort.py and targets/tflite.py still keep their own PRECISIONS (their owners read the
    table next): until then they must say the same."""
    from targets import coreml, ort, tflite
    assert tuple(ort.PRECISIONS) == FORMATS["ort"].precisions
    assert tuple(tflite.PRECISIONS) == FORMATS["tflite"].precisions
    assert tuple(coreml.PRECISIONS) == FORMATS["coreml"].precisions


def test_preference_order_is_exact_fp32_first():
    order = formats.preference_order()
    assert order[:3] == (("ort", "fp32"), ("onnx", "fp32"), ("tflite", "fp32"))
    assert order.index(("ort", "int8")) < order.index(("tflite", "fp16")) < order.index(("tflite", "int8"))
    assert "coreml" not in formats.runnable() and {"ort", "onnx", "tflite"} <= set(formats.runnable())


def test_demo_and_build_arguments_come_from_the_table(monkeypatch, capsys):
    import argparse

    from demo.cli import backend_choice
    from targets.build import get_target, list_targets, parse_quant

    assert backend_choice("tflite:fp16") == ("tflite", "fp16")
    with pytest.raises(argparse.ArgumentTypeError, match="ort/onnx/tflite"):
        backend_choice("coreml")  # in the table, but not runnable here
    with pytest.raises(Exception, match="unknown backend 'fake'"):
        parse_quant(get_target("rpi"), "fake:fp32")
    monkeypatch.setitem(FORMATS, "fake", _FAKE)
    assert backend_choice("fake:fp32") == ("fake", "fp32")
    assert "fake     .fake" in list_targets()


# -- a new backend: one module (here: the functions below) plus one row ----------------------------

def fake_convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]:
    """The one converter signature: the exported ONNX graph under a new suffix (ONNX Runtime reads
    the file by its content, so the row can reuse the ort runner)."""
    assert set(options) == {"work", "torch_model", "calibration"}  # what edge-build passes every converter
    return [Path(shutil.copy(onnx_path, Path(out_dir) / f"{graph.name}.{precision}.fake"))]


_FAKE = Format("fake", ".fake", ("fp32",), "runtime", "tests.test_formats:fake_convert", (("onnxruntime", "runtime"),),
               runner="runtime_py.backends:ort_runner", runtime_module="onnxruntime",
               preference=(("fp32", -1),))  # ranked above ort fp32: the session must pick it


def test_a_registered_row_builds_verifies_and_runs(tmp_path, monkeypatch):
    from runtime_py.manifest import Bundle
    from runtime_py.backends import open_runner
    from runtime_py.session import choose_backend
    from runtime_py.stateloop import StateLoop
    from targets.build import build_bundle
    from targets.verify import verify
    from tests.test_build import tiny

    monkeypatch.setitem(FORMATS, "fake", _FAKE)
    out = build_bundle("lstm", "rpi", tmp_path / "b", model=tiny("lstm"), backends=[("fake", "fp32")],
                       parity_chunks=8)
    b = Bundle(out)
    (art,) = b.artifacts
    assert (art.path, art.backend, art.precision) == ("encoder.fp32.fake", "fake", "fp32")
    assert art.parity["passed"] and art.parity["max_abs_diff"] <= art.parity["tolerance"]
    lines = []
    assert verify(out, out=lines.append) == 0, lines
    assert any("fake fp32 golden" in ln and "[✓]" in ln for ln in lines)
    assert choose_backend(b) == ("fake", "fp32")  # no backend named: the table's preference picks the new row
    enc = b.signature.graph("encoder")
    run = open_runner(b.path(art.path), enc, "fake")  # the client's runner, through the row
    out_first = StateLoop(enc, run).step({enc.inputs[0].name: np.zeros(enc.inputs[0].shape, np.float32)})[
        enc.outputs[0].name]
    assert out_first.shape == tuple(enc.outputs[0].shape) and np.all(np.isfinite(out_first))
