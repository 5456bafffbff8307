"""A streaming ONNX model we did not export (foreign names, dynamic axes,
plain torch.onnx.export) goes through the same targets, parity and client."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edge.errors import UserError
from runtime_py.manifest import Bundle
from targets import build as build_mod
from targets.thirdparty import load_spec, normalise
from targets.verify import verify

VOCAB, MELS, HIDDEN, CHUNK = 12, 80, 24, 8


class ForeignGru(nn.Module):
    """Someone else's streaming model: feats + hidden_in -> logits + hidden_out."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(MELS * 2, HIDDEN)
        self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, feats, hidden_in):
        b, t, f = feats.shape
        y = torch.tanh(self.proj(feats.reshape(b, t // 2, f * 2) / 10.0))
        y, h = self.gru(y, hidden_in)
        return torch.log_softmax(self.out(y), -1), h


@pytest.fixture(scope="module")
def foreign_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = ForeignGru().eval()
    path = tmp_path_factory.mktemp("foreign") / "foreign.onnx"
    torch.onnx.export(model, (torch.zeros(1, CHUNK, MELS), torch.zeros(1, 1, HIDDEN)), str(path),
                      input_names=["feats", "hidden_in"], output_names=["logits", "hidden_out"],
                      dynamic_axes={"feats": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "frames"}},
                      opset_version=17, dynamo=False)
    return path


def test_normalise_derives_signature(foreign_onnx, tmp_path):
    spec = load_spec(None, ["hidden_in=hidden_out"])
    spec["chunk_frames"] = CHUNK
    path, sig = normalise(foreign_onnx, spec, tmp_path / "n.onnx")
    g = sig.graph("encoder")
    assert g.input_names == ["feats", "hidden_in"]
    assert g.output_names == ["logits", "hidden_in_next"]
    assert g.inputs[0].shape == (1, CHUNK, MELS) and g.outputs[0].shape == (1, CHUNK // 2, VOCAB)
    assert sig.subsampling == 2 and sig.vocab_size == VOCAB


def test_thirdparty_bundle_parity_and_client(foreign_onnx, tmp_path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"states": {"hidden_in": "hidden_out"}, "chunk_frames": CHUNK}))
    out = tmp_path / "tp"
    rc = build_mod.main(["--target", "rpi", "--onnx", str(foreign_onnx), "--spec", str(spec_file),
                         "--quant", "ort:fp32,tflite:fp32", "-o", str(out)])
    assert rc == 0
    b = Bundle(out)
    assert sorted((a.backend, a.precision) for a in b.artifacts) == [("ort", "fp32"), ("tflite", "fp32")]
    for art in b.artifacts:
        assert art.parity["reference"] == "source-onnx (onnxruntime)"
        assert art.parity["chunks"] >= 200 and art.parity["max_abs_diff"] <= 1e-4
        assert art.parity["state_max_scaled_diff"] <= 1e-4
    assert verify(out) == 0  # the torch-free client's runners (ORT and LiteRT) agree with the golden outputs


def test_thirdparty_errors_are_clear(foreign_onnx, tmp_path):
    with pytest.raises(UserError, match="state ports"):
        load_spec(None, [])
    with pytest.raises(UserError, match="not an input"):
        normalise(foreign_onnx, {"states": {"h": "hidden_out"}, "chunk_frames": CHUNK}, tmp_path / "x.onnx")
    with pytest.raises(UserError, match="chunk_frames"):
        normalise(foreign_onnx, {"states": {"hidden_in": "hidden_out"}}, tmp_path / "x.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="not a readable ONNX"):
        normalise(bad, {"states": {"a": "b"}}, tmp_path / "y.onnx")
