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
    spec["chunk"] = CHUNK
    path, sig = normalise(foreign_onnx, spec, tmp_path / "n.onnx")
    g = sig.graph("encoder")
    assert g.input_names == ["feats", "hidden_in"]
    assert g.output_names == ["logits", "hidden_in_next"]
    assert g.inputs[0].shape == (1, CHUNK, MELS) and g.outputs[0].shape == (1, CHUNK // 2, VOCAB)
    assert sig.subsampling == 2 and sig.vocab_size == VOCAB


def test_thirdparty_bundle_parity_and_client(foreign_onnx, tmp_path):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"states": {"hidden_in": "hidden_out"}, "chunk": CHUNK}))
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
        normalise(foreign_onnx, {"states": {"h": "hidden_out"}, "chunk": CHUNK}, tmp_path / "x.onnx")
    with pytest.raises(UserError, match="\"chunk\""):
        normalise(foreign_onnx, {"states": {"hidden_in": "hidden_out"}}, tmp_path / "x.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="not a readable ONNX"):
        normalise(bad, {"states": {"a": "b"}}, tmp_path / "y.onnx")


def _declared_error(**facts) -> str:
    """The message edge.declare gives for the same facts (a toy encoder: the facts are checked first)."""
    from edge.declaration import Step, declare

    with pytest.raises(UserError) as e:
        declare(facts.pop("name", "m"), encoder=Step(lambda x, s: (x, s)), **{"chunk": CHUNK, **facts})
    return str(e.value)


@pytest.mark.parametrize("facts", [{"head": "rnnt"}, {"shift": CHUNK + 2}, {"max_duration_s": -1},
                                   {"name": "my model"}])
def test_a_spec_and_edge_declare_refuse_the_same_facts_with_the_same_message(foreign_onnx, tmp_path, facts):
    """Both routes declare the same things under the same names, checked by one function (edge/declaration.py)."""
    want = _declared_error(**facts)
    with pytest.raises(UserError) as got:
        normalise(foreign_onnx, {"states": {"hidden_in": "hidden_out"}, "chunk": CHUNK, **facts}, tmp_path / "x.onnx")
    assert str(got.value) == want and str(facts.popitem()[1]) in want


class ForeignRoles(nn.Module):
    """A foreign graph with inputs that are neither features nor states: a
    constant sample rate, a frame offset the caller advances, a cache whose
    time axis is dynamic in the file, and a [1, 1] output (no CTC head)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(MELS, 8)
        self.pos = nn.Parameter(torch.randn(512, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, feats, sr, offset, cache):
        x = self.proj(feats) * (sr.float() / 16000.0)
        x = x + self.pos[offset + torch.arange(feats.shape[1])]
        cache = torch.cat([cache, x], dim=1)[:, -16:]
        return torch.sigmoid(self.head(cache.mean(dim=1))), cache


def test_onnx_route_takes_constants_counters_dynamic_state_shapes_and_no_head(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "roles.onnx"
    args = (torch.zeros(1, CHUNK, MELS), torch.tensor(16000), torch.tensor(0), torch.zeros(1, 16, 8))
    torch.onnx.export(ForeignRoles().eval(), args, str(path), input_names=["feats", "sr", "offset", "cache_in"],
                      output_names=["prob", "cache_out"], dynamic_axes={"cache_in": {1: "t"}, "cache_out": {1: "t"}},
                      opset_version=17, dynamo=False)
    spec = {"states": {"cache_in": "cache_out"}, "head": "none", "state_shapes": {"cache_in": [1, 16, 8]},
            "batch_axis": {"cache_in": 0},
            "inputs": {"sr": {"role": "const", "value": 16000},
                       "offset": {"role": "counter", "step": CHUNK, "max": 512 - CHUNK}}}
    out, sig = normalise(path, spec, tmp_path / "norm" / "encoder.onnx")
    enc = sig.graph("encoder")
    assert sig.decoder == "none" and [t.name for t in enc.inputs] == ["feats"]
    by = {s.name: s for s in enc.states}
    assert by["cache_in"].shape == (1, 16, 8) and by["offset"].shape == () and by["offset"].batch_axis is None
    assert enc.outputs[0].shape == (1, 1)
    from runtime_py.backends import open_runner
    from runtime_py.stateloop import StateLoop
    loop = StateLoop(enc, open_runner(out, enc, "onnx", 1))
    for _ in range(100):  # 800 frames: the counter saturates instead of running off the 512-entry table
        loop.step({"feats": torch.randn(1, CHUNK, MELS).numpy()})
    assert int(loop.states["offset"]) == 512 - CHUNK


def test_onnx_route_refuses_an_undeclared_extra_input(tmp_path):
    path = tmp_path / "roles.onnx"
    args = (torch.zeros(1, CHUNK, MELS), torch.tensor(16000), torch.tensor(0), torch.zeros(1, 16, 8))
    torch.onnx.export(ForeignRoles().eval(), args, str(path), input_names=["feats", "sr", "offset", "cache_in"],
                      output_names=["prob", "cache_out"], opset_version=17, dynamo=False)
    with pytest.raises(UserError, match=r"inputs \['sr', 'offset'\] are neither the features nor states"):
        normalise(path, {"states": {"cache_in": "cache_out"}, "input": "feats", "head": "none"}, tmp_path / "n.onnx")


def test_onnx_route_takes_a_transducers_three_graphs(tmp_path):
    """Encoder, decoder and joiner as someone else exported them (dynamic
    batch axes, their own names): one bundle, checked against the source
    files, decoded by the client with the transducer loop."""
    from tests.test_families import build as family_model
    model = family_model("transducer")
    sig = model.signature()
    enc, dec, join = (model.graph_module(g) for g in ("encoder", "decoder", "joiner"))
    st = sig.graph("encoder").states
    torch.onnx.export(enc, (torch.zeros(1, 16, 80), *[torch.zeros(s.shape) for s in st]), str(tmp_path / "enc.onnx"),
                      input_names=["speech", "h0", "c0"], output_names=["enc_out", "h1", "c1"],
                      opset_version=17, dynamo=False)
    ctx = sig.context_size
    torch.onnx.export(dec, (torch.zeros(1, ctx, dtype=torch.int64),), str(tmp_path / "dec.onnx"),
                      input_names=["y"], output_names=["dec_out"], dynamic_axes={"y": {0: "N"}, "dec_out": {0: "N"}},
                      opset_version=17, dynamo=False)
    j = sig.graph("joiner").inputs[0].shape[-1]
    torch.onnx.export(join, (torch.zeros(1, j), torch.zeros(1, j)), str(tmp_path / "join.onnx"),
                      input_names=["e", "d"], output_names=["logit"],
                      dynamic_axes={"e": {0: "N"}, "d": {0: "N"}, "logit": {0: "N"}}, opset_version=17, dynamo=False)
    spec = {"states": {"h0": "h1", "c0": "c1"}, "head": "transducer", "decoder": "dec.onnx", "joiner": "join.onnx",
            "batch_axis": {"h0": 1, "c0": 1}, "trained": False, "decoder_start": [1] * (ctx - 1) + [0]}
    out = build_mod.build_bundle(None, "rpi", tmp_path / "b", onnx_model=tmp_path / "enc.onnx", spec=spec,
                                 backends=[("ort", "fp32")], parity_chunks=20)
    bundle = Bundle(out)
    assert [g.name for g in bundle.signature.graphs] == ["encoder", "decoder", "joiner"]
    assert bundle.signature.decoder == "transducer" and bundle.signature.context_size == ctx
    assert bundle.signature.start_context() == [1] * (ctx - 1) + [0]  # the spec's decoder_start, kept
    assert bundle.signature.graph("decoder").inputs[0].shape == (1, ctx)
    assert all(a.parity["passed"] for a in bundle.artifacts)
    assert verify(out) == 0


def test_stream_proof_runs_the_source_file_with_its_counter_counting_on(tmp_path):
    """A counter the spec saturates (max 512 - CHUNK) lets the graph stream for
    ever, but the file itself indexes a 512-entry table: the stream proof runs
    the untouched file with the counter unclamped, so the safe duration ends
    where the file raises (512 frames = 5.12 s), not at the hour asked."""
    torch.manual_seed(0)
    path = tmp_path / "roles.onnx"
    args = (torch.zeros(1, CHUNK, MELS), torch.tensor(16000), torch.tensor(0), torch.zeros(1, 16, 8))
    torch.onnx.export(ForeignRoles().eval(), args, str(path), input_names=["feats", "sr", "offset", "cache_in"],
                      output_names=["prob", "cache_out"], opset_version=17, dynamo=False)
    spec = {"states": {"cache_in": "cache_out"}, "head": "none", "batch_axis": {"cache_in": 0}, "trained": False,
            "inputs": {"sr": {"role": "const", "value": 16000},
                       "offset": {"role": "counter", "step": CHUNK, "max": 512 - CHUNK}}}
    out = build_mod.build_bundle(None, "rpi", tmp_path / "b", onnx_model=path, spec=spec,
                                 backends=[("ort", "fp32")], parity_chunks=20, stream_seconds=20)
    st = Bundle(out).manifest["proofs"]["stream"]
    assert st["reference"] == "source-onnx (onnxruntime), counters unclamped"
    assert not st["passed"] and "reference" in st["why"] and "raised" in st["why"]
    assert 5.0 <= st["safe_seconds"] <= 5.12 + 1e-9, st
