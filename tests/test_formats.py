"""The client's table of formats (runtime_py/formats.py) and the build's
backend objects (targets/backends/): the real rows resolve, the tools read
them, and a new backend is one module (here: this test's `FAKE` and `_FAKE_ROW`)
registered without touching any other file."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime_py import formats
from runtime_py.formats import FORMATS, Format
from runtime_py.runners import ort_runner
from targets.backends import BACKENDS, Backend


def test_every_backend_has_a_client_row_and_what_the_build_needs():
    assert list(BACKENDS) == list(FORMATS)  # one client row per build backend, in the same order
    for b in BACKENDS.values():
        f = b.client
        assert callable(b.convert) and f.suffix.startswith(".") and b.precisions
        assert set(b.precisions) <= set(formats.PRECISIONS), b.name
        if f.runs_here:
            assert callable(f.runner), b.name
        else:  # a format that does not run here says why, and how its files are checked instead
            assert f.not_here and callable(b.inspect), b.name
        assert "int8" not in b.precisions or b.int8 is not None, f"{b.name} builds int8 but cannot check it"


def test_each_precision_list_is_written_once():
    """A converter module's PRECISIONS is the backend object's: one tuple, not two that must agree."""
    from targets import coreml, ort, tflite
    assert BACKENDS["ort"].precisions is ort.PRECISIONS
    assert BACKENDS["tflite"].precisions is tflite.PRECISIONS
    assert BACKENDS["coreml"].precisions is coreml.PRECISIONS


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
    _register_fake(monkeypatch)
    assert backend_choice("fake:fp32") == ("fake", "fp32")
    assert "fake     .fake       fp32" in list_targets()
    assert parse_quant(get_target("rpi"), "fake:fp32") == (("fake", "fp32"),)


# -- a new backend: one module (here: what follows), registered -----------------------------------

def fake_convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]:
    """The one converter signature: the exported ONNX graph under a new suffix (ONNX Runtime reads
    the file by its content, so the row can reuse the ort runner)."""
    assert set(options) == {"work", "torch_model", "int8"}  # what edge-build passes every converter
    return [Path(shutil.copy(onnx_path, Path(out_dir) / f"{graph.name}.{precision}.fake"))]


# what a client needs: ranked above ort fp32, so the session must pick it
_FAKE_ROW = Format("fake", ".fake", "runtime", runner=ort_runner, runtime_module="onnxruntime",
                   preference=(("fp32", -1),))
def fake_side_files(folder: Path) -> list[str]:
    """A file next to the artifacts, once per build (as ORT's required_operators.config)."""
    (Path(folder) / "fake.list").write_text("".join(f"{p.name}\n" for p in sorted(Path(folder).glob("*.fake"))))
    return ["fake.list"]


# what edge-build needs
FAKE = Backend("fake", ("fp32",), fake_convert, build_needs=(("onnxruntime", "runtime"),), side_files=fake_side_files)


def _register_fake(monkeypatch):
    """What the module of a new backend does: its client row and its build object (monkeypatch: undone after)."""
    monkeypatch.setitem(FORMATS, "fake", _FAKE_ROW)
    monkeypatch.setitem(BACKENDS, "fake", FAKE)
    # the rpi target lists it (a target names the backends it offers)
    from targets.build import plan
    monkeypatch.setitem(plan.TARGETS, "rpi", dataclasses.replace(plan.TARGETS["rpi"],
                                                                  backends=plan.TARGETS["rpi"].backends + ("fake",)))


def test_a_registered_row_builds_verifies_and_runs(tmp_path, monkeypatch):
    from runtime_py.manifest import Bundle
    from runtime_py.backends import open_runner
    from runtime_py.session import choose_backend
    from runtime_py.stateloop import StateLoop
    from targets.build import build_bundle
    from targets.verify import verify
    from tests.test_build import tiny

    _register_fake(monkeypatch)
    out = build_bundle("lstm", "rpi", tmp_path / "b", model=tiny("lstm"), backends=[("fake", "fp32")],
                       parity_chunks=8)
    b = Bundle(out)
    (art,) = b.artifacts
    assert (art.path, art.backend, art.precision) == ("encoder.fp32.fake", "fake", "fp32")
    assert art.parity["passed"] and art.parity["max_abs_diff"] <= art.parity["tolerance"]
    assert "fake.list" in [f["path"] for f in b.files]  # its side file, listed in the manifest
    assert b.path("fake.list").read_text() == "encoder.fp32.fake\n"
    lines = []
    assert verify(out, out=lines.append) == 0, lines
    assert any("fake fp32 golden" in ln and "[✓]" in ln for ln in lines)
    assert choose_backend(b) == ("fake", "fp32")  # no backend named: the table's preference picks the new row
    enc = b.signature.graph("encoder")
    run = open_runner(b.path(art.path), enc, "fake")  # the client's runner, through the row
    out_first = StateLoop(enc, run).step({enc.inputs[0].name: np.zeros(enc.inputs[0].shape, np.float32)})[
        enc.outputs[0].name]
    assert out_first.shape == tuple(enc.outputs[0].shape) and np.all(np.isfinite(out_first))
