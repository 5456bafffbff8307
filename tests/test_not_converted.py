"""A target's preferred format that does not convert is left out of the
bundle, and the build's last line, edge-verify and the card all say so and
name what the app loads instead."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from targets import build as build_mod
from targets.conversion_errors import ConversionError

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")


def test_android_without_tflite_says_so_everywhere(tmp_path, capsys, monkeypatch):
    from targets.build import artifacts

    real = artifacts.convert_graphs

    def refuse_tflite(backend, *args, **kw):  # onnx2tf refusing the graph, as it does the Zipformer's
        if backend == "tflite":
            raise ConversionError("onnx2tf: Dimensions must be equal (test)")
        return real(backend, *args, **kw)
    monkeypatch.setattr(artifacts, "convert_graphs", refuse_tflite)
    factory = tmp_path / "vad_factory.py"
    factory.write_text("import sys\nsys.path.insert(0, %r)\nfrom byom_models import declare_vad\n\n"
                       "def build():\n    return declare_vad()\n" % str(Path(__file__).parent))
    out = tmp_path / "android"
    assert build_mod.main(["--target", "android", "--model", f"{factory}:build", "--parity-chunks", "20",
                           "-o", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"built {out}/") and "NOT CONVERTED: tflite fp32, fp16, int8 (no .tflite file)" in last
    assert "the app loads `encoder.fp32.ort` / `encoder.int8.ort` with onnxruntime-android OrtSession" in last
    from targets.verify import verify
    lines = []
    assert verify(out, out=lines.append) == 0  # what it holds verifies; what it lacks is said, not failed
    assert any(ln.startswith("  [!] NOT CONVERTED: tflite") for ln in lines), lines
    assert lines[-1].startswith("OK: ") and "NOT CONVERTED: tflite" in lines[-1]
    card = (out / "README.md").read_text()
    assert "tensorflow-lite" not in card and "> **Not converted: tflite fp32, fp16, int8" in card
    assert not list(out.glob("*.tflite"))


def test_an_onnx_model_for_ios_says_why_it_has_no_mlpackage(tmp_path, capsys):
    """coremltools converts from PyTorch only: an --onnx model's ios bundle
    holds the .ort files, and says so instead of only "built"."""
    import json

    import torch
    from test_thirdparty import CHUNK, MELS, HIDDEN, ForeignGru

    torch.manual_seed(0)
    src = tmp_path / "foreign.onnx"
    torch.onnx.export(ForeignGru().eval(), (torch.zeros(1, CHUNK, MELS), torch.zeros(1, 1, HIDDEN)), str(src),
                      input_names=["feats", "hidden_in"], output_names=["logits", "hidden_out"],
                      opset_version=17, dynamo=False)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"states": {"hidden_in": "hidden_out"}, "chunk": CHUNK}))
    out = tmp_path / "ios"
    assert build_mod.main(["--target", "ios", "--onnx", str(src), "--spec", str(spec), "--parity-chunks", "20",
                           "-o", str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "NOT CONVERTED: coreml fp16, fp32 (no .mlpackage file)" in last, last
    assert "onnxruntime-objc ORTSession" in last
    manifest = json.loads((out / "manifest.json").read_text())
    assert all("converts from PyTorch only" in nc["reason"] for nc in manifest["not_converted"])
    card = (out / "README.md").read_text()
    assert "MLModel(" not in card and "ORTSession(env: env" in card
