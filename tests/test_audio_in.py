"""Audio-in models (edge/audio_in.py): the frontend inside the encoder graph.

Bars, and why:
- Features (in-graph float32 vs runtime_py's float64 frontend) over speech:
  FEATURE_BAR 2e-3 on log-mel. The in-graph DFT sums in float32, so a mel
  bin far below its frame's loudest bin (quiet high bands, pauses) has a
  relative error of ~1e-4 instead of 1e-7, i.e. ~1e-4 in its log; measured
  max 4.3e-4 over 200 calls of the shipped samples (python -m
  targets.audio_in_bench). kaldi-native-fbank (float32 too, its own FFT) is
  held to the same bar: the in-graph features are as far from it as our
  float64 frontend is (4.9e-4 on the same frames).
- Encoder outputs of the shipped conformer, audio-in vs the features-in
  model fed runtime_py's features: targets.audio_in_parity.FP32_BAR (the
  usual fp32 1e-4: the log-mel differences average down through the model,
  measured 2.5e-5 on ORT), and the same tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.audio_in import AudioInModel, audio_in, frame_indices
from runtime_py.audio_in import AudioInPlan
from runtime_py.frontend import compute_features
from runtime_py.signature import FrontendSpec
from targets.audio_in_bench import graph_features, knf_features

FEATURE_BAR = 2e-3


@pytest.fixture(scope="module")
def speech():
    from targets.golden import sample_utterances

    utts = [a for _, a in sample_utterances(16000)]
    assert utts, "the shipped sample utterances are missing"
    x = np.concatenate(utts[:2]).astype(np.float32)
    return x[int(np.argmax(np.abs(x) > 0.05)):]  # from the first loud sample: the stream's start is not silence


def _whole_calls(plan: AudioInPlan, audio: np.ndarray) -> np.ndarray:
    return audio[: len(audio) // plan.samples_per_call * plan.samples_per_call]


def test_plan_of_the_shipped_conformer_layout():
    plan = AudioInPlan.for_features(FrontendSpec(), chunk_frames=32, shift_frames=32)
    # frame f spans samples 160 f - 120 .. 160 f + 279: a call of 5120 completes frames up to 32k + 30
    assert (plan.samples_per_call, plan.lag_frames, plan.history_samples) == (5120, 1, 280)
    assert (plan.warmup_calls, plan.history_frames) == (1, 31)
    zip_plan = AudioInPlan.for_features(FrontendSpec(sample_scale=1.0), chunk_frames=45, shift_frames=32)
    assert (zip_plan.warmup_calls, zip_plan.history_frames) == (1, 31)  # 13 frames of right context still fit
    snip = AudioInPlan.for_features(FrontendSpec(snip_edges=True), chunk_frames=32, shift_frames=32)
    assert (snip.lag_frames, snip.history_samples) == (2, 320)


@pytest.mark.parametrize("spec", [FrontendSpec(), FrontendSpec(sample_scale=1.0), FrontendSpec(snip_edges=True),
                                  FrontendSpec(kind="mfcc")], ids=["fbank", "unscaled", "snip-edges", "mfcc"])
def test_streamed_graph_features_equal_the_whole_signal_features(spec, speech):
    """Chunked in-graph features (states carried, mirrored first frames) equal
    runtime_py's features of the whole signal, first frames included."""
    plan = AudioInPlan.for_features(spec, chunk_frames=16, shift_frames=16)
    audio = _whole_calls(plan, speech)
    ours = graph_features(plan, audio)
    ref = compute_features(audio, spec)[: len(ours)]
    calls = len(audio) // plan.samples_per_call
    assert len(ours) == calls * plan.shift_frames - plan.lag_frames and calls > 10
    bar = FEATURE_BAR * (10 if spec.kind == "mfcc" else 1)  # the DCT sums 80 such errors, liftered up to ~12x
    assert np.abs(ours - ref).max() < bar
    assert np.abs(ours[:3] - ref[:3]).max() < bar  # the stream's start (kaldi's mirror)


def test_the_first_call_mirror_is_what_makes_frame_0_right(speech):
    """The check can fail: without kaldi's mirror on the first call, frame 0 is far off."""
    plan = AudioInPlan.for_features(FrontendSpec(), 32, 32)
    mirrored, plain = frame_indices(plan, first_call=True), frame_indices(plan, first_call=False)
    assert (mirrored != plain).any(axis=1).tolist() == [False] + [True] + [False] * 30  # frame 0 only
    audio = _whole_calls(plan, speech)
    ref = compute_features(audio, plan.frontend)
    buf = np.concatenate([np.zeros(plan.history_samples), audio[: plan.samples_per_call]])
    from edge.graph_fbank import GraphFbank

    fb = GraphFbank(plan.frontend)
    with torch.no_grad():
        unmirrored = fb(torch.from_numpy(buf[plain[1]][None].astype(np.float32)), torch.ones(1)).numpy()[0]
    assert np.abs(unmirrored - ref[0]).max() > 100 * FEATURE_BAR


def test_graph_features_match_kaldi_native_fbank(speech):
    pytest.importorskip("kaldi_native_fbank")
    plan = AudioInPlan.for_features(FrontendSpec(), 32, 32)
    audio = _whole_calls(plan, speech)
    ours = graph_features(plan, audio)
    knf = knf_features(audio, plan.frontend)[: len(ours)]
    assert len(ours) > 300
    assert np.abs(ours - knf).max() < FEATURE_BAR


@pytest.fixture(scope="module")
def conformer():
    from edge.checkpoint import load_or_init

    return load_or_init("conformer")[0]


def test_audio_in_signature_says_the_graph_takes_audio(conformer):
    m = audio_in(conformer)
    sig = m.signature()
    enc = sig.graph("encoder")
    assert sig.frontend.kind == "raw" and sig.frontend.sample_scale == 1.0
    assert sig.chunk_frames == sig.shift_frames == 5120 and enc.inputs[0].shape == (1, 5120, 1)
    rec = sig.extra["audio_in"]
    assert rec["frontend"]["kind"] == "fbank" and rec["frontend"]["sample_scale"] == 32768.0
    assert AudioInPlan.of(type(sig).from_json(sig.to_json())) == m.plan  # survives the manifest
    names = [s.name for s in enc.states]
    assert names[:3] == ["audio_samples", "audio_frames", "audio_calls"]
    assert all(s.initial == 0 and s.reset == "utterance" for s in enc.states[:3])
    assert names[3:] == [s.name for s in conformer.signature().graph("encoder").states]
    with pytest.raises(ValueError, match="already takes audio"):
        AudioInModel(m)


def test_audio_in_conformer_equals_features_in_reference(conformer):
    """PyTorch audio-in over PCM calls == the features-in model over
    runtime_py's features of the same audio (after the warmup call), and the
    same tokens; a Stream fed a WAV gives the shipped transcript."""
    from edge.export import torch_runner
    from targets import audio_in_parity as aip

    m = audio_in(conformer)
    sig, fsig = m.signature(), conformer.signature()
    pcm, chunks = aip.parity_inputs(sig, fsig, 40)
    ref = aip.features_in_reference(fsig, {g.name: torch_runner(conformer, g) for g in fsig.graphs}, chunks)
    rec = aip.check(sig, {g.name: torch_runner(m, g) for g in sig.graphs}, "fp32", pcm, ref, trained=True)
    assert rec["passed"] and rec["reference_tokens"] > 10 and rec["decoded_agreement"] == 1.0, rec
    assert rec["max_abs_diff"] <= aip.FP32_BAR
    # the check can fail: a 1 % gain error (log-mel + 0.02) is caught
    run = torch_runner(m, sig.graph("encoder"))
    louder = {"encoder": lambda feeds: run({**feeds, "audio": feeds["audio"] * np.float32(1.01)})}
    bad = aip.check(sig, louder, "fp32", pcm, ref, trained=True)
    assert not bad["passed"] and bad["max_abs_diff"] > 10 * aip.FP32_BAR, bad


def test_stream_transcribes_a_wav_through_the_audio_in_graph(conformer):
    """runtime_py's Stream fed a WAV in blocks of any size cuts whole calls,
    skips the warmup call and gives the shipped transcript."""
    from edge.assets import sample_wavs
    from edge.checkpoint import load_or_init
    from edge.export import torch_runner
    from runtime_py.audio import read_wav
    from runtime_py.stream import Model

    m = audio_in(conformer)
    sig = m.signature()
    audio, rate = read_wav(next(p for p in sample_wavs() if p.stem == "one_two_three"))
    model = Model(sig, {g.name: torch_runner(m, g) for g in sig.graphs}, tokens=load_or_init("conformer")[1]["tokens"])
    stream = model.create_stream()
    for block in np.array_split(audio, 7):
        stream.accept_waveform(rate, block)
    stream.input_finished()
    while model.decode_streams([stream]):
        pass
    assert stream.text == "one two three" and stream.warmup_calls == 1
    assert stream.buffered_frames < sig.chunk_frames  # every whole call ran


def test_coreml_fp16_keeps_the_frontend_in_float32():
    """The fp16 selector of targets/coreml.py, run by coremltools on the
    in-graph frontend: every op of the frontend stays float32 (powers reach
    ~1e16, fp16 stops at 65504), the call counter's arithmetic may go fp16."""
    ct = pytest.importorskip("coremltools")
    from edge.audio_in import AudioInFrontend
    from targets.coreml import _fp16_op

    plan = AudioInPlan.for_features(FrontendSpec(), 32, 32)
    args = (torch.zeros(1, plan.samples_per_call, 1), torch.zeros(1, plan.history_samples),
            torch.zeros(1, plan.history_frames, 80), torch.zeros(1))
    traced = torch.jit.trace(AudioInFrontend(plan).eval(), args, check_trace=False)
    chosen = {}

    def select(op):
        chosen[(op.op_type, op.name)] = _fp16_op(op)
        return chosen[(op.op_type, op.name)]
    ct.convert(traced, inputs=[ct.TensorType(name=n, shape=a.shape) for n, a in zip("abcd", args)],
               convert_to="mlprogram", compute_precision=ct.transform.FP16ComputePrecision(op_selector=select),
               skip_model_load=True)
    kept = {k for k, fp16 in chosen.items() if not fp16 and k[0] != "const"}
    assert {"matmul", "log", "clip", "gather", "mul"} <= {t for t, _ in kept}
    assert not any(fp16 for (t, name), fp16 in chosen.items() if name.startswith("fbank_"))
    assert any(fp16 for (t, _), fp16 in chosen.items() if t == "add")  # the selector does select: calls + 1


def test_audio_in_refusals_are_one_error_line(tmp_path, capsys):
    from edge.errors import UserError
    from targets.build.assemble import audio_in_model
    from targets.build.cli import main
    from tests.byom_models import declare_vad

    with pytest.raises(UserError, match=r"^--audio-in: audio-in needs an fbank or mfcc frontend.*'raw'"):
        audio_in_model(declare_vad())  # a raw-sample model already takes audio
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read")
    assert main(["--target", "rpi", "--audio-in", "--onnx", str(onnx), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --audio-in builds the frontend into a PyTorch model") and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_model_card_of_an_audio_in_bundle_says_feed_pcm(conformer):
    """targets/audio_in_card.py rewrites the frontend, streaming and features
    sections of the generic card; a features-in card is left as it was."""
    from targets.audio_in_card import adapt

    card = "\n".join(["# Card", "", "## Audio frontend", "", "raw with 1 bins", "", "## Streaming", "",
                      "Feed 5120 feature frames per encoder call", "", "## Run it", "", "### Features on the device",
                      "", "The encoder takes fbank frames, not audio.", "", "```python", "# kaldi-native-fbank",
                      "import kaldi_native_fbank as knf", "```", "", "### required_operators.config", "", "ops", ""])
    assert adapt(card, conformer.signature()) == card
    new = adapt(card, audio_in(conformer).signature())
    assert "knf" not in new and "fbank frames" not in new and "raw with 1 bins" not in new
    assert "Feed 5120 samples in [-1, 1] per encoder call" in new and "first 1 call(s)" in new
    assert "kaldi fbank with 80 bins" in new and new.endswith("### required_operators.config\n\nops\n")


def test_audio_in_state_bar_relaxes_only_the_states_of_fp32():
    from targets.audio_in_parity import STATE_BAR, judge_states

    def rec(out, state):
        return {"tolerance": 1e-4, "max_abs_diff": out, "state_max_scaled_diff": state, "passed": False}
    assert judge_states(rec(5e-6, 5e-4), "fp32")["passed"]
    assert not judge_states(rec(5e-6, 2 * STATE_BAR), "fp32")["passed"]
    assert not judge_states(rec(2e-4, 5e-4), "fp32")["passed"]  # the outputs keep their bar
    assert not judge_states(rec(5e-6, 5e-4), "fp16")["passed"]
