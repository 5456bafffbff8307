"""The build's proofs: reset, streaming == offline, and how long a model can stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edge
from edge.export import export_onnx, torch_runner
from runtime_py.backends import open_runner
from targets import build as build_mod
from targets.proofs import STREAM_DIFF_BAR, affordable_seconds, reset_check, stream_check

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
TABLE = 40  # positions: the model below runs out after 40 chunks of 4 frames... at 160 frames


def _positional(table: int = TABLE, clamp: bool = False):
    """A model indexing a positional table by an absolute offset that is never
    clamped: the kind that works in a demo and crashes in the field. clamp:
    the user declares the offset saturating at the table's last chunk
    (counters=), so the exported graph never raises; the model's own step,
    unclamped, still runs off the table's end."""
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(table * 4, 8, generator=g)
    proj = torch.nn.Linear(80, 8)

    def step(x, offset):
        idx = offset + torch.arange(4)
        return proj(x) + pos[idx][None], offset + 4
    decl = edge.Step(step, states=[torch.zeros((), dtype=torch.int64)], names=["offset"], batch_axis=None,
                     args=(edge.FEATURES, edge.State("offset")), returns=("y", edge.State("offset")),
                     counters={"offset": (table - 1) * 4} if clamp else {})
    return edge.declare("positional", encoder=decl, head="none", chunk=4, trained=False)


def _stream(model, tmp_path, seconds, **kw):
    """The stream proof as edge-build runs it: the exported graph on ONNX
    Runtime against the model's own step with its counters unclamped."""
    sig = model.signature()
    enc = sig.graph("encoder")
    run = open_runner(export_onnx(model, tmp_path)["encoder"], enc, "onnx", 1)
    from targets.proofs import period_chunks, stream_reference_of
    reference, name = stream_reference_of(model, enc)
    return stream_check(sig, run, period_chunks(sig), seconds, reference=reference, reference_name=name, **kw)


def _speech(sig, n=60):
    from targets.golden import parity_stream
    return parity_stream(sig, n)


def test_stream_check_finds_where_a_position_table_ends(tmp_path):
    rec = _stream(_positional(), tmp_path, seconds=60)
    assert rec["passed"] is False and rec["failed_at_chunk"] == TABLE
    assert rec["safe_seconds"] == pytest.approx(TABLE * 0.04)
    assert "the graph raised" in rec["why"]


def test_a_clamped_counter_does_not_hide_where_the_table_ends(tmp_path):
    """The graph saturates the offset, so it runs for ever; the user's step
    past the same point indexes beyond its table and raises: the safe
    duration ends there, not at the hour the graph alone would stream."""
    model = _positional(clamp=True)
    rec = _stream(model, tmp_path, seconds=60)
    assert rec["passed"] is False and rec["failed_at_chunk"] == TABLE
    assert rec["safe_seconds"] == pytest.approx(TABLE * 0.04)
    assert "the reference (pytorch, counters unclamped) raised IndexError" in rec["why"], rec["why"]
    # the graph alone streams on past the table (what the old self-comparison saw)
    sig = model.signature()
    alone = stream_check(sig, open_runner(tmp_path / "encoder.onnx", sig.graph("encoder"), "onnx", 1),
                         _speech(sig), seconds=4)
    assert alone["passed"] and alone["chunks"] == 100 > TABLE and alone["reference"] is None
    assert "no independent reference" in alone["note"]


def test_a_clamp_whose_positions_differ_from_the_model_ends_the_safe_duration(tmp_path):
    """byom_models.TimeMajorChunkModel clamps its own positions at the table's
    end (64 frames); the declared counter saturates at 56. From chunk 8 (64
    frames) the graph keeps computing positions 56..63 while the model
    computes 63 for every frame: outputs differ by ~8e-2, 80x the bar."""
    from byom_models import CHUNK, POSITIONS, declare_time_major
    rec = _stream(declare_time_major(), tmp_path, seconds=30)
    assert rec["passed"] is False and rec["failed_at_chunk"] == POSITIONS // CHUNK
    assert rec["safe_seconds"] == pytest.approx(round(POSITIONS * 0.01, 1))
    assert "differ from the reference" in rec["why"] and rec["max_scaled_diff"] > 10 * STREAM_DIFF_BAR


def test_a_vad_with_long_memory_is_not_cut_short(tmp_path):
    """A recurrent VAD whose forget gate is open remembers audio a period
    back: the same chunk of the repeated input gives outputs 0.2 apart one
    period later (the old self-comparison's 5e-2 bar called that drift and
    cut it at 24 s). Against its own reference it is equal to fp32 over the
    whole stretch, so it streams it all."""
    from byom_models import declare_vad
    from runtime_py.stateloop import StateLoop
    from targets.proofs import period_chunks
    model = declare_vad(forget_bias=5.0)
    sig = model.signature()
    enc = sig.graph("encoder")
    chunks = period_chunks(sig)
    loop = StateLoop(enc, torch_runner(model, enc))
    outs = [float(loop.step({"x": chunks[i % len(chunks)]})["speech_prob"].ravel()[0])
            for i in range(3 * len(chunks))]
    memory = max(abs(outs[i] - outs[i - len(chunks)]) / abs(outs[i - len(chunks)])
                 for i in range(2 * len(chunks), 3 * len(chunks)))
    assert memory > 5e-2  # it does remember: the stream proof must not call this a failure
    rec = _stream(model, tmp_path, seconds=40)
    assert rec["passed"] and rec["safe_seconds"] is None and rec["seconds_checked"] == pytest.approx(40, abs=0.1)
    assert rec["max_scaled_diff"] <= 1e-5  # fp32 both sides, same LSTM: ~6e-8 measured


def test_a_slow_reference_is_checked_for_the_stretch_its_budget_pays_for(tmp_path):
    assert affordable_seconds(3600, 0.32, 0.01, 300) == 3600  # 0.01 s a chunk: the hour fits
    assert affordable_seconds(3600, 0.32, 0.2, 300) == 480  # 1500 chunks = 480 s: whole minutes
    assert affordable_seconds(3600, 0.32, 0.5, 300) == 180  # 192 s -> 180
    assert affordable_seconds(3600, 0.32, 10.0, 300) == 0.32  # 9.6 s -> not even 10 s: one chunk
    from byom_models import declare_vad
    from targets.proofs import stream_text
    # half a second of compute pays for far less than an hour (a few ms a chunk on 2 cores: 10-60 s of audio;
    # the bound leaves room for a faster machine)
    rec = _stream(declare_vad(), tmp_path, seconds=3600, budget_s=0.5)
    assert rec["passed"] and rec["limited_by_budget"] and rec["seconds_checked"] < 600
    assert rec["seconds_requested"] == 3600 and rec["chunks"] >= 20  # the timed probe is checked too
    text = stream_text(rec)
    assert "not beyond" in text and "of the 3600 s asked" in text, text


def test_a_reference_that_slows_down_still_stays_within_the_budget(tmp_path):
    """The first chunks are fast (the stretch is chosen from them), then the
    reference slows to 50 ms a chunk (a machine other jobs now share): the
    proof stops when its budget is spent instead of running on for minutes."""
    import time as _time

    from byom_models import declare_vad
    from targets.proofs import period_chunks, stream_reference_of
    model = declare_vad()
    sig = model.signature()
    enc = sig.graph("encoder")
    run = open_runner(export_onnx(model, tmp_path)["encoder"], enc, "onnx", 1)
    fast, _ = stream_reference_of(model, enc)
    calls = []

    def slowing(feeds):
        calls.append(1)
        if len(calls) > 20:
            _time.sleep(0.05)
        return fast(feeds)
    t0 = _time.perf_counter()
    rec = stream_check(sig, run, period_chunks(sig), 3600, reference=slowing, budget_s=1.0)
    assert rec["passed"] and rec["limited_by_budget"] and rec["chunks"] < 100
    assert _time.perf_counter() - t0 < 3.0  # 1 s budget, one chunk over at most, plus the export-free setup


def test_reference_crash_during_parity_is_one_line_with_the_chunk(tmp_path, capsys, monkeypatch):
    import importlib.util
    f = tmp_path / "pos_factory.py"
    f.write_text("import sys\nsys.path.insert(0, %r)\nfrom test_proofs import _positional\n\n"
                 "def build():\n    return _positional()\n" % str(__import__('pathlib').Path(__file__).parent))
    rc = build_mod.main(["--target", "rpi", "--model", f"{f}:build", "--quant", "ort:fp32", "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert f"raised at chunk {TABLE}" in err[0] and "IndexError" in err[0], err[0]
    assert not (tmp_path / "b").exists()
    assert importlib.util.find_spec("targets.proofs") is not None


def test_a_well_behaved_model_streams_the_whole_duration(tmp_path):
    from tests.test_families import build as family_model
    model = family_model("conformer")
    sig = model.signature()
    path = export_onnx(model, tmp_path)["encoder"]
    run = open_runner(path, sig.graph("encoder"), "onnx", 1)
    from targets.proofs import period_chunks, stream_reference_of
    reference, name = stream_reference_of(model, sig.graph("encoder"))
    rec = stream_check(sig, run, period_chunks(sig), seconds=120, reference=reference, reference_name=name)
    # fp32 ORT against PyTorch: only summation order differs
    assert rec["passed"] and rec["safe_seconds"] is None and rec["max_scaled_diff"] < 1e-5
    assert reset_check(sig, run, _speech(sig, 30))["passed"]


def test_the_client_cuts_utterances_before_the_safe_duration():
    from runtime_py.recognizer import StreamingRecognizer
    from tests.bundle_fixtures import cached_bundle
    from runtime_py.session import ModelSession
    path, _ = cached_bundle("conformer")
    session = ModelSession(path)
    session.bundle.manifest.setdefault("proofs", {})["stream"] = {"safe_seconds": 10.0}
    rec = StreamingRecognizer(session, vad=False)
    assert rec.max_utterance_s == pytest.approx(9.0)
    assert np.isfinite(rec.max_utterance_s)


def test_check_model_is_callable_without_a_bundle():
    from byom_models import declare_time_major
    from targets.proofs import check_model
    report = check_model(declare_time_major(), chunks=200, seconds=60)
    assert report["passed"] and report["parity"]["encoder"]["chunks"] == 200
    assert report["parity"]["encoder"]["one_step_max_abs_diff"] <= 1e-4
    assert report["reset"]["passed"] and report["offline"]["checked"] is False
    # its counter saturates before its own positions end (see the clamp test above)
    assert report["stream"]["safe_seconds"] == pytest.approx(0.6)


def _running_sum(offline_scale: float = 1.0):
    """Output = running sum of the features: streamed with a carried total, or
    offline over the whole utterance (scaled, to make a wrong offline)."""
    def step(x, total):
        y = torch.cumsum(x, dim=1) + total[:, None, :]
        return y, y[:, -1, :]
    decl = edge.Step(step, states=lambda b: torch.zeros(b, 80), names=["total"], returns=("y", edge.State("total")))
    offline = lambda feats: offline_scale * np.cumsum(feats.astype(np.float64), axis=0)[None].astype(np.float32)
    return edge.declare("runsum", encoder=decl, head="none", chunk=4, offline=offline)


def test_streaming_equals_the_declared_offline_function():
    from targets.proofs import check_model
    good = check_model(_running_sum(), chunks=50, seconds=10)["offline"]
    assert good["checked"] and good["passed"] and good["frames"] == 200
    bad = check_model(_running_sum(1.001), chunks=50, seconds=10)["offline"]
    assert bad["checked"] and not bad["passed"]


def test_without_a_budget_the_reference_runs_a_fixed_stretch(tmp_path):
    """No --proof-budget: the reference is compared over REFERENCE_SECONDS of the
    hour asked, whatever the machine's speed (bundles stay byte-identical), and
    the record and text say that not more was checked."""
    from byom_models import declare_vad
    from targets.proofs import REFERENCE_SECONDS, stream_text
    rec = _stream(declare_vad(), tmp_path, seconds=3600)
    assert rec["passed"] and rec["limited_by_default_stretch"] and not rec["limited_by_budget"]
    assert abs(rec["seconds_checked"] - REFERENCE_SECONDS) < 0.1 and rec["seconds_requested"] == 3600
    assert "of the 3600 s asked" in stream_text(rec) and "--proof-budget" in stream_text(rec)


def test_wenet_style_offset_saturation_cannot_hide_the_table_end(tmp_path):
    """WeNet's shape: a rank-0 offset that slices a 5000-entry position table,
    declared with max = the table's end so the graph saturates. The graph alone
    would stream for the hour; the step with the offset counting on raises
    where the slice runs off the table (200 s at 40 ms a position), and that is
    the safe duration. (1250 chunks in PyTorch and ONNX Runtime: 6 s here, 90 s under heavy load.)"""
    from byom_wenet import declare_wenet_style
    from targets.proofs import stream_text
    rec = _stream(declare_wenet_style(), tmp_path, seconds=3600)
    assert not rec["passed"] and "reference" in rec["why"] and "raised" in rec["why"], rec
    assert 190 <= rec["safe_seconds"] <= 200.5, rec
    assert stream_text(rec).startswith("safe for 200 s")
