"""LiteRT target: onnx2tf conversion, driven through the file's signature.

Tolerances: fp32 TFLite vs PyTorch: kernels and summation order only (1e-6
measured), so 1e-4 as for ONNX. fp16 stores weight matrices in float16
(relative error ~5e-4 per weight; vectors stay float32); on O(1) outputs that
gives ~1e-3 (measured 4e-4 on the LSTM, 2.4e-3 on the untrained conformer,
5e-3 on the trained one), so 1e-2. int8 (dynamic range) is judged
by argmax token agreement over the rollout, bar 0.95 as for ORT
(tests/test_targets_ort.py explains it); measured 0.99-1.0.
Conversions are slow (TensorFlow start-up plus one converter run per
precision, 15-40 s per graph on 2 cores); the default test converts only
the tiny LSTM to fp32, the rest is marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx2tf")
pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from edge.export import FP32_TOLERANCE, export_onnx, random_chunks, torch_runner  # noqa: E402
from runtime_py.stateloop import compare_rollouts, within  # noqa: E402
from targets import tflite as TF  # noqa: E402
from test_families import FAMILIES, build  # noqa: E402
from test_targets_ort import INT8_AGREEMENT_BAR, token_agreement  # noqa: E402

FP16_TOLERANCE = 1e-2
CHUNKS = 200

torch.set_num_threads(1)


def test_lstm_fp32_tflite_parity(tmp_path):
    model = build("lstm")
    sig = model.signature()
    g = sig.graph("encoder")
    onnx_paths = export_onnx(model, tmp_path / "onnx")
    paths = TF.onnx_to_tflite(onnx_paths["encoder"], g, tmp_path / "tflite", precisions=("fp32",), signature=sig)
    assert list(paths) == ["fp32"] and paths["fp32"].name == "encoder.fp32.tflite"
    print("conversion timings", paths.timings, "layout fixed:", paths.permutations)
    run = TF.runner(paths["fp32"], g, threads=1)
    # the file's own signature carries the declared names, shapes and dtypes
    details = run.interpreter.get_signature_runner(TF.SIGNATURE_KEY).get_input_details()
    assert {n: tuple(d["shape"]) for n, d in details.items()} == {t.name: t.shape for t in g.all_inputs()}
    out = run({**random_chunks(g, sig, 1)[0], "h": np.zeros((2, 1, 32), np.float32),
               "c": np.zeros((2, 1, 32), np.float32)})
    assert {k: v.shape for k, v in out.items()} == {t.name: t.shape for t in g.all_outputs()}
    r = compare_rollouts(g, torch_runner(model, g), run, random_chunks(g, sig, CHUNKS, seed=1))
    assert r["chunks"] == CHUNKS
    assert within(r, FP32_TOLERANCE), r
    # issue 25: a runner compares the file's own I/O with the declared graph before anything runs
    from dataclasses import replace

    from runtime_py.backends import IOMismatch, open_runner
    wrong = replace(g, states=(replace(g.states[0], shape=(2, 1, 16)),) + g.states[1:])
    for strict in (True, False):  # edge-build's own files, and the client's lenient name matching
        with pytest.raises(IOMismatch, match=r"state 'h' of graph 'encoder' is declared \[2, 1, 16\], "
                                             r"but encoder.fp32.tflite has \[2, 1, 32\]"):
            open_runner(paths["fp32"], wrong, "tflite", strict=strict)


def _constants(path):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    m = flatbuffer_utils.read_model(str(path))
    sub = m.subgraphs[0]
    deq = {i for i, c in enumerate(m.operatorCodes)
           if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    consts = {}
    for t in sub.tensors:
        b = m.buffers[t.buffer].data
        if b is not None and len(b) and t.type in (schema.TensorType.FLOAT16, schema.TensorType.FLOAT32):
            dt = "<f2" if t.type == schema.TensorType.FLOAT16 else "<f4"
            consts[t.name] = np.frombuffer(bytes(b), dtype=dt).reshape([int(d) for d in t.shape])
    return consts, sum(op.opcodeIndex in deq for op in sub.operators)


def test_fp16_keeps_vectors_and_small_constants_fp32(tmp_path):
    """fp16 rounds the large weight matrices only: vectors (biases, norms,
    CMVN) and constants of at most FP16_KEEP_FP32_VALUES values stay float32
    exactly, and each remaining fp16 constant is a large matrix with its one
    DEQUANTIZE."""
    model = build("lstm")
    sig = model.signature()
    g = sig.graph("encoder")
    onnx_paths = export_onnx(model, tmp_path / "onnx")
    paths = TF.onnx_to_tflite(onnx_paths["encoder"], g, tmp_path / "tflite", precisions=("fp16",), signature=sig)
    kept = paths.fp16_constants_kept_fp32
    assert list(paths) == ["fp16"] and kept["constants"] > 0 and kept["ambiguous"] == 0
    c16, n_deq = _constants(paths["fp16"])
    halves = {n: v for n, v in c16.items() if v.dtype == np.float16}
    assert halves and n_deq == len(halves)
    assert all(sum(d > 1 for d in v.shape) >= 2 and v.size > TF.FP16_KEEP_FP32_VALUES for v in halves.values())
    vectors = {n: v for n, v in c16.items() if v.dtype == np.float32 and v.size > 1}
    assert len(vectors) >= kept["constants"]
    # the CMVN mean is a vector: it must not be rounded to 11 bits
    cmvn_mean = model.cmvn().mean.detach().numpy().astype(np.float32)
    assert any(v.size == cmvn_mean.size and np.array_equal(np.abs(v.ravel()), np.abs(cmvn_mean))
               for v in vectors.values()), "the CMVN mean is not stored exactly in float32"
    r = compare_rollouts(g, torch_runner(model, g), TF.runner(paths["fp16"], g),
                         random_chunks(g, sig, CHUNKS, seed=1))
    assert within(r, FP16_TOLERANCE), r


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_all_families_all_precisions(family, tmp_path):
    model = build(family)
    sig = model.signature()
    onnx_paths = export_onnx(model, tmp_path / "onnx")
    for g in sig.graphs:
        paths = TF.onnx_to_tflite(onnx_paths[g.name], g, tmp_path / "tflite", signature=sig)
        assert sorted(paths) == sorted(TF.PRECISIONS)
        chunks = random_chunks(g, sig, CHUNKS, seed=1)
        for precision, path in paths.items():
            run = TF.runner(path, g)
            r = compare_rollouts(g, torch_runner(model, g), run, chunks)
            print(f"{family}/{g.name}/{precision}: max_abs_diff {r['max_abs_diff']:.3g}, "
                  f"{path.stat().st_size} bytes, {paths.timings}")
            if precision == "fp32":
                assert within(r, FP32_TOLERANCE), (g.name, r)
            elif precision == "fp16":
                assert within(r, FP16_TOLERANCE), (g.name, r)
            else:
                assert np.isfinite(r["max_abs_diff"]) and r["max_abs_diff"] < 1.0, (g.name, r["max_abs_diff"])
                if g.outputs[0].name in ("log_probs", "logits"):
                    agree = token_agreement(g, torch_runner(model, g), run, chunks)
                    print(f"{family}/{g.name}/int8 token agreement {agree:.4f}")
                    assert agree >= INT8_AGREEMENT_BAR, (g.name, agree)
        # the smaller precisions are smaller files (tiny graphs below the
        # converter's 1024-weight quantisation threshold stay equal; fp16 keeps
        # tensors of <= FP16_KEEP_FP32_VALUES in fp32, so a graph of only
        # small tensors gets the fp32 file as its fp16 one)
        assert paths["int8"].stat().st_size <= paths["fp32"].stat().st_size
        if paths.fp16_constants_kept_fp32.get("all_fp32"):
            assert paths["fp16"].read_bytes() == paths["fp32"].read_bytes()
        else:
            assert paths["fp16"].stat().st_size < paths["fp32"].stat().st_size


@pytest.mark.slow
def test_runner_refuses_a_file_for_another_graph(tmp_path):
    model = build("transducer")
    sig = model.signature()
    onnx_paths = export_onnx(model, tmp_path / "onnx")
    paths = TF.onnx_to_tflite(onnx_paths["joiner"], sig.graph("joiner"), tmp_path, precisions=("fp32",),
                               signature=sig)
    from runtime_py.backends import BackendError
    with pytest.raises(BackendError, match="signature lacks"):
        TF.runner(paths["fp32"], sig.graph("decoder"))


def test_fp16_pass_keeps_an_untwinned_constant_instead_of_failing():
    """A constant of the fp16 conversion with no float32 twin (the converter
    folded it differently, e.g. around a -inf mask) stays fp16 and is counted;
    it used to stop the build with 'has no fp32 twin'."""
    tf = pytest.importorskip("tensorflow")

    def convert(c, fp16):
        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
        def f(x):
            return tf.matmul(x, tf.constant(c)) + tf.constant(c[0])
        conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()])
        if fp16:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        return conv.convert()

    a = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    b = a.copy()
    b[0] = -3.0  # the fp16 file's constants are not the fp32 file's
    data, report = TF._small_constants_back_to_fp32(convert(b, True), convert(a, False))
    assert report["untwinned"] == 2 and report["constants"] == 0 and len(data) > 0


def test_calibration_feeds_carry_the_loop_states(tmp_path):
    """Full-integer calibration must see the states a real stream has, not
    zeros: each step's feeds hold the states the loop carried to that step
    (checked against an independent StateLoop rollout of the same file)."""
    from runtime_py.backends import open_runner
    from runtime_py.stateloop import StateLoop, initial_states
    from targets.calibration import rollout_feeds

    model = build("lstm")
    sig = model.signature()
    g = sig.graph("encoder")
    onnx_path = export_onnx(model, tmp_path / "onnx")["encoder"]
    chunks = random_chunks(g, sig, 5, seed=2)
    feeds = rollout_feeds(onnx_path, g, chunks)
    assert len(feeds) == 5 and all(set(f) == {t.name for t in g.all_inputs()} for f in feeds)
    loop = StateLoop(g, open_runner(onnx_path, g, "onnx"))
    for k, (f, c) in enumerate(zip(feeds, chunks)):
        for s in g.states:
            assert np.array_equal(f[s.name], loop.states[s.name]), (k, s.name)
        loop.step(c)
    zero = initial_states(g)
    assert all(np.array_equal(feeds[0][s.name], zero[s.name]) for s in g.states)
    assert not all(np.array_equal(feeds[3][s.name], zero[s.name]) for s in g.states)
