"""The torch-free client's session: it computes what the PyTorch model computes.

End to end, frontend included: audio in odd-size blocks -> StreamingRecognizer
-> ModelSession (ORT, state loop) gives the encoder outputs of the PyTorch
model's offline forward on the same features (<= 1e-4), and the same greedy
tokens; the client reproduces the bundle's golden files.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from runtime_py import backends
from runtime_py.audio import read_wav
from runtime_py.decoding import CtcGreedy, TransducerGreedy
from runtime_py.frontend import compute_features
from runtime_py.recognizer import StreamingRecognizer, tail_padding_samples
from runtime_py.session import ModelSession, SessionError, choose_backend
from runtime_py.signature import Signature
from tests.bundle_fixtures import FAMILIES, cached_bundle, odd_blocks, speechlike

TOL = 1e-4
# The golden features are computed from the 16-bit WAV as written, so the
# client (which reads that WAV) must reproduce them to fp32 accuracy.
GOLDEN_TOL = TOL


def _stream(session, audio, blocks=True):
    rec = StreamingRecognizer(session, vad=False, trace=True)
    for b in (odd_blocks(audio) if blocks else [audio]):
        rec.accept_audio(b, session.sample_rate)
    rec.finish()
    return rec, rec.finals


def _reference_features(session, audio):
    """What the client must feed: complete chunks of the tail-padded features."""
    sig = session.signature
    pad = tail_padding_samples(len(audio), sig.frontend, sig.chunk_frames, sig.shift_frames)
    feats = compute_features(np.concatenate([audio, np.zeros(pad, np.float32)]), sig.frontend)
    steps = (len(feats) - sig.chunk_frames) // sig.shift_frames + 1
    return feats, steps


@pytest.mark.parametrize("family", FAMILIES)
def test_streaming_client_equals_pytorch_offline(family):
    path, model = cached_bundle(family)
    session = ModelSession(path)
    sig = session.signature
    audio = speechlike(2.13, seed=5)  # not a whole number of chunks
    rec, _ = _stream(session, audio)
    feats, steps = _reference_features(session, audio)
    assert len(rec.trace) == steps
    used = (steps - 1) * sig.shift_frames + sig.chunk_frames
    # every real frame is inside a processed chunk (the tail padding did its job)
    real = compute_features(audio, sig.frontend).shape[0]
    assert steps * sig.shift_frames >= real
    fed = np.concatenate([c[: sig.shift_frames] for _, c, _ in rec.trace])
    np.testing.assert_allclose(fed, feats[: steps * sig.shift_frames], rtol=0, atol=1e-5)
    client = np.concatenate([o for _, _, o in rec.trace], axis=1)
    with torch.no_grad():
        offline, lens = model(torch.from_numpy(feats[None, :used]), torch.tensor([used]))
    offline = offline.numpy()
    assert client.shape == offline.shape
    diff = float(np.abs(client - offline).max())
    assert diff <= TOL, f"{family}: client vs PyTorch offline max|diff| {diff:.2e}"


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_decoding_equals_pytorch(family):
    path, model = cached_bundle(family)
    session = ModelSession(path)
    sig = session.signature
    audio = speechlike(2.0, seed=11)
    rec, finals = _stream(session, audio)
    feats, steps = _reference_features(session, audio)
    used = (steps - 1) * sig.shift_frames + sig.chunk_frames
    with torch.no_grad():
        enc, _ = model(torch.from_numpy(feats[None, :used]), torch.tensor([used]))
    if sig.decoder == "ctc":
        ref = CtcGreedy(sig.blank_id)
    else:
        from edge.export import torch_runner
        dec, join = (torch_runner(model, sig.graph(n)) for n in ("decoder", "joiner"))
        g_dec, g_join = sig.graph("decoder"), sig.graph("joiner")
        ref = TransducerGreedy(
            decoder=lambda y: dec({g_dec.inputs[0].name: y})[g_dec.outputs[0].name],
            joiner=lambda e, d: join({g_join.inputs[0].name: e, g_join.inputs[1].name: d})[g_join.outputs[0].name],
            context_size=sig.context_size, blank_id=sig.blank_id)
    ref.accept(enc.numpy())
    assert ref.tokens, "the reference decodes nothing: the comparison would prove nothing"
    from runtime_py.decoding import tokens_to_text
    assert len(finals) == 1
    assert finals[0].text == tokens_to_text(ref.tokens, session.tokens)
    assert finals[0].text


@pytest.mark.parametrize("family", FAMILIES)
def test_client_reproduces_golden_files(family):
    path, _ = cached_bundle(family)
    session = ModelSession(path)
    manifest = json.loads((path / "manifest.json").read_text())
    golden = manifest["golden"]
    audio, rate = read_wav(session.bundle.path(golden["audio"]))
    assert rate == session.sample_rate
    rec, finals = _stream(session, audio)
    inputs = np.load(session.bundle.path(golden["inputs"]["encoder"]))
    outputs = np.load(session.bundle.path(golden["outputs"]["encoder"]))
    out_name = session.encoder_output
    assert len(rec.trace) == len(inputs.files)
    fdiff = max(float(np.abs(chunk[None] - inputs[f"x_{i:04d}"]).max()) for i, (_, chunk, _) in enumerate(rec.trace))
    odiff = max(float(np.abs(out - outputs[f"{out_name}_{i:04d}"]).max()) for i, (_, _, out) in enumerate(rec.trace))
    assert fdiff <= GOLDEN_TOL and odiff <= GOLDEN_TOL
    want = session.bundle.path(golden["transcript"]).read_text(encoding="utf-8").strip()
    assert " ".join(f.text for f in finals) == want


def test_encode_is_driven_by_the_signature():
    path, _ = cached_bundle("conformer")
    session = ModelSession(path)
    sig = session.signature
    g = sig.graph("encoder")
    assert session.backend == "ort" and session.precision == "fp32"
    assert session.chunk_frames == sig.chunk_frames and session.feature_dim == sig.frontend.feature_dim
    out = session.encode(np.zeros((sig.chunk_frames, session.feature_dim), np.float32))
    assert out.shape == g.outputs[0].shape
    assert any(np.abs(v).max() > 0 for v in session.states().values()), "states did not advance"
    with pytest.raises(ValueError, match="shape"):
        session.encode(np.zeros((sig.chunk_frames + 1, session.feature_dim), np.float32))
    reset = session.reset("utterance")
    assert sorted(reset) == sorted(f"encoder.{s.name}" for s in g.states if s.reset == "utterance")
    for s in g.states:
        np.testing.assert_array_equal(session.states()[s.name], np.full(s.shape, s.initial, s.dtype))


def _fake_bundle(pairs, graphs=("encoder",)):
    sig = SimpleNamespace(graphs=[SimpleNamespace(name=g) for g in graphs])
    arts = [SimpleNamespace(graph=g, backend=b, precision=p) for b, p in pairs for g in graphs]
    return SimpleNamespace(signature=sig, artifacts=arts, backends=lambda: sorted(set(pairs)))


def test_backend_preference_and_errors():
    every = [("ort", "int8"), ("tflite", "fp16"), ("tflite", "fp32"), ("onnx", "fp32"), ("ort", "fp32")]
    assert choose_backend(_fake_bundle(every)) == ("ort", "fp32")
    assert choose_backend(_fake_bundle(every[:3])) == ("tflite", "fp32")
    assert choose_backend(_fake_bundle(every[:2])) == ("ort", "int8")
    assert choose_backend(_fake_bundle(every), backend="tflite") == ("tflite", "fp32")
    assert choose_backend(_fake_bundle(every), precision="int8") == ("ort", "int8")
    with pytest.raises(SessionError, match="CoreML"):
        choose_backend(_fake_bundle([("coreml", "fp16"), ("coreml", "fp32")]))
    with pytest.raises(SessionError, match="CoreML"):
        choose_backend(_fake_bundle(every + [("coreml", "fp16")]), backend="coreml")
    with pytest.raises(SessionError, match="no ort/fp16"):
        choose_backend(_fake_bundle(every), backend="ort", precision="fp16")
    # the BACKEND[:PRECISION] form every CLI takes (edge-demo --backend ort:int8) works here too
    assert choose_backend(_fake_bundle(every), backend="ort:int8") == ("ort", "int8")
    assert choose_backend(_fake_bundle(every), backend="TFLite:fp16", precision="fp16") == ("tflite", "fp16")
    with pytest.raises(SessionError, match="'ort:int8' and precision 'fp32' disagree"):
        choose_backend(_fake_bundle(every), backend="ort:int8", precision="fp32")
    with pytest.raises(SessionError, match="unknown artifact 'ort:int4'"):
        choose_backend(_fake_bundle(every), backend="ort:int4")
    with pytest.raises(SessionError, match="CoreML"):
        choose_backend(_fake_bundle(every + [("coreml", "fp16")]), backend="coreml:fp16")
    # a pair present for the encoder only does not count
    partial = _fake_bundle([("ort", "fp32")], graphs=("encoder", "decoder", "joiner"))
    partial.artifacts = partial.artifacts[:1]
    with pytest.raises(SessionError, match="every graph"):
        choose_backend(partial)


@pytest.mark.parametrize("module, pip", [("onnxruntime", "pip install onnxruntime"),
                                         ("ai_edge_litert.interpreter", "pip install ai-edge-litert")])
def test_missing_runtime_names_the_pip_command(monkeypatch, module, pip):
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, module.split(".")[0], None)  # import now fails
    with pytest.raises(ImportError, match=pip):
        backends._require(module)


def test_tflite_io_names_are_matched_by_name_size_then_order():
    want = [("x", 1280), ("h", 64), ("c", 64)]
    # renamed by the converter: prefixes, case, ':0'
    got = backends.match_names(want, [("serving_default_X:0", 1280), ("C", 64), ("H", 64)], "t")
    assert got == {"x": "serving_default_X:0", "h": "H", "c": "C"}
    # unknown names: a unique size decides, then the order for equal sizes
    got = backends.match_names(want, [("in_0", 1280), ("in_1", 64), ("in_2", 64)], "t")
    assert got == {"x": "in_0", "h": "in_1", "c": "in_2"}
    with pytest.raises(backends.BackendError, match="cannot match"):
        backends.match_names(want, [("a", 64), ("b", 32), ("d", 1280)], "t")
    with pytest.raises(backends.BackendError, match="declares 3"):
        backends.match_names(want, [("a", 1280)], "t")


def test_strict_tflite_names_accept_only_the_signatures_own():
    """edge-build checks its own .tflite files strictly: the lenient matching
    above is for third-party files, not for hiding a converter's renaming."""
    from pathlib import Path

    from runtime_py.signature import GraphSpec, StateSpec, TensorSpec
    g = GraphSpec("encoder", inputs=(TensorSpec("x", (1, 8, 4)),), outputs=(TensorSpec("y", (1, 2, 3)),),
                  states=(StateSpec("h", (1, 5)),))
    ok_in = {"x": {"shape": [1, 8, 4]}, "h": {"shape": [1, 5]}}
    ok_out = {"y": {}, "h_next": {}}
    backends._strict_names(Path("m.tflite"), g, ok_in, ok_out)
    with pytest.raises(backends.BackendError, match="lacks"):
        backends._strict_names(Path("m.tflite"), g, {"serving_default_x:0": ok_in["x"], "h": ok_in["h"]}, ok_out)
    # shapes: the one I/O check every runner makes (runtime_py.modelio)
    from runtime_py.modelio import tflite_tensor
    x = tflite_tensor("x", {"shape": [1, 4, 8], "dtype": "float32"})
    h = tflite_tensor("h", {"shape": [1, 5], "dtype": "float32"})
    outs = [tflite_tensor(n, {"shape": s, "dtype": "float32"}) for n, s in (("y", [1, 2, 3]), ("h_next", [1, 5]))]
    with pytest.raises(backends.IOMismatch, match=r"input 'x' .* declared \[1, 8, 4\], but m.tflite has \[1, 4, 8\]"):
        backends.check_io(g, [x, h], outs, Path("m.tflite"), "tflite")


def test_from_bundle_takes_the_cli_form_of_backend():
    """Model.from_bundle(dir, backend="ort:fp32") loads what backend="ort",
    precision="fp32" loads; a contradiction is refused before any file opens."""
    from runtime_py.stream import Model
    path, _ = cached_bundle("lstm")  # ort fp32 only
    m = Model.from_bundle(path, backend="ort:fp32")
    assert (m.backend, m.precision) == ("ort", "fp32")
    with pytest.raises(SessionError, match="no ort/int8 artifact"):  # parsed, then looked for
        Model.from_bundle(path, backend="ort:int8")
    with pytest.raises(SessionError, match="disagree"):
        Model.from_bundle(path, backend="ort:fp32", precision="int8")


def test_signature_from_the_manifest_is_the_models():
    path, model = cached_bundle("transducer")
    session = ModelSession(path)
    assert session.signature == Signature.from_dict(model.signature().to_dict())
    assert len(session.tokens) == session.signature.vocab_size


@pytest.mark.slow
def test_tflite_backend_matches_ort(tmp_path):
    """Full onnx2tf conversion (slow): the LiteRT runner gives ORT's outputs."""
    from tests.bundle_fixtures import tiny_bundle
    path, _ = tiny_bundle("lstm", tmp_path, backends=(("ort", "fp32"), ("tflite", "fp32")))
    a, b = ModelSession(path, backend="ort"), ModelSession(path, backend="tflite")
    assert b.backend == "tflite"
    audio = speechlike(1.5, seed=2)
    ra, _ = _stream(a, audio)
    rb, _ = _stream(b, audio)
    for (_, _, x), (_, _, y) in zip(ra.trace, rb.trace):
        assert np.abs(x - y).max() <= TOL
