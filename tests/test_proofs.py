"""The build's proofs: reset, streaming == offline, and how long a model can stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edge
from edge.export import export_onnx
from runtime_py.backends import open_runner
from targets import build as build_mod
from targets.proofs import reset_check, stream_check

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
TABLE = 40  # positions: the model below runs out after 40 chunks of 4 frames... at 160 frames


def _positional(table: int = TABLE):
    """A model indexing a positional table by an absolute offset that is never
    clamped: the kind that works in a demo and crashes in the field."""
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(table * 4, 8, generator=g)
    proj = torch.nn.Linear(80, 8)

    def step(x, offset):
        idx = offset + torch.arange(4)
        return proj(x) + pos[idx][None], offset + 4
    decl = edge.Step(step, states=[torch.zeros((), dtype=torch.int64)], names=["offset"], batch_axis=None,
                     args=(edge.FEATURES, edge.State("offset")), returns=("y", edge.State("offset")))
    return edge.declare("positional", encoder=decl, head="none", chunk=4, trained=False)


def _speech(sig, n=60):
    from targets.golden import parity_stream
    return parity_stream(sig, n)


def test_stream_check_finds_where_a_position_table_ends(tmp_path):
    model = _positional()
    sig = model.signature()
    path = export_onnx(model, tmp_path)["encoder"]
    rec = stream_check(sig, open_runner(path, sig.graph("encoder"), "onnx", 1), _speech(sig), seconds=60)
    assert rec["passed"] is False and rec["failed_at_chunk"] == TABLE
    assert rec["safe_seconds"] == pytest.approx(TABLE * 0.04)
    assert "raised" in rec["why"]


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
    rec = stream_check(sig, run, _speech(sig), seconds=120)
    assert rec["passed"] and rec["safe_seconds"] is None and rec["max_drift"] < 1e-3
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
    assert report["reset"]["passed"] and report["offline"]["checked"] is False and report["stream"]["passed"]


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
