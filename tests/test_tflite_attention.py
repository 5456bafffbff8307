"""Attention models through the TFLite route (onnxsim, the generic rewrites
of targets/tflite/rewrite.py, onnx2tf): a WeNet-style conformer whose
relative positions are sliced by an int64 offset state, and icefall's
Zipformer2. Both failed in onnx2tf before the rewrites.

Tolerances, as tests/test_targets_tflite.py states them: fp32 1e-4 against
PyTorch over 200 chunks with the states carried (kernels and summation order
only: measured 1.4e-6 WeNet-style, 5.4e-6 Zipformer small); fp16 1e-2; int8
(dynamic range) of these untrained models by the relative output error,
bar RELATIVE_ERROR_BARS["int8"] (0.1), as edge-build judges an untrained model.
The rewrite check (rewritten vs simplified ONNX in ONNX Runtime) moves values
without recomputing them: measured 0, bar 1e-5.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx2tf")
pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from byom_wenet import CACHE, CHUNK, declare_wenet_style  # noqa: E402
from edge.export import FP32_TOLERANCE, export_onnx, random_chunks, torch_runner  # noqa: E402
from runtime_py.stateloop import RELATIVE_ERROR_BARS, compare_rollouts, within  # noqa: E402
from targets import tflite as TF  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
ROOT = Path(__file__).resolve().parent.parent
FP16_TOLERANCE = 1e-2
CHUNKS = 200

torch.set_num_threads(1)


def _convert(model, tmp_path, precisions):
    sig = model.signature()
    g = sig.graph("encoder")
    onnx_path = export_onnx(model, tmp_path / "onnx")["encoder"]
    return sig, g, TF.onnx_to_tflite(onnx_path, g, tmp_path / "tflite", precisions=precisions, signature=sig)


def _check(model, sig, g, path, precision):
    r = compare_rollouts(g, torch_runner(model, g), TF.runner(path, g), random_chunks(g, sig, CHUNKS, seed=1))
    print(f"{sig.family} {precision}: max_abs_diff {r['max_abs_diff']:.3g}, relative {r['relative_error']:.3g}, "
          f"{path.stat().st_size} bytes")
    assert r["chunks"] == CHUNKS
    if precision == "fp32":
        assert within(r, FP32_TOLERANCE), r
    elif precision == "fp16":
        assert within(r, FP16_TOLERANCE), r
    else:
        assert r["relative_error"] <= RELATIVE_ERROR_BARS["int8"], r
        assert TF.quantized_tensor_count(path) > 0
    return r


def test_wenet_style_offset_sliced_positions_convert_to_fp32_tflite(tmp_path):
    model = declare_wenet_style()
    sig, g, paths = _convert(model, tmp_path, ("fp32",))
    route = paths.route
    print("route", route, "timings", paths.timings)
    # the position slice `pe[:, offset - cache : offset - cache + size]` became a gather,
    # and the rewritten graph computes what the simplified one does
    assert route["rewrites"]["data_start_slice_to_gather"] == 1
    assert route["rewrite_check"]["max_abs_diff"] <= 1e-5 and route["rewrite_check"]["chunks"] == 20
    assert route["rewrite_check"]["state_max_scaled_diff"] <= 1e-5  # each graph carried its own states
    assert route["steps"] == ["onnxsim", "rewrites", "onnx2tf"] and route["onnx2tf"]
    _check(model, sig, g, paths["fp32"], "fp32")
    # the rollout moved the offset: the gather was fed 200 different starts
    run = TF.runner(paths["fp32"], g)
    feeds = random_chunks(g, sig, 1, seed=3)[0]
    states = {s.name: np.full(s.shape, s.initial, dtype=s.dtype) for s in g.states}
    for _ in range(3):
        out = run({**feeds, **states})
        states = {s.name: out[f"{s.name}_next"] for s in g.states}
    assert int(states["offset"]) == CACHE + 3 * CHUNK


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_wenet_style_fp16_int8_tflite(tmp_path, precision):
    model = declare_wenet_style()
    sig, g, paths = _convert(model, tmp_path, (precision,))
    _check(model, sig, g, paths[precision], precision)


def _zipformer_factory():
    spec = importlib.util.spec_from_file_location("zipformer_factory", ROOT / "examples" / "zipformer_factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("zipformer") is None, reason="the PyPI zipformer package is not installed")
def test_zipformer_small_converts_to_every_tflite_precision(tmp_path):
    """The Zipformer's `flip` is a reversing Slice, which onnx2tf turns into an
    identity (outputs off by 0.1, no error): the rewrite makes it a Gather."""
    model = _zipformer_factory().build_small_untrained()
    sig, g, paths = _convert(model, tmp_path, TF.PRECISIONS)
    assert paths.route["rewrites"]["reversing_slice_to_gather"] >= 1, paths.route
    print("route", paths.route, "timings", paths.timings)
    for precision, path in paths.items():
        _check(model, sig, g, path, precision)


@pytest.mark.slow
def test_wenet_style_android_bundle_records_the_route(tmp_path):
    """edge-build --target android: every default format converted (no
    not_converted entry), parity within bars, and each .tflite artifact says
    which route and rewrites made it."""
    from runtime_py.manifest import Bundle
    from targets.build import build_bundle
    from targets.verify import verify

    # audio_in=False: the route and rewrites of the model's own attention graph are what is recorded here
    # (an android bundle takes audio by default)
    out = build_bundle(None, "android", tmp_path / "wenet", model=declare_wenet_style(), parity_chunks=CHUNKS,
                       audio_in=False)
    bundle = Bundle(out)
    assert bundle.manifest["not_converted"] == []
    tfl = [a for a in bundle.manifest["artifacts"] if a["backend"] == "tflite"]
    assert sorted(a["precision"] for a in tfl) == ["fp16", "fp32", "int8"]
    for a in tfl:
        assert a["parity"]["passed"], a
        assert a["conversion"]["route"]["rewrites"]["data_start_slice_to_gather"] == 1, a
    assert verify(out, out=lambda line: None) == 0
