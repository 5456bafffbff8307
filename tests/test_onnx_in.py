"""A VAD shipped as an ONNX file, taken unmodified through --onnx/--spec:
raw samples [1, T], a scalar sample-rate input, an `If` per rate, an STFT as
a Conv, an LSTM state. tests/vad_onnx.py builds one of the same shape (no
download); the real Silero file is used where the silero-vad package is
installed (.ci/run installs it without dependencies)."""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import vad_onnx
from edge.errors import UserError
from runtime_py.audio import read_wav
from runtime_py.manifest import Bundle
from runtime_py.stream import Model
from targets import build as build_mod
from targets import onnx_prepare
from targets.isolated import run_isolated
from targets.onnx_spec import frontend_from_spec
from targets.thirdparty import load_spec, normalise

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "edge" / "checkpoints" / "samples"


def speech_with_silences(seed: int = 0) -> np.ndarray:
    """The shipped sample utterances with 1-2 s of low noise (-60 dBFS) between them."""
    rng = np.random.default_rng(seed)
    pieces = []
    for path in sorted(SAMPLES.glob("*.wav")):
        audio, _ = read_wav(path)
        pieces += [np.zeros(int(16000 * rng.uniform(1.0, 2.0)), np.float32), audio]
    audio = np.concatenate(pieces + [np.zeros(16000, np.float32)])
    return (audio + 1e-3 * rng.standard_normal(len(audio))).astype(np.float32)


def client_probs(bundle_dir: Path, backend: str, precision: str, audio: np.ndarray) -> np.ndarray:
    """One probability per chunk from the torch-free client (samples in, states carried by it)."""
    model = Model.from_bundle(bundle_dir, backend=backend, precision=precision)
    stream = model.create_stream()
    stream.accept_waveform(16000, audio)
    out = []
    while model.decode_streams([stream]):
        out.append(float(np.asarray(stream.outputs["output"]).reshape(-1)[0]))
    return np.asarray(out)


@pytest.fixture(scope="module")
def tiny_vad(tmp_path_factory) -> Path:
    return vad_onnx.build(tmp_path_factory.mktemp("vad") / "tiny_vad.onnx")


def test_a_shipped_vad_builds_unmodified_and_the_client_agrees_with_it(tiny_vad, tmp_path, monkeypatch, capsys):
    """ORT fp32, ORT int8 (ops quantised) and TFLite fp32, each checked against
    the file itself; the bundle is named by the spec; the client's per-chunk
    probabilities equal the file's run the usual way (64 + 512 samples)."""
    spec_file = tmp_path / "vad.json"
    spec_file.write_text(json.dumps(vad_onnx.SPEC))
    monkeypatch.chdir(tmp_path)
    rc = build_mod.main(["--target", "rpi", "--onnx", str(tiny_vad), "--spec", str(spec_file),
                         "--quant", "ort:fp32,ort:int8,tflite:fp32", "--parity-chunks", "60"])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "dist" / "tiny_vad-thirdparty-rpi"  # "name" in the spec names the bundle
    bundle = Bundle(out)
    assert bundle.manifest["name"] == "tiny_vad"
    rewrite = bundle.signature.extra["onnx_rewrite"]
    assert rewrite["if_inlined"] >= 2 and rewrite["subgraphs_left"] == 0  # the sr If and the nested rank If
    assert bundle.signature.graph("encoder").inputs[0].shape == (1, 576, 1)
    assert bundle.signature.frontend.kind == "raw" and bundle.signature.frontend.left_pad == 64
    by = {(a.backend, a.precision): a for a in bundle.artifacts}
    assert sorted(by) == [("ort", "fp32"), ("ort", "int8"), ("tflite", "fp32")]
    for art in by.values():
        assert art.parity["passed"] and art.parity["reference"] == "source-onnx (onnxruntime)"
    assert by["ort", "int8"].parity["quantized_ops"] > 0
    audio = speech_with_silences()
    ref = vad_onnx.run_source(tiny_vad, audio)
    for (backend, precision), art in by.items():
        got = client_probs(out, backend, precision, audio)
        assert len(got) == len(ref) > 400
        diff = float(np.max(np.abs(got - ref)))
        # fp32: the same arithmetic (TFLite reorders sums: 1e-5). int8: dynamic LSTM weights on random
        # weights whose probabilities sit near 0.5, measured 2e-3; 2e-2 leaves room and still fails a
        # wrong state wiring (O(0.1)).
        assert diff <= (1e-4 if precision == "fp32" else 2e-2), (art.path, diff)


def test_the_folded_graph_has_no_branches_and_equals_the_file(tiny_vad, tmp_path):
    path, sig = normalise(tiny_vad, dict(vad_onnx.SPEC), tmp_path / "n" / "encoder.onnx")
    model = onnx.load(str(path))
    assert not any(n.op_type == "If" for n in model.graph.node)
    assert [i.name for i in model.graph.input] == ["input", "state"]  # sr folded in
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    src = ort.InferenceSession(str(tiny_vad), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((1, 576))).astype(np.float32)
    state = (0.1 * rng.standard_normal((2, 1, vad_onnx.HIDDEN))).astype(np.float32)
    got = sess.run(None, {"input": x[:, :, None], "state": state})
    want = src.run(None, {"input": x, "state": state, "sr": np.asarray(16000, np.int64)})
    other = src.run(None, {"input": x, "state": state, "sr": np.asarray(8000, np.int64)})
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert not np.allclose(got[0], other[0])  # the 8 kHz branch differs: the branch taken matters


def _accumulator(path: Path, layout: str) -> Path:
    """features in `layout` -> y = x @ w + h, h_next = 0.5 h + mean_t(x @ w)."""
    dims = {"TBF": ["T", 1, 6], "BFT": [1, 6, "T"], "T": ["T"]}[layout]
    rng = np.random.default_rng(0)
    nodes, inits = [], [numpy_helper.from_array(rng.standard_normal((6, 3)).astype(np.float32), "w")]
    x = "x"
    if layout == "BFT":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_btf"], perm=[0, 2, 1]))
        x = "x_btf"
    elif layout == "T":  # samples: frames of 6 samples
        inits.append(numpy_helper.from_array(np.asarray([1, -1, 6], np.int64), "frames"))
        nodes.append(helper.make_node("Reshape", ["x", "frames"], ["x_btf"]))
        x = "x_btf"
    elif layout == "TBF":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_btf"], perm=[1, 0, 2]))
        x = "x_btf"
    inits.append(numpy_helper.from_array(np.asarray(0.5, np.float32), "half"))
    nodes += [helper.make_node("MatMul", [x, "w"], ["proj"]),
              helper.make_node("Add", ["proj", "h"], ["y"]),
              helper.make_node("ReduceMean", ["proj"], ["m"], axes=[1], keepdims=0),
              helper.make_node("Mul", ["h", "half"], ["hh"]),
              helper.make_node("Add", ["hh", "m"], ["h_out"])]
    graph = helper.make_graph(nodes, "acc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims),
                                             helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("h_out", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what onnxruntime reads (onnx's default is newer)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("layout,chunk,dim", [("TBF", 8, 6), ("BFT", 8, 6), ("T", 48, 1)])
def test_any_input_layout_becomes_one_chunk_of_frames(tmp_path, layout, chunk, dim):
    """Time-major and channels-first features, and samples without a batch
    axis: the graph takes [1, chunk, dim] and computes what the file does on
    the same data in its own layout."""
    src = _accumulator(tmp_path / f"{layout}.onnx", layout)
    spec = {"states": {"h": "h_out"}, "chunk": chunk, "head": "none", "layout": layout}
    if layout == "T":
        spec["frontend"] = {"kind": "raw"}
    path, sig = normalise(src, spec, tmp_path / "n" / "encoder.onnx")
    assert sig.graph("encoder").inputs[0].shape == (1, chunk, dim)
    import onnxruntime as ort
    x = np.random.default_rng(2).standard_normal((1, chunk, dim)).astype(np.float32)
    h = np.ones((1, 3), np.float32)
    file_x = {"TBF": lambda: x.transpose(1, 0, 2), "BFT": lambda: x.transpose(0, 2, 1),
              "T": lambda: x.reshape(chunk)}[layout]()
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": file_x, "h": h})
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x, "h": h})
    assert all(np.allclose(g, w, atol=1e-6) for g, w in zip(got, want))


def test_spec_keys_are_the_declarations_and_typos_are_refused(tmp_path, tiny_vad):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"states": {"state": "stateN"}, "chunk_frames": 576, "shfit": 512}))
    with pytest.raises(UserError) as e:
        load_spec(bad)
    msg = str(e.value)
    assert "'chunk_frames', 'shfit'" in msg and "'chunk_frames' is now 'chunk'" in msg
    assert "the keys are: states, name, head, chunk, shift" in msg and "\n" not in msg
    with pytest.raises(UserError, match="'left_context' is 'left_pad'"):
        frontend_from_spec({"kind": "raw", "left_context": 64}, 1, raw_input=True)
    fe = frontend_from_spec({"kind": "raw", "sample_rate": 8000, "left_pad": 32}, 1, raw_input=True)
    assert (fe.kind, fe.sample_rate, fe.left_pad, fe.sample_scale, fe.feature_dim) == ("raw", 8000, 32, 1.0, 1)
    with pytest.raises(UserError, match="feature input has dim 80"):
        frontend_from_spec({"kind": "raw"}, 80, raw_input=False)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({**vad_onnx.SPEC, "name": "no spaces allowed"}))
    rc = build_mod.main(["--target", "rpi", "--onnx", str(tiny_vad), "--spec", str(named), "-o", str(tmp_path / "x")])
    assert rc == 2 and not (tmp_path / "x").exists()


def _crash_in_child(tmp_path, monkeypatch, module, attr: str):
    """Point `module.attr` (a "module:function" run in a child) at a function
    that kills its process with SIGSEGV; temporary folders go to a scratch
    folder the test can check is left empty. Returns that folder."""
    (tmp_path / "crashy.py").write_text("import os, signal\n\ndef crash(**kwargs):\n"
                                        "    os.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(module, attr, "crashy:crash")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def test_a_crash_in_onnx_runtime_is_one_error_line_and_leaves_nothing(tiny_vad, tmp_path, monkeypatch, capsys):
    """The first ORT session on a foreign graph segfaulted in the field (exit
    139, two edge-build-* folders left). Here the probe's child kills itself
    with SIGSEGV: the build ends with one error line naming the step."""
    scratch = _crash_in_child(tmp_path, monkeypatch, onnx_prepare, "PROBE")
    spec_file = tmp_path / "vad.json"
    spec_file.write_text(json.dumps(vad_onnx.SPEC))
    rc = build_mod.main(["--target", "rpi", "--onnx", str(tiny_vad), "--spec", str(spec_file),
                         "-o", str(tmp_path / "out")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ONNX Runtime's first run of tiny_vad.onnx crashed (SIGSEGV, exit 139)")
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out").exists()


def test_a_crash_in_the_int8_quantiser_is_a_conversion_failure_naming_it(tiny_vad, tmp_path, monkeypatch):
    from targets import ort
    from targets.conversion_errors import ConversionError
    scratch = _crash_in_child(tmp_path, monkeypatch, ort, "QUANTIZE_JOB")
    with pytest.raises(ConversionError, match=r"int8 quantisation of encoder.onnx crashed \(SIGSEGV, exit 139\)"):
        build_mod.build_bundle(None, "rpi", tmp_path / "out", onnx_model=tiny_vad, spec=dict(vad_onnx.SPEC),
                               backends=[("ort", "fp32"), ("ort", "int8")], parity_chunks=10)
    assert list(scratch.iterdir()) == [] and not (tmp_path / "out").exists()


def test_isolated_steps_report_exceptions_and_return_values():
    got = run_isolated("shape arithmetic", "targets.onnx_layout:contract_shape", layout="TBF", src_shape=[8, 1, 6])
    assert got == [1, 8, 6]
    with pytest.raises(UserError, match=r"^layout check failed: ValueError"):
        run_isolated("layout check", "targets.onnx_layout:contract_shape", layout="XYZ", src_shape=[1])


def test_the_tflite_preparation_is_exact(tmp_path):
    """Slices that cut one axis become Gathers (targets/onnx_tflite_prep.py;
    the Silero file needs it, see the docs); the prepared graph computes the
    same values."""
    from targets.onnx_tflite_prep import prepare
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((10, 1, 4)).astype(np.float32), "basis")] + [
        numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in
        (("s0", [0]), ("e5", [5]), ("e10", [10]), ("ax1", [1]), ("ax2", [2]), ("big", [1 << 30]), ("ax0", [0]))]
    nodes = [helper.make_node("Unsqueeze", ["x", "ax1"], ["x3"]),
             helper.make_node("Conv", ["x3", "basis"], ["spec"], strides=[2]),
             helper.make_node("Slice", ["spec", "s0", "big", "ax2"], ["spec_t"]),  # cuts nothing: stays
             helper.make_node("Slice", ["spec_t", "s0", "e5", "ax1"], ["re"]),
             helper.make_node("Slice", ["spec_t", "e5", "e10", "ax1"], ["im"]),
             helper.make_node("Mul", ["re", "im"], ["prod"]),
             helper.make_node("Squeeze", ["prod", "ax0"], ["y"])]
    graph = helper.make_graph(nodes, "stft", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 9])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "a.onnx"))
    done = prepare(tmp_path / "a.onnx", tmp_path / "b.onnx")
    assert done == {"slice_to_gather": 2}
    ops = [n.op_type for n in onnx.load(str(tmp_path / "b.onnx")).graph.node]
    assert ops == ["Unsqueeze", "Conv", "Slice", "Gather", "Gather", "Mul", "Squeeze"]
    import onnxruntime as ort
    x = {"x": rng.standard_normal((1, 20)).astype(np.float32)}
    a, b = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]).run(None, x)[0]
            for f in ("a.onnx", "b.onnx"))
    assert np.array_equal(a, b)


def _silero_onnx() -> Path | None:
    spec = importlib.util.find_spec("silero_vad")  # located, not imported (it imports torchaudio)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
    return path if path.is_file() else None


# The largest probability difference from the file on speech_with_silences(), per artifact, with room:
# measured 0 (ORT fp32), 4e-6..1.2e-5 (TFLite fp32), 3.7e-3 (fp16), 6.2e-2 (ORT int8, dynamic LSTM) and
# 0.26 (TFLite int8, dynamic range: near the threshold only in a few chunks; the decisions agreed 100 %).
SILERO_MAX_DIFF = {("ort", "fp32"): 1e-4, ("tflite", "fp32"): 1e-4, ("tflite", "fp16"): 1e-2,
                   ("ort", "int8"): 0.1, ("tflite", "int8"): 0.35}
needs_silero = pytest.mark.skipif(_silero_onnx() is None,
                                  reason="silero-vad is not installed (.ci/run installs it with --no-deps)")


@needs_silero
@pytest.mark.parametrize("target", ["rpi", pytest.param("android", marks=pytest.mark.slow)])
def test_the_silero_vad_file_builds_unmodified_and_decides_like_the_file(tmp_path, capsys, target):
    """The real one: silero-vad's silero_vad.onnx, unmodified, every format of the target."""
    src = _silero_onnx()
    spec = {"name": "silero_vad", "head": "none", "chunk": 576, "shift": 512,
            "frontend": {"kind": "raw", "sample_rate": 16000, "left_pad": 64},
            "states": {"state": "stateN"}, "batch_axis": {"state": 1},
            "inputs": {"sr": {"role": "const", "value": 16000}}}
    (tmp_path / "silero.json").write_text(json.dumps(spec))
    out = tmp_path / "b"
    rc = build_mod.main(["--target", target, "--onnx", str(src), "--spec", str(tmp_path / "silero.json"),
                         "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    bundle = Bundle(out)
    assert bundle.manifest["not_converted"] == []
    by = {(a.backend, a.precision): a for a in bundle.artifacts}
    assert len(by) == (3 if target == "rpi" else 5) and ("tflite", "fp32") in by
    assert by["ort", "int8"].parity["quantized_ops"] > 0
    audio = speech_with_silences()
    ref = vad_onnx.run_source(src, audio)
    assert 0.2 < np.mean(ref >= 0.5) < 0.6  # both decisions occur in the test audio
    for key in by:
        got = client_probs(out, *key, audio)
        agree = np.mean((got >= 0.5) == (ref >= 0.5))
        assert np.max(np.abs(got - ref)) <= SILERO_MAX_DIFF[key], key
        assert agree >= (1.0 if key[1] == "fp32" else 0.99), (key, agree)
