"""An audio-in model whose state is a 2-D convolution's cache (icefall's
Conv2dSubsampling in streaming mode, the Zipformer's `embed_states`)
converts to TFLite. onnx2tf holds the cache computed in the graph
channels-last and the state input as declared; the warmup hold
(edge/audio_in.py `_hold`) blends them flat, where before the Zipformer's
conversion died on "Dimensions must be equal, but are 3 and 128"."""

from __future__ import annotations

import json

import pytest

from byom_models import declare_conv2d_cache


def test_audio_in_conv2d_cache_converts_to_tflite_with_parity(tmp_path):
    pytest.importorskip("onnx2tf")
    from targets.build import build_bundle

    out = build_bundle(None, "android", tmp_path / "b", model=declare_conv2d_cache(), quant="tflite:fp32",
                       audio_in=True, stream_seconds=10.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest.get("not_converted"), manifest.get("not_converted")
    (art,) = [a for a in manifest["artifacts"] if a["backend"] == "tflite"]
    assert art["precision"] == "fp32" and (out / art["path"]).is_file()
    # fp32 against PyTorch over 200 chunks, and against the features-in reference (same bar, 1e-4)
    assert art["parity"]["passed"] and art["parity"]["chunks"] == 200 and art["parity"]["max_abs_diff"] <= 1e-4
    assert art["parity"]["features_in"]["passed"] and art["parity"]["reference_tokens"] > 0
    # the encoder takes PCM and keeps the 4-D conv cache as a state
    enc = next(g for g in manifest["signature"]["graphs"] if g["name"] == "encoder")
    assert [i["name"] for i in enc["inputs"]] == ["audio"]
    assert any(s["name"] == "conv_cache" and len(s["shape"]) == 4 for s in enc["states"])
