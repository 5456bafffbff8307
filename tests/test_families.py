"""Proof that every registered family exports to a correct explicit-state graph.

Tolerances: PyTorch and ONNX Runtime both compute in fp32; what differs is
kernel choice and summation order, which gives ~1e-6 on these models. 1e-4
leaves two orders of margin and still catches any real mistake (a wrong
cache slice or a dropped state gives differences of order 1e-1).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from edge.export import (FP32_TOLERANCE, check_onnx_parity, export_onnx, onnx_runner, random_chunks,
                         read_signature, torch_runner)
from edge.families import REGISTRY, get_family
from runtime_py.stateloop import StateLoop, initial_states, within

# One small config per registered family, so the suite stays fast. A family
# registered without an entry here fails test_every_family_is_tested.
FAMILY_TEST_CONFIGS = {
    "lstm": dict(hidden=32, num_layers=2, chunk_frames=8),
    "conformer": dict(d_model=32, num_heads=2, ffn_dim=64, num_layers=2, conv_kernel=5,
                      chunk_frames=16, left_context=8),
    "transducer": dict(hidden=32, num_layers=2, chunk_frames=8, joiner_dim=32, decoder_dim=16),
}
FAMILIES = sorted(FAMILY_TEST_CONFIGS)


def test_every_family_is_tested():
    assert set(REGISTRY) == set(FAMILY_TEST_CONFIGS), (
        "every registered family needs an entry in FAMILY_TEST_CONFIGS so the parity, rollout, "
        "streaming-vs-offline and reset tests run on it")


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = get_family(name).build(**FAMILY_TEST_CONFIGS[name]).eval()
    # Non-trivial normalisation statistics, so CMVN is exercised too.
    dim = model.cmvn().mean.shape[0]
    model.cmvn().set_stats(torch.linspace(-1, 1, dim), torch.linspace(0.5, 2, dim))
    return model


@pytest.fixture(scope="module", params=FAMILIES)
def exported(request, tmp_path_factory):
    model = build(request.param)
    paths = export_onnx(model, tmp_path_factory.mktemp(request.param))
    return model, paths


def test_signature_drives_onnx_io(exported):
    model, paths = exported
    sig = model.signature()
    assert sorted(paths) == sorted(g.name for g in sig.graphs)
    for g in sig.graphs:
        proto = onnx.load(str(paths[g.name]))
        assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
        assert [i.name for i in proto.graph.input] == g.input_names
        assert [o.name for o in proto.graph.output] == g.output_names
        for value, spec in zip(proto.graph.input, g.all_inputs()):
            assert tuple(d.dim_value for d in value.type.tensor_type.shape.dim) == spec.shape
        assert read_signature(paths[g.name]) == sig  # embedded and round-trips


def test_one_step_parity(exported):
    model, paths = exported
    report = check_onnx_parity(model, paths, chunks=1)
    for name, r in report.items():
        assert within(r, FP32_TOLERANCE), (name, r)


def test_rollout_200_chunks_does_not_drift(exported):
    model, paths = exported
    report = check_onnx_parity(model, paths, chunks=200, seed=1)
    for name, r in report.items():
        assert r["chunks"] == 200
        assert within(r, FP32_TOLERANCE), (name, r)
        # A state error accumulates chunk after chunk; float noise does not.
        # The 1e-6 floor is fp32 rounding on O(1) values.
        assert r["last_quarter_max"] <= 4 * r["first_quarter_max"] + 1e-6, (name, r)


def _stream_encoder(run, graph, feats: np.ndarray, chunk: int) -> np.ndarray:
    loop = StateLoop(graph, run)
    outs = [loop.step({"x": feats[:, i:i + chunk]})[graph.outputs[0].name]
            for i in range(0, feats.shape[1], chunk)]
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize("name", FAMILIES)
def test_streaming_equals_offline(name, tmp_path):
    """The chunked run (PyTorch step and ONNX) equals the whole-utterance run
    with the same limited context: the output does not depend on chunking."""
    model = build(name)
    sig = model.signature()
    g = sig.graph("encoder")
    n_chunks = 25
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((1, sig.chunk_frames * n_chunks, sig.frontend.num_mel_bins)).astype(np.float32)
    with torch.no_grad():
        offline, lens = model(torch.from_numpy(feats), torch.tensor([feats.shape[1]]))
    offline = offline.numpy()
    assert int(lens[0]) == offline.shape[1] == n_chunks * sig.chunk_frames // sig.subsampling
    streamed_torch = _stream_encoder(torch_runner(model, g), g, feats, sig.chunk_frames)
    paths = export_onnx(model, tmp_path)
    streamed_onnx = _stream_encoder(onnx_runner(paths["encoder"], g), g, feats, sig.chunk_frames)
    assert np.abs(streamed_torch - offline).max() <= FP32_TOLERANCE
    assert np.abs(streamed_onnx - offline).max() <= FP32_TOLERANCE


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_offline_ignores_padding(name):
    """Training runs padded batches; an utterance's output must not depend on
    what it was batched with."""
    model = build(name)
    sig = model.signature()
    rng = np.random.default_rng(4)
    t_long, t_short = sig.chunk_frames * 6, sig.chunk_frames * 3 + sig.subsampling * 2
    feats = torch.from_numpy(rng.standard_normal((2, t_long, sig.frontend.num_mel_bins)).astype(np.float32))
    with torch.no_grad():
        batched, lens = model(feats, torch.tensor([t_long, t_short]))
        alone, _ = model(feats[1:, :t_short], torch.tensor([t_short]))
    n = int(lens[1])
    assert n == alone.shape[1]
    assert torch.allclose(batched[1, :n], alone[0], atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_reset_returns_states_to_initial(name):
    model = build(name)
    sig = model.signature()
    for g in sig.graphs:
        loop = StateLoop(g, torch_runner(model, g))
        chunks = random_chunks(g, sig, 6, seed=5)
        first = [loop.step(c) for c in chunks]
        if g.states:
            assert any(not np.array_equal(loop.states[s.name], v) for s, v in
                       zip(g.states, initial_states(g).values())), "states never changed"
        reset = loop.reset("utterance")
        assert sorted(reset) == sorted(s.name for s in g.states if s.reset == "utterance")
        for s in g.states:
            if s.reset == "utterance":
                np.testing.assert_array_equal(loop.states[s.name], np.full(s.shape, s.initial, s.dtype))
        again = [loop.step(c) for c in chunks]
        for a, b in zip(first, again):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_conformer_has_no_absolute_position():
    """After any amount of history, the output depends only on the bounded
    window, not on how long the stream has run: a stream that has seen 400
    chunks and one that has seen 3 agree once both see the same recent input.
    An absolute position or an ever-growing offset would break this."""
    model = build("conformer")
    sig = model.signature()
    g = sig.graph("encoder")
    run = torch_runner(model, g)
    common = random_chunks(g, sig, 12, seed=7)
    long_loop, short_loop = StateLoop(g, run), StateLoop(g, run)
    for c in random_chunks(g, sig, 400, seed=8):
        long_loop.step(c)
    for c in random_chunks(g, sig, 3, seed=9):
        short_loop.step(c)
    diffs = []
    for c in common:
        a, b = long_loop.step(c)["log_probs"], short_loop.step(c)["log_probs"]
        diffs.append(float(np.abs(a - b).max()))
    # Receptive field of the tiny config: 2 layers x (8 left + 4 conv) frames
    # = 6 chunks; the last 4 of 12 common chunks are beyond it.
    assert max(diffs[-4:]) <= FP32_TOLERANCE, diffs
    assert max(diffs[:2]) > 1e-3, "history must matter inside the window (else the test proves nothing)"


def test_conformer_step_batches_streams_like_single_streams():
    """The exported step is batch 1, but the PyTorch step also takes a batch
    of streams (layer-major stacked caches, batch inside each layer): two
    streams stepped together give what each gives alone, states included."""
    model = build("conformer")
    sig = model.signature()
    g = sig.graph("encoder")
    L = model.config.num_layers
    seqs = [random_chunks(g, sig, 6, seed=s) for s in (3, 4)]
    single = []
    for seq in seqs:
        states = [torch.from_numpy(v) for v in initial_states(g).values()]
        for c in seq:
            out, *states = model.step(torch.from_numpy(c["x"]), *states)
        single.append((out, states))

    def stack(parts, spec):
        if spec.name in ("attn_cache", "conv_cache"):  # [L*B*rows, ...]: layer-major, batch inside
            return torch.cat([torch.cat([p.chunk(L, 0)[i] for p in parts]) for i in range(L)])
        return torch.cat(parts, dim=spec.batch_axis)

    states = [stack([torch.from_numpy(initial_states(g)[s.name])] * 2, s) for s in g.states]
    with torch.no_grad():
        for c0, c1 in zip(*seqs):
            out, *states = model.step(torch.cat([torch.from_numpy(c0["x"]), torch.from_numpy(c1["x"])]), *states)
    for b, (ref_out, ref_states) in enumerate(single):
        assert torch.allclose(out[b:b + 1], ref_out, atol=FP32_TOLERANCE)
    for spec, got, *refs in zip(g.states, states, single[0][1], single[1][1]):
        assert torch.allclose(got, stack(refs, spec), atol=FP32_TOLERANCE), spec.name


def test_chunk_size_must_fit_subsampling():
    with pytest.raises(ValueError, match="multiple"):
        get_family("conformer").build(chunk_frames=30)
    with pytest.raises(ValueError, match="multiple"):
        get_family("lstm").build(chunk_frames=10)


def test_unknown_family_suggests_closest():
    with pytest.raises(KeyError, match="conformer"):
        get_family("conformr")


def test_state_check_catches_a_wrong_state_but_not_float_resolution():
    """States are compared scaled by their magnitude: fp32-level relative
    noise on a large LSTM cell state passes, a 1% state error fails."""
    from runtime_py.signature import GraphSpec, StateSpec, TensorSpec
    from runtime_py.stateloop import compare_rollouts

    graph = GraphSpec("encoder", inputs=(TensorSpec("x", (1, 4)),), outputs=(TensorSpec("y", (1, 4)),),
                      states=(StateSpec("c", (1, 4)),))

    def reference(feeds):  # a cell state that keeps growing, as a trained LSTM's does
        return {"y": np.tanh(feeds["c"]), "c_next": feeds["c"] + 40.0 + feeds["x"]}

    def noisy(rel):
        def run(feeds):
            out = reference(feeds)
            out["c_next"] = out["c_next"] * np.float32(1 + rel)
            return out
        return run

    chunks = [{"x": np.full((1, 4), 0.5, np.float32)} for _ in range(50)]  # |c| reaches ~2000
    fine = compare_rollouts(graph, reference, noisy(1e-7), chunks)
    assert fine["state_max_abs_diff"] > 1e-4 and within(fine, FP32_TOLERANCE)
    wrong = compare_rollouts(graph, reference, noisy(1e-2), chunks)
    assert not within(wrong, FP32_TOLERANCE)
