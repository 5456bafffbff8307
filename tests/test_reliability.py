"""Issue 8: bad input gets one clear message, long streams do not drift,
nothing is lost or half-written.

Every case below is either handled (checked against the clean case) or
refused with exactly one `error:` line and exit code 2 from the CLIs; the
client never crashes mid-stream. The messages are asserted on their key
phrases, so a reworded message still has to say what is wrong and what to do.
(Cases already covered elsewhere are not repeated: test_build.py has the
interrupted-build and corrupted-model checks, test_audio.py the WAV parser's
property tests, test_ringbuffer.py / test_frontend.py their own properties.)
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import shutil
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from demo import cli as demo_cli
from edge import cli as export_cli
from edge.checkpoint import save_checkpoint
from edge.errors import UserError
from runtime_py.audio import parse_wav, resample
from runtime_py.manifest import Bundle, ManifestError
from runtime_py.recognizer import Final, StreamingRecognizer, tail_padding_samples, transcribe_file
from runtime_py.session import ModelSession
from runtime_py.frontend import compute_features
from targets import build as build_mod
from targets.build import build_bundle, conversion_error, failed_operation
from tests.bundle_fixtures import cached_bundle, silence, speechlike, tiny_model

RATE = 16000
ORT = [("ort", "fp32")]


# -- helpers -----------------------------------------------------------------------------------

def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    return err.strip()


def export_main(argv, capsys):
    code = export_cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def build_main(argv, capsys):
    code = build_mod.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def demo_main(argv):
    out, err = io.StringIO(), io.StringIO()
    code = demo_cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """A valid tiny LSTM checkpoint and the same model's raw state_dict."""
    d = tmp_path_factory.mktemp("ckpt")
    model = tiny_model("lstm")
    save_checkpoint(model, d / "lstm.pt", tokens=[], meta={"trained": False})
    torch.save(model.state_dict(), d / "raw_state_dict.pt")
    return d


def payload_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# == exporter: edge-export and edge-build ==================================================

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
        build_mod._convert("ort", "fp32", None, None, {"encoder": src}, tmp_path, out, [])
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

@pytest.fixture()
def bundle_copy(tmp_path):
    path, _ = cached_bundle("lstm")
    return Path(shutil.copytree(path, tmp_path / "bundle"))


def edit_manifest(root: Path, change) -> None:
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _set(path, value):
    def change(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        if value is _DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return change


_DELETE = object()
MANIFEST_CASES = {
    "dotdot-artifact": (_set(["artifacts", 0, "path"], "../outside.onnx"), "leaves the bundle"),
    "absolute-tokens": (_set(["tokens"], "/etc/passwd"), "leaves the bundle"),
    "windows-drive": (_set(["tokens"], "C:/x/tokens.txt"), "leaves the bundle"),
    "dotdot-file": (_set(["files", 0, "path"], "golden/../../x"), "leaves the bundle"),
    "missing-field": (_set(["family"], _DELETE), "missing field 'family'"),
    "missing-artifact-field": (_set(["artifacts", 0, "sha256"], _DELETE), "manifest.artifacts[0]: missing field 'sha256'"),
    "wrong-type": (_set(["artifacts", 0, "bytes"], "12"), "manifest.artifacts[0].bytes: expected int, got str"),
    "files-not-a-list": (_set(["files"], {"a": 1}), "manifest.files: expected list"),
    "schema-version": (_set(["schema_version"], 2), "schema_version 2 is not 1; rebuild the bundle"),
    "schema-version-type": (_set(["schema_version"], "1"), "schema_version: expected int"),
    "unknown-backend": (_set(["artifacts", 0, "backend"], "tensorrt"), "backend 'tensorrt' not in"),
    "unknown-precision": (_set(["artifacts", 0, "precision"], "bf16"), "precision 'bf16' not in"),
    "unknown-graph": (_set(["artifacts", 0, "graph"], "joiner2"), "is not a graph of the signature"),
    "signature-broken": (_set(["signature", "graphs"], 7), "manifest.signature"),
    "not-an-object": (lambda m: m.clear() or m.update({"x": [1]}), "missing field 'schema_version'"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifest_is_refused_with_its_field(case, bundle_copy, tmp_path):
    change, phrase = MANIFEST_CASES[case]
    edit_manifest(bundle_copy, change)
    with pytest.raises(ManifestError) as e:
        Bundle(bundle_copy)
    assert phrase in str(e.value)
    wav = tmp_path / "a.wav"
    from runtime_py.audio import write_wav
    write_wav(wav, speechlike(0.3), RATE)
    code, out, err = demo_main([str(bundle_copy), "--wav", str(wav)])
    assert code == 2 and phrase in one_error_line(err) and out == ""


def test_invalid_json_and_non_object_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text('{"schema_version": 1,')
    with pytest.raises(ManifestError, match="not valid JSON"):
        Bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="must be a JSON object"):
        Bundle(bundle_copy)


def test_symlink_pointing_outside_is_refused(bundle_copy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(f"t{i} {i}\n" for i in range(64)))
    tokens = bundle_copy / "tokens.txt"
    tokens.unlink()
    tokens.symlink_to(secret)
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        Bundle(bundle_copy)
    # a symlinked model file too
    m = json.loads((bundle_copy / "manifest.json").read_text())
    tokens.unlink()
    shutil.copy(cached_bundle("lstm")[0] / "tokens.txt", tokens)
    model = bundle_copy / m["artifacts"][0]["path"]
    outside = tmp_path / "model.ort"
    shutil.move(model, outside)
    model.symlink_to(outside)
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        Bundle(bundle_copy)
    # a symlink that stays inside the bundle is fine
    model.unlink()
    shutil.move(outside, bundle_copy / "real.ort")
    model.symlink_to(bundle_copy / "real.ort")
    ModelSession(bundle_copy)


@pytest.mark.parametrize("content, phrase", [
    (b"<blk> 0\nfoo\n", "line 2: expected 'symbol id'"),
    (b"<blk> 0\na 2\n", "without gaps"),
    (b"<blk> 0\na 0\n", "appears twice"),
    (b"<blk> 0\na \xc2\xb2\n", "expected 'symbol id'"),  # superscript two: isdigit() but not int()
    (b"<blk> 0\n\xff\xfe 1\n", "not UTF-8"),
    (b"<blk> 0\n", "has 1 tokens, the signature says"),
    (b" 0\n", "expected 'symbol id'"),
])
def test_malformed_tokens_txt(content, phrase, bundle_copy):
    tokens = bundle_copy / "tokens.txt"
    tokens.write_bytes(content)
    edit_manifest(bundle_copy, lambda m: [f.update(sha256=None) for f in []])  # manifest unchanged
    b = Bundle(bundle_copy, verify=False)
    b.files = [f for f in b.files if f["path"] != "tokens.txt"]  # skip the sha256 check: test the parser
    with pytest.raises(ManifestError, match=phrase):
        b.tokens()


def test_tokens_sha256_mismatch_is_refused(bundle_copy, tmp_path):
    tokens = bundle_copy / "tokens.txt"
    tokens.write_text(tokens.read_text().replace("<blk>", "<pad>", 1))
    with pytest.raises(ManifestError, match="tokens.txt is corrupted or was changed: sha256"):
        Bundle(bundle_copy)
    wav = tmp_path / "a.wav"
    from runtime_py.audio import write_wav
    write_wav(wav, speechlike(0.3), RATE)
    code, _, err = demo_main([str(bundle_copy), "--wav", str(wav)])
    assert code == 2 and "sha256" in one_error_line(err)


def test_listed_file_missing(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / m["artifacts"][0]["path"]).unlink()
    with pytest.raises(ManifestError, match="listed in the manifest but missing"):
        ModelSession(bundle_copy)


# -- property: the manifest reader raises ManifestError or loads, nothing else --------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=8) | st.sampled_from(["..", "/x", "tokens.txt", "ort", "fp32", "encoder", "a/../../b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    path, _ = cached_bundle("lstm")
    root = Path(shutil.copytree(path, tmp_path_factory.mktemp("prop") / "bundle"))
    return root, json.loads((root / "manifest.json").read_text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_mutations_load_or_raise_manifest_error(manifest_root, data):
    root, valid = manifest_root
    m = json.loads(json.dumps(valid))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(m) if p]
        if not paths:
            break
        where = data.draw(st.sampled_from(paths))
        parent = m
        for k in where[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(json_values)
    (root / "manifest.json").write_text(json.dumps(m))
    try:
        Bundle(root)
    except ManifestError:
        pass
    finally:
        (root / "manifest.json").write_text(json.dumps(valid))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values)
def test_random_json_manifests_raise_manifest_error(manifest_root, doc):
    root, valid = manifest_root
    (root / "manifest.json").write_text(json.dumps(doc))
    try:
        with pytest.raises(ManifestError):
            Bundle(root)
    finally:
        (root / "manifest.json").write_text(json.dumps(valid))


# == client inputs ==========================================================================

def wav_bytes(x: np.ndarray, rate: int, code: int = 1, width: int = 2) -> bytes:
    """[frames] or [frames, channels] float -> WAV bytes (PCM 8/16/24/32 or float 32)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    frames, channels = x.shape
    if code == 3:
        data = x.astype("<f4").tobytes()
    elif width == 1:
        data = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        full = 2 ** (8 * width - 1)
        v = np.clip(np.round(x * full), -full, full - 1).astype(np.int64).ravel()
        data = b"".join(int(s).to_bytes(width, "little", signed=True) for s in v) if width == 3 else \
            v.astype("<i2" if width == 2 else "<i4").tobytes()
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * channels * width, channels * width, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def lowpass(x: np.ndarray, hz: float, rate: int = RATE) -> np.ndarray:
    spec = np.fft.rfft(x.astype(np.float64))
    spec[np.fft.rfftfreq(len(x), 1 / rate) > hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def clean_audio() -> np.ndarray:
    return np.concatenate([silence(0.3), speechlike(1.4, seed=3), silence(1.0), speechlike(0.9, seed=5),
                           silence(0.8)])


@pytest.fixture(scope="module")
def lstm_bundle():
    return cached_bundle("lstm")[0]


def texts(bundle, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transcribe_file(bundle, path, **kw)


@pytest.fixture(scope="module")
def clean_text(lstm_bundle, tmp_path_factory):
    p = tmp_path_factory.mktemp("wav") / "clean.wav"
    p.write_bytes(wav_bytes(clean_audio(), RATE, code=3, width=4))
    got = texts(lstm_bundle, p)
    assert len(got) >= 2 and all(got)  # two utterances (+ the untrained model's text on the final silence)
    return got


@pytest.mark.parametrize("case", ["pcm16", "pcm24", "pcm32", "float32", "stereo16", "stereo-float"])
def test_wav_formats_give_the_clean_text(case, lstm_bundle, clean_text, tmp_path):
    x = clean_audio()
    code, width = {"pcm16": (1, 2), "pcm24": (1, 3), "pcm32": (1, 4), "float32": (3, 4), "stereo16": (1, 2),
                   "stereo-float": (3, 4)}[case]
    if case.startswith("stereo"):
        x = np.stack([x, x], axis=1)
    p = tmp_path / f"{case}.wav"
    p.write_bytes(wav_bytes(x, RATE, code, width))
    assert texts(lstm_bundle, p) == clean_text
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out and "Traceback" not in err, err


def test_8_bit_wav_is_handled(lstm_bundle, tmp_path):
    """8-bit has 48 dB of SNR: it runs to the end and finds both utterances;
    the (untrained) model's text may differ from the clean one."""
    p = tmp_path / "u8.wav"
    p.write_bytes(wav_bytes(clean_audio(), RATE, 1, 1))
    got = texts(lstm_bundle, p)
    assert len(got) >= 2
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out, err


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled_in_the_stream(rate, lstm_bundle, tmp_path):
    """Audio recorded at `rate`: streaming it (resampled on the fly) gives
    exactly the text of the same recording resampled offline to 16 kHz, and
    above 16 kHz the text of the 16 kHz original. (The original is band-limited
    to 7 kHz: the resampler's anti-alias filter passes 0-7.36 kHz, so content
    above that, which the 16 kHz original has and the round trip removes,
    could legitimately change an untrained model's argmax.)"""
    x16 = lowpass(clean_audio(), 7000.0)
    xr = resample(x16, RATE, rate)
    src = tmp_path / f"{rate}.wav"
    src.write_bytes(wav_bytes(xr, rate, 3, 4))
    offline = tmp_path / f"{rate}-to-16k.wav"
    offline.write_bytes(wav_bytes(resample(parse_wav(src.read_bytes())[0], rate, RATE), RATE, 3, 4))
    got = texts(lstm_bundle, src)
    assert len(got) >= 2
    assert got == texts(lstm_bundle, offline)
    if rate > RATE:
        orig = tmp_path / "orig.wav"
        orig.write_bytes(wav_bytes(x16, RATE, 3, 4))
        assert got == texts(lstm_bundle, orig)
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(src)])
    assert rc == 0 and f"resampled from {rate} to {RATE} Hz" in err and "--- summary ---" in out, err
    assert ("narrowband" in err) == (rate == 8000), err


@pytest.mark.parametrize("case, phrase", [
    ("empty", "the file is empty"),
    ("header-only", "no data chunk"),
    ("truncated-header", "fmt chunk is truncated"),
    ("no-frames", "holds no audio samples"),
    ("alaw", "unsupported format code 0x0006"),
    ("float16", "16-bit float is not supported"),
    ("zero-rate", "sample rate of 0"),
    ("text-file", "not a RIFF/WAVE file"),
])
def test_bad_wavs_are_one_error_line(case, phrase, lstm_bundle, tmp_path):
    good = wav_bytes(speechlike(0.5), RATE)
    data = {
        "empty": b"",
        "header-only": good[:36],
        "truncated-header": good[:30],
        "no-frames": wav_bytes(np.zeros(0), RATE),
        "alaw": good[:20] + struct.pack("<H", 6) + good[22:],
        "float16": wav_bytes(speechlike(0.5), RATE, 3, 4)[:32] + struct.pack("<HH", 2, 16) + good[36:],
        "zero-rate": good[:24] + struct.pack("<I", 0) + good[28:],
        "text-file": b"hello, this is not audio\n" * 3,
    }[case]
    p = tmp_path / f"{case}.wav"
    p.write_bytes(data)
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 2 and out == ""
    msg = one_error_line(err)
    assert phrase in msg and p.name in msg and len(err.strip().splitlines()) == 1


def test_truncated_wav_keeps_the_frames_present(lstm_bundle, tmp_path):
    data = wav_bytes(clean_audio(), RATE)
    p = tmp_path / "cut.wav"
    p.write_bytes(data[: len(data) * 2 // 3 + 1])  # data chunk declared larger than the file, odd byte
    with pytest.warns(UserWarning, match="truncated"):
        x, _ = parse_wav(p.read_bytes())
    assert len(x) == (len(data) * 2 // 3 + 1 - 44) // 2
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out and "Traceback" not in err
    assert "warning: " in err and "data chunk is truncated" in err and "UserWarning" not in err, err


def test_nan_inf_samples_in_a_float_wav(lstm_bundle, clean_text, tmp_path):
    x = clean_audio()
    bad = x.copy()
    silent_idx = np.arange(100, 4000, 37)  # in the leading silence: replacing them by 0 changes ~nothing
    bad[silent_idx[::2]] = np.nan
    bad[silent_idx[1::2]] = np.inf
    bad[silent_idx[:5]] = -np.inf
    p = tmp_path / "nan.wav"
    p.write_bytes(wav_bytes(bad, RATE, 3, 4))
    rec = StreamingRecognizer(ModelSession(lstm_bundle), trace=True)
    y, _ = parse_wav(p.read_bytes())
    for i in range(0, len(y), 1600):
        rec.accept_audio(y[i: i + 1600], RATE)
    rec.finish()
    assert rec.nan_count == len(silent_idx)
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)
    assert [f.text for f in rec.finals if f.text] == clean_text
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and f"NaN/Inf samples replaced {len(silent_idx)}" in out


def test_an_all_nan_stream_does_not_crash(lstm_bundle):
    rec = StreamingRecognizer(ModelSession(lstm_bundle), vad=False, trace=True)
    rec.accept_audio(np.full(RATE, np.nan, np.float32), RATE)
    rec.accept_audio(np.full((RATE, 2), np.inf, np.float32), RATE)
    rec.finish()
    assert rec.nan_count == 2 * RATE and all(np.isfinite(o).all() for _, _, o in rec.trace)


def test_minutes_of_silence_and_blocks_of_exact_zeros(lstm_bundle):
    """3 minutes of near-silence, then 20 s of exact zeros (log(0) in the
    frontend), then speech: no utterance from the silence (only idle resets,
    which finalise whatever the untrained model emitted, so nothing is lost),
    states reset during the silence, finite outputs, bounded buffers, and the
    speech afterwards decodes as if alone."""
    session = ModelSession(lstm_bundle)
    rec = StreamingRecognizer(session, trace=True)
    quiet = silence(180.0)
    idle_resets = 0
    for i in range(0, len(quiet), 16000):
        events = rec.accept_audio(quiet[i: i + 16000], RATE)
        assert all(e.reason == "idle" for e in events if isinstance(e, Final))
        idle_resets += sum(isinstance(e, Final) for e in events)
    assert rec.endpointer.max_idle_s == 10.0 and rec.utterances == idle_resets <= 18
    for _ in range(20):
        rec.accept_audio(np.zeros(RATE, np.float32), RATE)
        rec.accept_audio(np.zeros(0, np.float32), RATE)  # and empty blocks
    assert rec.stream.buffered_frames < 2 * session.chunk_frames and rec.ring.available < rec.hop
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)
    rec.trace.clear()
    # speech after the silence is found and ended by the VAD (nothing lost)
    speech = np.concatenate([speechlike(1.2, seed=9), silence(1.0)])
    events = []
    for i in range(0, len(speech), 1600):
        events += rec.accept_audio(speech[i: i + 1600], RATE)
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].reason == "silence"
    assert finals[0].start_s == pytest.approx(200.0, abs=0.05)
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)


def test_client_api_misuse_is_a_clear_value_error(lstm_bundle):
    rec = StreamingRecognizer(ModelSession(lstm_bundle))
    with pytest.raises(ValueError, match="block must be 1-D or 2-D"):
        rec.accept_audio(np.zeros((2, 2, 2)), RATE)
    with pytest.raises(ValueError, match="unsupported sample dtype"):
        rec.accept_audio(np.array(["a"]), RATE)
    with pytest.raises(ValueError, match="positive integer"):
        rec.accept_audio(np.zeros(10, np.float32), 0)
    rec.accept_audio(np.zeros(100, np.float32), 48000)
    with pytest.raises(ValueError, match="sample rate changed"):
        rec.accept_audio(np.zeros(100, np.float32), 44100)
    rec.finish()  # the stream is still usable after the refusals
    assert rec.accept_audio(speechlike(0.2), RATE) is not None


# -- property: the recogniser's chunking does not depend on how the audio is cut ----------

@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 6000), min_size=0, max_size=12), seconds=st.floats(0.05, 1.5))
def test_chunking_is_independent_of_block_sizes(cuts, seconds):
    """Any block split gives exactly the encoder chunks of compute_features on
    the utterance plus its tail padding (the offline reference)."""
    path, _ = cached_bundle("conformer")
    session = ModelSession(path)
    x = speechlike(seconds, seed=len(cuts))
    rec = StreamingRecognizer(session, vad=False, trace=True)
    bounds = sorted(set(min(c, len(x)) for c in cuts)) + [len(x)]
    prev = 0
    for b in bounds:
        rec.accept_audio(x[prev:b], RATE)
        prev = b
    rec.finish()
    sig = session.signature
    pad = tail_padding_samples(len(x), sig.frontend, sig.chunk_frames, sig.shift_frames)
    feats = compute_features(np.concatenate([x, np.zeros(pad, np.float32)]), sig.frontend)
    n = (len(feats) - sig.chunk_frames) // sig.shift_frames + 1 if len(feats) >= sig.chunk_frames else 0
    assert len(rec.trace) == n
    for i, (_, chunk, _) in enumerate(rec.trace):
        np.testing.assert_array_equal(chunk, feats[i * sig.shift_frames: i * sig.shift_frames + sig.chunk_frames])


# == long streams ============================================================================

def test_soak_short():
    """2.5 minutes of audio (about 50 endpoint resets) on the tiny conformer.
    Bars: RSS growth after the first utterance < 16 MB (nothing in the loop
    may keep per-chunk data: an hour of chunks at 1 KB each would be 20 MB;
    the measured growth is a few MB of allocator/ORT arena noise), RTF over
    the last minute within 2x of the first, and no drift: the probe after the
    run equals a fresh session and every exact repeat equals its first time
    (the states are reset to their exact initial values, so <= 1e-5)."""
    from tests.harness.soak import run_soak
    path, _ = cached_bundle("conformer")
    r = run_soak(path, minutes=2.5, window_minutes=1.0)
    print(r.text())
    assert r.passed(), r.problems
    assert r.rss_end_mb - r.rss_start_mb < 16
    assert r.rtf_last <= 2 * r.rtf_first
    assert r.probe_max_diff <= 1e-5 and r.probe_text_equal and r.probe_chunks > 0
    assert r.repeats_checked >= 3 and r.repeat_max_diff <= 1e-5
    assert r.resets >= 30 and r.states_reset_exactly and r.states_finite and r.counters_are_ints


def test_soak_memory_rule_tells_warm_up_from_a_leak():
    """Measured on the shipped conformer: +8.5 MB in the first hour, +0.2 MB
    in the second (allocator warm-up). A steady slope of 12 MB/h is a leak."""
    from tests.harness.soak import SoakReport, memory_problems
    warm_up = SoakReport("b", "ort/fp32", audio_s=7200, rss_start_mb=75.8, rss_mid_mb=84.3, rss_end_mb=84.5)
    assert memory_problems(warm_up) == []
    leak = SoakReport("b", "ort/fp32", audio_s=7200, rss_start_mb=75.8, rss_mid_mb=87.8, rss_end_mb=99.8)
    assert leak.second_half_mb_per_hour == pytest.approx(12.0)
    assert "still growing" in memory_problems(leak)[0]
    short = SoakReport("b", "ort/fp32", audio_s=600, rss_start_mb=75.8, rss_mid_mb=76.0, rss_end_mb=79.0)
    assert memory_problems(short) == []  # a 5-minute half is too short to judge a slope
    huge = SoakReport("b", "ort/fp32", audio_s=600, rss_start_mb=75.8, rss_mid_mb=76.0, rss_end_mb=150.0)
    assert "grew" in memory_problems(huge)[0]


def test_soak_command_line(tmp_path, capsys):
    from tests.harness import soak
    path, _ = cached_bundle("lstm")
    assert soak.main([str(path), "--minutes", "0.5", "--window-minutes", "0.1", "--quiet",
                      "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "memory RSS" in out and "RTF first" in out and "OK" in out
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []
    assert soak.main([str(tmp_path), "--minutes", "1"]) == 2
    assert "manifest.json" in capsys.readouterr().err


@pytest.mark.slow
def test_soak_one_hour():
    from tests.harness.soak import run_soak
    path, _ = cached_bundle("conformer")
    r = run_soak(path, minutes=60, window_minutes=5)
    print(r.text())
    assert r.passed(), r.problems
    assert r.rss_end_mb - r.rss_start_mb < 32 and r.rtf_last <= 2 * r.rtf_first and r.rtf_overall < 1
    assert r.second_half_mb_per_hour < 8.0  # also in passed(): a leak's slope, not the warm-up


def test_sigterm_during_build_leaves_no_partial_folder(tmp_path):
    """A build killed with SIGTERM (a CI timeout, `kill`) cleans up like Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "b"
    code = ("import sys, time; sys.argv=['edge-build']; import targets.build as b\n"
            "def slow(*a, **k):\n    time.sleep(60)\n"
            "b._convert = slow\n"
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
