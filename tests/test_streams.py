"""runtime_py.stream: one loaded model, many streams, decode_streams batched
where the export allows it (edge export's dynamic_batch option)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.export import export_onnx, read_signature
from runtime_py.backends import open_runner
from runtime_py.signature import Signature, SignatureError
from runtime_py.stateloop import RolloutError
from runtime_py.stream import Model, stack, unstack
from tests.bundle_fixtures import cached_bundle, speechlike
from tests.test_families import build

# Batched and one-by-one run the same fp32 kernels on the same rows; only the
# summation order may differ with the batch size. Measured here: 0.0 on the
# three tiny families (ORT CPU); the bar is fp32 resolution at |x| ~ 10.
BATCH_TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["conformer", "lstm", "transducer"])
def batch_export(request, tmp_path_factory):
    model = build(request.param, seed=0)
    paths = export_onnx(model, tmp_path_factory.mktemp(request.param), dynamic_batch=True)
    sig = read_signature(paths["encoder"])
    return sig, {g.name: open_runner(paths[g.name], g, "onnx") for g in sig.graphs}


def _run_four(model: Model):
    """Four streams of different lengths through decode_streams; per-stream
    encoder outputs, tokens, and the number of encoder calls."""
    calls = [0]
    run = model.runs["encoder"]

    def counted(feeds):
        calls[0] += 1
        return run(feeds)
    model.runs["encoder"] = counted
    streams = [model.create_stream() for _ in range(4)]
    for i, s in enumerate(streams):
        s.accept_waveform(16000, speechlike(0.8 + 0.3 * i, seed=i))
        s.input_finished()
    outs = [[] for _ in streams]
    while True:
        ran = model.decode_streams(streams)
        if not ran:
            break
        for s in ran:
            outs[streams.index(s)].append(np.array(s.outputs[s.output_name]))
    model.runs["encoder"] = run
    return outs, [list(s.tokens) for s in streams], calls[0]


def test_batched_equals_one_by_one(batch_export):
    sig, runs = batch_export
    enc = sig.graph("encoder")
    assert enc.dynamic_batch and all(g.dynamic_batch for g in sig.graphs)
    batched, tok_b, calls_b = _run_four(Model(sig, runs, batch=True))
    single, tok_s, calls_s = _run_four(Model(sig, runs, batch=False))
    assert [len(o) for o in batched] == [len(o) for o in single]
    chunks = sum(len(o) for o in single)
    assert calls_s == chunks and calls_b == max(len(o) for o in single) < chunks  # really one call per round
    diff = max(float(np.abs(a - b).max()) for x, y in zip(batched, single) for a, b in zip(x, y))
    assert diff <= BATCH_TOLERANCE, diff
    assert tok_b == tok_s


def test_conformer_caches_stack_per_layer(batch_export):
    """The conformer's attention/conv caches are layer-major with the batch
    inside each layer: the export finds groups = layers (2 in the tiny model)."""
    sig, _ = batch_export
    groups = {s.name: s.batch_groups for s in sig.graph("encoder").states}
    if sig.family == "conformer":
        assert groups["attn_cache"] == groups["conv_cache"] == 2 and groups["sub1_cache"] == 1
    else:
        assert set(groups.values()) == {1}


def test_stack_unstack_round_trip():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((6, 3, 2)) for _ in range(3)]
    for axis, groups in ((0, 1), (0, 2), (0, 3), (1, 1)):
        both = stack(parts, axis, groups)
        assert both.shape[axis] == 3 * parts[0].shape[axis]
        for a, b in zip(unstack(both, 3, axis, groups), parts):
            np.testing.assert_array_equal(a, b)
    # groups=2: layer 0 of every stream, then layer 1 of every stream
    np.testing.assert_array_equal(stack(parts, 0, 2)[3:6], parts[1][:3])


def test_batch_metadata_is_written_only_when_used():
    path, _ = cached_bundle("conformer")
    sig = Model.from_bundle(path).signature
    d = sig.to_dict()
    assert "dynamic_batch" not in d["graphs"][0] and "batch_groups" not in d["graphs"][0]["states"][0]
    assert Signature.from_dict(d) == sig  # a v2 signature without them reads as batch-1
    with pytest.raises(ValueError, match="dynamic batch"):
        Model.from_bundle(path, batch=True)
    g = dict(d["graphs"][0], dynamic_batch=True)
    g["states"] = [dict(g["states"][0], batch_groups=2)] + list(g["states"][1:])
    with pytest.raises(SignatureError, match="batch_groups 2 does not divide"):  # sub1_cache has 1 row
        Signature.from_dict(dict(d, graphs=[g] + list(d["graphs"][1:])))


def test_streams_sharing_a_model_do_not_share_state():
    path, _ = cached_bundle("lstm")
    model = Model.from_bundle(path)
    a_audio, b_audio = speechlike(1.2, seed=3), speechlike(0.9, seed=4)
    alone = []
    for audio in (a_audio, b_audio):
        s = model.create_stream()
        s.accept_waveform(16000, audio)
        s.input_finished()
        while model.decode_streams([s]):
            pass
        alone.append((dict(s.states), list(s.tokens), s.chunks))
    a, b = model.create_stream(), model.create_stream()
    for s, audio in ((a, a_audio), (b, b_audio)):
        for i in range(0, len(audio), 1000):  # interleaved blocks
            s.accept_waveform(16000, audio[i: i + 1000])
            model.decode_streams([a, b])
        s.input_finished()
    while model.decode_streams([a, b]):
        pass
    for s, (states, tokens, chunks) in zip((a, b), alone):
        assert s.chunks == chunks and list(s.tokens) == tokens
        for k, v in states.items():
            np.testing.assert_array_equal(s.states[k], v)
    assert a.reset("session") and all(not np.any(v) for v in a.states.values())


def test_a_model_that_raises_names_the_chunk():
    path, _ = cached_bundle("lstm")
    model = Model.from_bundle(path)
    run = model.runs["encoder"]
    calls = [0]

    def breaks_at_3(feeds):
        calls[0] += 1
        if calls[0] > 3:
            raise IndexError("position table exhausted")
        return run(feeds)
    model.runs["encoder"] = breaks_at_3
    chunk = np.zeros((model.signature.chunk_frames, model.signature.frontend.feature_dim), np.float32)
    with pytest.raises(RolloutError, match=r"raised at chunk 3 .*IndexError: position table exhausted"):
        model.decode_chunks([chunk] * 5)
    with pytest.raises(ValueError, match="Hz"):
        model.create_stream().accept_waveform(8000, np.zeros(80, np.float32))


def test_edge_export_dynamic_batch_flag(tmp_path, capsys):
    """edge-export --dynamic-batch writes graphs whose signature says so, and
    their parity against PyTorch (batch 1) still holds."""
    from edge import cli

    assert cli.main(["--family", "lstm", "-o", str(tmp_path), "--dynamic-batch", "--parity-chunks", "4"]) == 0
    sig = read_signature(tmp_path / "encoder.onnx")
    assert sig.graph("encoder").dynamic_batch
    assert "[✓]" in capsys.readouterr().out
    assert cli.main(["--family", "lstm", "-o", str(tmp_path / "plain"), "--parity-chunks", "0"]) == 0
    assert not read_signature(tmp_path / "plain" / "encoder.onnx").graph("encoder").dynamic_batch


def test_a_model_that_bakes_its_batch_size_is_refused_at_export(tmp_path):
    """The tracer turns `int(x.shape[0])` into a constant (2, the traced
    batch): the batch-axis export must say so, not fail later in a client."""
    import torch
    from torch import nn

    import edge
    from edge.export import ExportError
    from tests.byom_models import CHUNK, FEATS, VOCAB

    class BakesBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(FEATS, VOCAB)

        def forward(self, x, h):  # x [B, T, F], h [B, V]
            b = int(x.shape[0])  # a Python number: traced as a constant
            y = self.lin(x) + h.reshape(b, 1, VOCAB)
            return torch.log_softmax(y, -1), y[:, -1]

    torch.manual_seed(0)
    model = edge.declare("bakes", encoder=edge.Step(BakesBatch().eval(), states=lambda b: torch.zeros(b, VOCAB),
                                                    names=["h"], returns=("log_probs", edge.STATES)),
                         head="ctc", chunk=CHUNK, frontend=edge.FrontendSpec(num_mel_bins=FEATS),
                         tokens=[f"w{i}" for i in range(VOCAB)], trained=False)
    export_onnx(model, tmp_path / "plain")  # batch 1: fine
    with pytest.raises(ExportError, match="batch-axis export does not run"):
        export_onnx(model, tmp_path / "batched", dynamic_batch=True)
    assert not list((tmp_path / "batched").glob("*.onnx"))  # nothing half-written is left
