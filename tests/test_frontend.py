"""runtime_py.frontend against kaldi-native-fbank, and streaming == offline."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from runtime_py.frontend import StreamingFrontend, compute_features, num_frames
from runtime_py.signature import FrontendSpec

knf = pytest.importorskip("kaldi_native_fbank")
from targets.audio_in_bench import knf_features  # noqa: E402  (kaldi-native-fbank with a spec's options)

SR = 16000
# knf computes in float32, we in float64. On broadband noise every mel bin is
# far above float32 round-off and the measured max |diff| of log-mel is
# ~1.5e-4 (fbank) and ~4e-4 (mfcc: the DCT sums 80 such errors, liftered by
# up to ~12). 1e-3 / 2e-3 leave headroom yet catch any real mistake (a wrong
# filter edge or window moves features by >1e-2).
FBANK_TOL = 1e-3
MFCC_TOL = 2e-3
# A pure sweep has mel bins 100+ dB below the frame's peak, where knf's float32
# FFT round-off dominates (we checked: a float32 copy of our pipeline moves
# those bins by as much). Compare only bins within 80 dB (ln 1e8) of the frame peak.
SWEEP_RANGE = np.log(1e8)


def _noise(seconds=3.0, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * SR))


def _sweep(seconds=3.0):
    t = np.arange(int(seconds * SR)) / SR
    return 0.5 * np.sin(2 * np.pi * (100 * t + (7000 - 100) / (2 * seconds) * t ** 2))


@pytest.mark.parametrize("snip", [True, False])
@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
@pytest.mark.parametrize("window", ["povey", "hamming", "hanning"])
def test_matches_knf_on_noise(snip, kind, window):
    spec = FrontendSpec(kind=kind, snip_edges=snip, window=window)
    x = _noise()
    ours, ref = compute_features(x, spec), knf_features(x, spec)
    assert ours.shape == ref.shape == (num_frames(len(x), spec), spec.feature_dim)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < (FBANK_TOL if kind == "fbank" else MFCC_TOL)


@pytest.mark.parametrize("snip", [True, False])
@pytest.mark.parametrize("window", ["povey", "hamming", "hanning"])
def test_fbank_matches_knf_on_sweep(snip, window):
    spec = FrontendSpec(snip_edges=snip, window=window)
    x = _sweep()
    ours, ref = compute_features(x, spec), knf_features(x, spec)
    assert ours.shape == ref.shape
    resolvable = ours >= ours.max(axis=1, keepdims=True) - SWEEP_RANGE
    # a pure tone is narrow-band: with povey/hann windows ~16 % of the bins are
    # within 80 dB of the peak (hamming: ~100 %); still thousands of values
    assert resolvable.mean() > 0.1
    assert np.abs(ours - ref)[resolvable].max() < 2 * FBANK_TOL


def test_other_shapes_match_knf():
    # 8 kHz, 23 bins, explicit high_freq, no DC removal / preemphasis
    spec = FrontendSpec(sample_rate=8000, num_mel_bins=23, frame_length=200, frame_shift=80,
                        high_freq=3800.0, low_freq=64.0, remove_dc_offset=False, preemphasis=0.0)
    x = _noise(2.0)[: 2 * 8000]
    assert np.abs(compute_features(x, spec) - knf_features(x, spec)).max() < FBANK_TOL


@pytest.mark.parametrize("snip", [True, False])
def test_frame_counts_while_streaming_match_knf(snip):
    """Frames ready before input_finished() are those with a complete window, as in knf."""
    spec = FrontendSpec(snip_edges=snip)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = snip
    opts.mel_opts.num_bins = 80
    opts.mel_opts.high_freq = -400
    online = knf.OnlineFbank(opts)
    ours = StreamingFrontend(spec)
    x = _noise(1.0)
    for a, b in [(0, 1), (1, 100), (100, 399), (399, 400), (400, 401), (401, 559), (559, 560), (560, 4321),
                 (4321, len(x))]:
        online.accept_waveform(SR, (x[a:b] * 32768).tolist())
        ours.accept(x[a:b])
        assert ours.num_frames_emitted == online.num_frames_ready
    online.input_finished()
    ours.finish()
    assert ours.num_frames_emitted == online.num_frames_ready


def test_sample_scale_is_a_log_offset():
    spec1 = FrontendSpec()
    spec2 = FrontendSpec(sample_scale=1.0)
    x = _noise(0.5)
    diff = compute_features(x, spec1) - compute_features(x, spec2)
    # power scales by 32768^2; 1e-4 allows float32 rounding of values ~20
    assert np.allclose(diff, 2 * np.log(32768.0), atol=1e-4)


def _stream(spec, x, cuts):
    fe = StreamingFrontend(spec)
    parts, pos = [], 0
    for c in list(cuts) + [len(x)]:
        parts.append(fe.accept(x[pos:c]))
        pos = c
    before = np.concatenate(parts)
    after = fe.finish()
    return before, after, fe


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 5000), seed=st.integers(0, 2 ** 16), snip=st.booleans(),
       kind=st.sampled_from(["fbank", "mfcc"]), data=st.data())
def test_streaming_equals_offline(n, seed, snip, kind, data):
    spec = FrontendSpec(kind=kind, snip_edges=snip)
    x = np.random.default_rng(seed).uniform(-1, 1, n)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=15)))
    before, after, fe = _stream(spec, x, cuts)
    offline = compute_features(x, spec)
    streamed = np.concatenate([before, after])
    # bit-identical: both paths run the same float64 maths row by row
    np.testing.assert_array_equal(streamed, offline)
    assert fe.num_frames_emitted == len(offline)
    if snip:
        assert len(after) == 0  # nothing waits for the end with snip_edges


def test_one_sample_pieces_and_empty_pieces():
    spec = FrontendSpec()
    x = _noise(0.3)
    fe = StreamingFrontend(spec)
    parts = []
    for i in range(len(x)):
        parts.append(fe.accept(x[i:i + 1]))
        parts.append(fe.accept(np.zeros(0)))
    parts.append(fe.finish())
    np.testing.assert_array_equal(np.concatenate(parts), compute_features(x, spec))


def test_finish_emits_the_reflected_tail_and_reset_restarts():
    spec = FrontendSpec(snip_edges=False)
    x = _noise(1.0)
    fe = StreamingFrontend(spec)
    first = fe.accept(x)
    tail = fe.finish()
    assert len(first) + len(tail) == (len(x) + 80) // 160 == 100
    assert len(tail) == 1  # frame 99 covers 15720..16119: 120 samples past the end
    with pytest.raises(ValueError, match="reset"):
        fe.accept(x)
    fe.reset()
    again = np.concatenate([fe.accept(x), fe.finish()])
    np.testing.assert_array_equal(again, np.concatenate([first, tail]))


def test_short_inputs():
    for snip in (True, False):
        spec = FrontendSpec(snip_edges=snip)
        for n in (0, 1, 79, 80, 399, 400):
            x = _noise(0.1)[:n]
            assert compute_features(x, spec).shape == (num_frames(n, spec), 80)
    # 80 samples with snip_edges=False: one frame made of mirrored samples, like knf
    spec = FrontendSpec(snip_edges=False)
    x = _noise(0.1)[:80]
    assert np.abs(compute_features(x, spec) - knf_features(x, spec)).max() < FBANK_TOL


def test_spec_as_dict_and_bad_specs():
    d = {"kind": "mfcc", "num_ceps": 20}
    assert compute_features(_noise(0.1), d).shape[1] == 20
    with pytest.raises(ValueError, match="dither"):
        StreamingFrontend(FrontendSpec(dither=1.0))
    with pytest.raises(ValueError, match="window"):
        StreamingFrontend(FrontendSpec(window="blackmann"))
    with pytest.raises(ValueError, match="high_freq"):
        StreamingFrontend(FrontendSpec(high_freq=9000.0))
    with pytest.raises(ValueError, match="FrontendSpec"):
        StreamingFrontend({"kind": "fbank", "bogus": 1})
    with pytest.raises(ValueError, match="to_mono_float"):
        compute_features(np.zeros(400, dtype=np.int16), FrontendSpec())
    with pytest.raises(ValueError, match="1-D"):
        compute_features(np.zeros((400, 2)), FrontendSpec())


@pytest.mark.parametrize("snip", [True, False])
def test_a_long_block_goes_through_in_bounded_pieces(snip):
    """A whole file fed at once (what edge-bench and transcribe_file do) goes
    through in pieces of MAX_ACCEPT_FRAMES frames' samples, each piece's spectra
    MAX_BLOCK_FRAMES at a time: that bounds the float64 temporaries (~10 kB a
    frame) whatever the file's length; the frames are still the offline ones."""
    from runtime_py.frontend import MAX_ACCEPT_FRAMES, MAX_BLOCK_FRAMES

    spec = FrontendSpec(snip_edges=snip)
    x = _noise(25.0, seed=3).astype(np.float32)  # 2500 frames: several pieces
    fe = StreamingFrontend(spec)
    pieces, blocks = [], []
    accept, power = fe._accept, fe._core.power
    fe._accept = lambda a: (pieces.append(len(a)), accept(a))[1]
    fe._core.power = lambda frames: (blocks.append(len(frames)), power(frames))[1]
    streamed = np.concatenate([fe.accept(x), fe.finish()])
    np.testing.assert_array_equal(streamed, compute_features(x, spec))
    step = MAX_ACCEPT_FRAMES * spec.frame_shift
    assert len(pieces) == -(-len(x) // step) > 1 and max(pieces) == step, pieces
    assert max(blocks) == MAX_BLOCK_FRAMES and sum(blocks) == len(streamed), blocks
