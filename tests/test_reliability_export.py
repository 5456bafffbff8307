"""Issue 8, the exporter side: a bad checkpoint, a missing converter, an
operation a target cannot take, an interrupted build: one `error:` line and
nothing half-written. (Shared helpers: tests/reliability_common.py.)"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edge.errors import UserError
from runtime_py.manifest import Bundle
from targets import build as build_mod
from targets.build import build_bundle, conversion_error, failed_operation
from targets.build.convert import convert_graphs
from tests.bundle_fixtures import tiny_model

RATE = 16000
ORT = [("ort", "fp32")]

from tests.reliability_common import ORT, build_main, ckpt_dir, export_main, one_error_line, payload_of  # noqa: F401 - ckpt_dir is a fixture


class Evil:
    """Any class: a pickle of it would run code on load if weights_only were off."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_checkpoint(kind: str, src: Path, dst: Path) -> Path:
    if kind == "missing":
        return dst
    if kind == "empty":
        dst.write_bytes(b"")
    elif kind == "truncated":
        data = src.read_bytes()
        dst.write_bytes(data[: len(data) // 2])
    elif kind == "raw-state-dict":
        shutil.copy(src.parent / "raw_state_dict.pt", dst)
    elif kind == "arbitrary-pickle":
        p = payload_of(src)
        p["meta"] = {"note": Evil()}
        torch.save(p, dst)
    elif kind == "mismatched-shapes":
        p = payload_of(src)
        p["config"]["hidden"] = 48  # weights are for hidden=32
        torch.save(p, dst)
    elif kind == "chunk-not-multiple":
        p = payload_of(src)
        p["config"]["chunk_frames"] = 10  # not a multiple of the frame stacking
        torch.save(p, dst)
    elif kind == "unknown-family":
        p = payload_of(src)
        p["family"] = "wav2vec"
        torch.save(p, dst)
    elif kind == "folder":
        dst.mkdir()
    return dst


CHECKPOINT_CASES = {
    # kind: phrases the one error line must contain
    "missing": ["does not exist"],
    "empty": ["empty (0 bytes)"],
    "truncated": ["truncated"],
    "raw-state-dict": ["not an edge-speech-checkpoint file", "save_checkpoint"],
    "arbitrary-pickle": ["refused for safety", "save_checkpoint"],
    "mismatched-shapes": ["does not fit", "shape mismatch"],
    "chunk-not-multiple": ["invalid config", "chunk_frames=10", "multiple"],
    "unknown-family": ["wav2vec"],
    "folder": ["is a folder"],
}


@pytest.mark.parametrize("kind", sorted(CHECKPOINT_CASES))
def test_edge_export_bad_checkpoint_is_one_error_line(kind, ckpt_dir, tmp_path, capsys):
    path = _bad_checkpoint(kind, ckpt_dir / "lstm.pt", tmp_path / f"{kind}.pt")
    code, out, err = export_main(["--family", "lstm", "--checkpoint", str(path), "-o", str(tmp_path / "o"),
                                  "--chunks", "0"], capsys)
    assert code == 2
    msg = one_error_line(err)
    for phrase in CHECKPOINT_CASES[kind]:
        assert phrase in msg, (phrase, msg)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    if kind == "arbitrary-pickle":
        assert "pwned" not in out


def test_wrong_family_names_the_right_flag(ckpt_dir, tmp_path, capsys):
    for main in (export_main, build_main):
        argv = ["--family", "conformer", "--checkpoint", str(ckpt_dir / "lstm.pt"), "-o", str(tmp_path / "o")]
        code, _, err = main(argv + (["--target", "rpi"] if main is build_main else ["--chunks", "0"]), capsys)
        assert code == 2
        msg = one_error_line(err)
        assert "holds a 'lstm' model, not 'conformer'" in msg and "--family lstm" in msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["truncated", "arbitrary-pickle", "mismatched-shapes"])
def test_edge_build_bad_checkpoint_leaves_nothing(kind, ckpt_dir, tmp_path, capsys):
    path = _bad_checkpoint(kind, ckpt_dir / "lstm.pt", tmp_path / f"{kind}.pt")
    out = tmp_path / "dist" / "b"
    code, _, err = build_main(["--target", "rpi", "--family", "lstm", "--checkpoint", str(path), "-o", str(out)],
                              capsys)
    assert code == 2
    for phrase in CHECKPOINT_CASES[kind]:
        assert phrase in one_error_line(err)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_good_checkpoint_exports(ckpt_dir, tmp_path, capsys):
    """The control for the cases above: the same file, unmodified, exports."""
    code, out, err = export_main(["--family", "lstm", "--checkpoint", str(ckpt_dir / "lstm.pt"),
                                  "-o", str(tmp_path / "o"), "--chunks", "3"], capsys)
    assert code == 0, err
    assert (tmp_path / "o" / "encoder.onnx").exists()


def _hide(monkeypatch, *modules):
    """Make `import module` fail as if it were not installed (sys.modules[m] = None
    makes both import and importlib.util.find_spec say so)."""
    for m in modules:
        for name in [k for k in sys.modules if k == m or k.startswith(m + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, m, None)


@pytest.mark.parametrize("module, quant, target, extra", [
    ("onnx2tf", "tflite:fp32", "rpi", "tflite"),
    ("tensorflow", "tflite:fp16", "android", "tflite"),
    ("coremltools", "coreml:fp16", "ios", "coreml"),
])
def test_missing_converter_names_the_pip_extra_before_any_work(module, quant, target, extra, ckpt_dir, tmp_path,
                                                                monkeypatch, capsys):
    _hide(monkeypatch, module)
    calls = []
    monkeypatch.setattr("edge.checkpoint.load_or_init", lambda *a, **k: calls.append(a))
    out = tmp_path / "b"
    code, _, err = build_main(["--target", target, "--family", "lstm", "--checkpoint", str(ckpt_dir / "lstm.pt"),
                               "--quant", quant, "-o", str(out)], capsys)
    assert code == 2
    msg = one_error_line(err)
    assert f"pip install -e '.[{extra}]'" in msg and f"[{extra}] extra" in msg and module in msg
    assert not calls, "a missing converter must be reported before the model is loaded"
    assert not out.exists() and not any(tmp_path.glob(".*partial*"))


def test_missing_coremltools_inside_the_converter_is_one_line(monkeypatch):
    """require() inside targets/coreml.py (reached when check_backends is bypassed)."""
    from targets import coreml
    _hide(monkeypatch, "coremltools")
    with pytest.raises(UserError, match=r"pip install -e '\.\[coreml\]'"):
        coreml._ct()


def test_missing_onnx_in_edge_export_is_one_line(monkeypatch, capsys):
    _hide(monkeypatch, "onnx")
    monkeypatch.delitem(sys.modules, "edge.export", raising=False)
    code, _, err = export_main(["--family", "lstm", "-o", "x", "--chunks", "0"], capsys)
    assert code == 2
    assert "pip install -e '.[export]'" in one_error_line(err)


# -- an operation a target cannot take ------------------------------------------------------

def _onnx_with_unknown_op(path: Path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("FancyGelu", ["x"], ["y"], domain="com.example")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8  # what the installed runtimes read
    onnx.save(model, str(path))
    return path


def test_real_ort_conversion_of_an_unknown_op_names_op_target_and_fix(tmp_path):
    """A real converter error: ONNX Runtime refuses a node it has no kernel for."""
    src = _onnx_with_unknown_op(tmp_path / "encoder.onnx")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(build_mod.ConversionError) as e:
        # the ort converter reads no graph spec: a signature that answers graph() with None is enough here
        convert_graphs("ort", "fp32", SimpleNamespace(graph=lambda name: None), {"encoder": src}, out, work=tmp_path)
    msg = str(e.value)
    assert "'FancyGelu'" in msg and "ort fp32" in msg and "graph 'encoder'" in msg
    assert "Fix:" in msg and "--quant" in msg


@pytest.mark.parametrize("text, op", [
    ("\x1b[31mERROR:\x1b[0m FancyGelu OP is not yet implemented.", "FancyGelu"),  # onnx2tf
    ("INFO: onnx_op_type: Conv onnx_op_name: /c\nINFO: onnx_op_type: Einsum onnx_op_name: /e\nERROR: The trace "
     "log is below.", "Einsum"),  # onnx2tf's node trace: the last node is the failing one
    ("PyTorch convert function for op 'fft_rfft' not implemented.", "fft_rfft"),  # coremltools
    ("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for ConvInteger(10) node "
     "with name 'c'", "ConvInteger"),
    ("Fatal error: com.example:FancyGelu(-1) is not a registered function/op", "FancyGelu"),
    ("No Op registered for Foo with domain_version of 17", "Foo"),
    ("Segmentation fault", None),
])
def test_failed_operation_is_read_from_converter_messages(text, op):
    assert failed_operation(text) == op


@pytest.mark.parametrize("backend, quant, target, where, message, op", [
    ("tflite", "tflite:fp32", "rpi", "targets.tflite.onnx_to_tflite",
     "onnx2tf conversion of graph 'encoder' failed:\nINFO: onnx_op_type: LSTM onnx_op_name: /lstm\n"
     "ERROR: LSTM OP is not yet implemented.", "LSTM"),
    ("coreml", "coreml:fp16", "ios", "targets.coreml.to_coreml",
     "PyTorch convert function for op 'aten::_fancy' not implemented.", "aten::_fancy"),
    ("ort", "ort:int8", "rpi", "targets.ort.to_ort", "disk quota exceeded while optimising", None),
])
def test_edge_build_converter_failure_is_one_error_line(backend, quant, target, where, message, op, ckpt_dir,
                                                         tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError(message)
    monkeypatch.setattr(where, boom)
    out = tmp_path / "b"
    code, _, err = build_main(["--target", target, "--family", "lstm", "--checkpoint", str(ckpt_dir / "lstm.pt"),
                               "--quant", quant, "--parity-chunks", "2", "-o", str(out)], capsys)
    assert code == 2
    msg = one_error_line(err)
    assert f"to target {backend} " in msg and "Fix:" in msg and "converter said:" in msg
    if op:
        assert f"operation {op!r}" in msg
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_real_onnx2tf_refuses_an_unknown_op(tmp_path):
    """The TFLite path on the same unknown op (a real onnx2tf run: slow)."""
    src = _onnx_with_unknown_op(tmp_path / "encoder.onnx")
    from runtime_py.signature import GraphSpec, TensorSpec
    graph = GraphSpec("encoder", (TensorSpec("x", (1, 4)),), (TensorSpec("y", (1, 4)),))
    from targets import tflite
    with pytest.raises(Exception) as e:
        tflite.onnx_to_tflite(src, graph, tmp_path / "t", precisions=("fp32",))
    msg = str(conversion_error(e.value, "tflite", "fp32", "encoder"))
    assert "FancyGelu" in msg and "tflite fp32" in msg


# -- never a partial bundle -------------------------------------------------------------------

@pytest.mark.parametrize("failure", [KeyboardInterrupt, RuntimeError("converter crashed")])
def test_interrupted_or_failed_build_keeps_the_previous_bundle(failure, ckpt_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "dist" / "b"
    build_bundle("lstm", "rpi", out, model=tiny_model("lstm"), backends=ORT, parity_chunks=2)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    from targets import ort
    real_to_ort = ort.to_ort

    def convert(*a, **k):
        real_to_ort(*a, **k)  # a file written in the partial folder...
        raise failure  # ...then the interruption
    monkeypatch.setattr("targets.ort.to_ort", convert)
    code, _, err = build_main(["--target", "rpi", "--family", "lstm", "--checkpoint", str(ckpt_dir / "lstm.pt"),
                               "--quant", "ort:fp32", "--parity-chunks", "2", "-o", str(out)], capsys)
    assert code == (130 if failure is KeyboardInterrupt else 2)
    msg = one_error_line(err)
    assert ("interrupted" in msg) if failure is KeyboardInterrupt else ("converter crashed" in msg)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before, "the previous bundle must be untouched"
    assert sorted(p.name for p in out.parent.iterdir()) == ["b"], "no .partial / .old folder may remain"
    Bundle(out)  # and it still loads


def test_unwritable_output_is_one_error_line(tmp_path, capsys, ckpt_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = build_main(["--target", "rpi", "--family", "lstm", "--checkpoint", str(ckpt_dir / "lstm.pt"),
                               "--quant", "ort:fp32", "--parity-chunks", "2", "-o", str(blocker / "b")], capsys)
    assert code == 2
    assert "no partial bundle" in one_error_line(err)


# == loading a bundle ========================================================================


def test_sigterm_during_build_leaves_no_partial_folder(tmp_path):
    """A build killed with SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    code = ("import sys, time; sys.argv=['edge-build']; import targets.build as b, targets.build.artifacts as a\n"
            "def slow(*a, **k):\n    time.sleep(60)\n"
            "a.convert_graphs = slow\n"
            f"sys.exit(b.main(['--target', 'rpi', '--family', 'lstm', '--quant', 'ort:fp32', '-o', {str(out)!r},"
            " '--parity-chunks', '4']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180  # only a wait for the build to start (torch import, parity stream): slow under load
    while not list(tmp_path.glob(".b.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    partial, = tmp_path.glob(".b.partial-*")  # the build started writing (a fresh name each build)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err
    assert not partial.exists() and not out.exists() and not any(tmp_path.iterdir())
