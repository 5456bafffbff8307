"""What the in-graph frontend costs and how close it is to kaldi.

    python -m targets.audio_in_bench --family conformer [--calls 200]
    python -m targets.audio_in_bench --model examples/zipformer_factory.py:build_small

Prints, over `calls` calls of the parity speech (the shipped samples):
- the frontend per call: runtime_py's numpy StreamingFrontend.accept(N
  samples) against the in-graph frontend alone (AudioInEncoder with the
  encoder left out, exported to ONNX, ONNX Runtime on 1 thread), timed in
  pairs (one of each per call, alternating which goes first) so both see the
  same machine state; the median of each and the median of the per-call
  ratios;
- the whole encoder call: features-in encoder (ORT) + numpy frontend against
  the audio-in encoder (ORT), paired the same way;
- the in-graph features' max |diff| from runtime_py's (float64) and from
  kaldi-native-fbank's (float32, the dev dependency), on all frames and on
  the frames' bins within 80 dB of their frame's loudest bin (the range
  test_frontend.py compares knf in).
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime_py.audio_in import AudioInPlan
from runtime_py.frontend import StreamingFrontend, compute_features

RESOLVABLE = np.log(1e8)  # 80 dB below a frame's loudest mel bin, as in tests/test_frontend.py


def frontend_module(plan: AudioInPlan) -> nn.Module:
    from edge.audio_in import AudioInFrontend

    return AudioInFrontend(plan).eval()


def graph_features(plan: AudioInPlan, audio: np.ndarray, run=None) -> np.ndarray:
    """Frames 0.. of `audio` (whole calls) as the in-graph frontend computes
    them, chunk by chunk with the states carried. run: a callable on the four
    inputs (default: the PyTorch module)."""
    if run is None:
        module = frontend_module(plan)

        def run(*a):
            with torch.no_grad():
                return [o.numpy() for o in module(*[torch.from_numpy(x) for x in a])]
    n, dim = plan.samples_per_call, plan.frontend.feature_dim
    states = [np.zeros((1, plan.history_samples), np.float32), np.zeros((1, plan.history_frames, dim), np.float32),
              np.zeros((1,), np.float32)]
    frames = []
    for k in range(len(audio) // n):
        out = run(audio[None, k * n:(k + 1) * n, None].astype(np.float32), *states)
        states = list(out[1:4])
        frames.append(out[0][0])  # the S new frames: kS - lag .. (k+1)S - 1 - lag
    return np.concatenate(frames)[plan.lag_frames:]


def knf_features(x: np.ndarray, spec) -> np.ndarray:
    """kaldi-native-fbank with the spec's options, fed x * sample_scale (knf
    applies no scaling of its own)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions() if spec.kind == "fbank" else knf.MfccOptions()
    fo = opts.frame_opts
    fo.dither, fo.snip_edges, fo.samp_freq = 0.0, spec.snip_edges, float(spec.sample_rate)
    fo.frame_length_ms = 1000.0 * spec.frame_length / spec.sample_rate
    fo.frame_shift_ms = 1000.0 * spec.frame_shift / spec.sample_rate
    fo.window_type, fo.preemph_coeff, fo.remove_dc_offset = spec.window, spec.preemphasis, spec.remove_dc_offset
    opts.mel_opts.num_bins = spec.num_mel_bins
    opts.mel_opts.low_freq, opts.mel_opts.high_freq = spec.low_freq, spec.high_freq
    if spec.kind == "mfcc":
        opts.num_ceps, opts.use_energy = spec.num_ceps, False
    online = knf.OnlineFbank(opts) if spec.kind == "fbank" else knf.OnlineMfcc(opts)
    online.accept_waveform(spec.sample_rate, (np.asarray(x) * spec.sample_scale).astype(np.float32).tolist())
    online.input_finished()
    return np.array([online.get_frame(i) for i in range(online.num_frames_ready)], dtype=np.float32)


def feature_diffs(plan: AudioInPlan, audio: np.ndarray) -> dict:
    """Max |diff| of the in-graph features from numpy's and knf's, over the
    frames every one of them has complete (whole calls, before the end)."""
    ours = graph_features(plan, audio)
    n = len(ours)
    ref = compute_features(audio, plan.frontend)[:n]
    out = {"frames": n, "vs_numpy": float(np.abs(ours - ref).max())}
    try:
        k = knf_features(audio, plan.frontend)[:n]
    except ImportError:
        return out
    near = ref >= ref.max(axis=1, keepdims=True) - RESOLVABLE
    out.update(vs_knf=float(np.abs(ours - k).max()), numpy_vs_knf=float(np.abs(ref - k).max()),
               vs_knf_within_80db=float(np.abs(ours - k)[near].max()),
               numpy_vs_knf_within_80db=float(np.abs(ref - k)[near].max()))
    return out


def _ort(module: nn.Module, args: tuple, names: list[str], work: Path):
    import onnxruntime as ort

    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as edge.export uses it
        torch.onnx.export(module, tuple(torch.from_numpy(a) for a in args), buf, input_names=names,
                          opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    return lambda *a: sess.run(None, dict(zip(names, a)))


def _paired(a, b, calls: int) -> tuple[float, float, float]:
    """Median ms of a() and b() and the median of b/a, timed in pairs."""
    ta, tb = [], []
    for i in range(calls):
        for which in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            which[0](i)
            which[1].append(time.perf_counter() - t0)
    ta, tb = np.array(ta), np.array(tb)
    return 1e3 * float(np.median(ta)), 1e3 * float(np.median(tb)), float(np.median(tb / ta))


def bench(model, calls: int = 200) -> dict:
    from edge.audio_in import audio_in
    from edge.export import example_inputs, export_graph
    from runtime_py.backends import open_runner

    from .golden import parity_audio

    wrapped = audio_in(model.eval())
    plan, sig, fsig = wrapped.plan, wrapped.signature(), model.signature()
    n = plan.samples_per_call
    audio = parity_audio(fsig, calls + 2)[: (calls + 1) * n].astype(np.float32)
    pcm = [audio[None, k * n:(k + 1) * n, None] for k in range(calls + 1)]
    result = {"samples_per_call": n, "calls": calls, **feature_diffs(plan, audio)}
    zeros = [np.zeros((1, plan.history_samples), np.float32),
             np.zeros((1, plan.history_frames, fsig.frontend.feature_dim), np.float32), np.ones((1,), np.float32)]
    with tempfile.TemporaryDirectory(prefix="audio-in-bench-") as tmp:
        fe_run = _ort(frontend_module(plan), (pcm[0], *zeros), ["audio", "s", "f", "c"], Path(tmp))
        numpy_fe = StreamingFrontend(fsig.frontend)
        numpy_fe.accept(audio[:n])
        result["frontend_ms"] = dict(zip(("numpy", "in_graph_ort", "ratio"), _paired(
            lambda i: numpy_fe.accept(pcm[1 + i % calls][0, :, 0]), lambda i: fe_run(pcm[1 + i % calls], *zeros),
            calls)))
        enc_f, enc_a = fsig.graph("encoder"), sig.graph("encoder")
        f_run = open_runner(export_graph(model, enc_f, Path(tmp) / "f.onnx", fsig), enc_f, "onnx", 1)
        a_run = open_runner(export_graph(wrapped, enc_a, Path(tmp) / "a.onnx", sig), enc_a, "onnx", 1)
        f_feeds, a_feeds = example_inputs(enc_f, fsig), example_inputs(enc_a, sig)
        a_feeds[enc_a.states[2].name] = np.ones((1,), np.float32)  # past the warmup: the encoder's states update

        def features_in(i):
            f_feeds[enc_f.inputs[0].name] = np.zeros(enc_f.inputs[0].shape, np.float32)
            f_feeds[enc_f.inputs[0].name][0, -plan.shift_frames:] = numpy_fe.accept(pcm[1 + i % calls][0, :, 0])[
                : plan.shift_frames]
            f_run(f_feeds)

        def in_graph(i):
            a_feeds[enc_a.inputs[0].name] = pcm[1 + i % calls]
            a_run(a_feeds)
        result["encoder_call_ms"] = dict(zip(("features_in_plus_numpy", "audio_in", "ratio"),
                                             _paired(features_in, in_graph, calls)))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.audio_in_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="conformer")
    p.add_argument("--model", help="FILE.py:factory (a declared model) instead of --family")
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.model:
        from edge.factory import load_model
        model = load_model(args.model)
    else:
        from edge.checkpoint import load_or_init
        model = load_or_init(args.family)[0]
    r = bench(model, args.calls)
    fe, enc = r["frontend_ms"], r["encoder_call_ms"]
    print(f"{r['calls']} calls of {r['samples_per_call']} samples (ONNX Runtime CPU, 1 thread)")
    print(f"frontend per call: numpy {fe['numpy']:.3f} ms, in-graph {fe['in_graph_ort']:.3f} ms, "
          f"paired ratio in-graph/numpy {fe['ratio']:.2f}")
    print(f"encoder call: features-in + numpy {enc['features_in_plus_numpy']:.3f} ms, audio-in "
          f"{enc['audio_in']:.3f} ms, paired ratio {enc['ratio']:.2f}")
    print(f"features over {r['frames']} frames: in-graph vs numpy max|diff| {r['vs_numpy']:.2e}")
    if "vs_knf" in r:
        print(f"  vs kaldi-native-fbank: in-graph {r['vs_knf']:.2e} (numpy {r['numpy_vs_knf']:.2e}); bins within "
              f"80 dB of the frame's loudest: in-graph {r['vs_knf_within_80db']:.2e} "
              f"(numpy {r['numpy_vs_knf_within_80db']:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
