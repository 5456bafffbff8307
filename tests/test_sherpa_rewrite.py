"""The .ort route's graph rewrites on the sherpa-form export (targets/sherpa/rewrite.py): they run on the
Zipformer's encoder (its Swoosh activations, its feed-forward chains), the files keep what sherpa-onnx reads,
sherpa-onnx decodes them to the tokens of the unrewritten export, and a refused or crashing pass ships the
exported graph."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

sherpa_onnx = pytest.importorskip("sherpa_onnx")
onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("zipformer") is None,
                                reason="the PyPI zipformer package is not installed")

from targets import ort_rewrite  # noqa: E402
from targets import sherpa as S  # noqa: E402
from targets.sherpa.rewrite import REPORT, rewrite_graph, summary  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The small untrained Zipformer exported twice, with the default rewrites and with none (fp32 + int8)."""
    import torch

    from edge.factory import load_model

    out = {}
    for name, rewrites in (("rewritten", None), ("plain", ())):
        torch.manual_seed(0)  # the package initialises its layers from torch's global generator
        model = load_model(f"{ROOT / 'examples' / 'zipformer_factory.py'}:build_small_untrained")
        out[name] = tmp_path_factory.mktemp(f"sherpa-zip-{name}")
        S.export_sherpa(model, out[name], model.tokens, int8=True, rewrites=rewrites)
    return out


def test_rewrites_ran_on_the_encoder_and_kept_sherpas_contract(exports):
    report = json.loads((exports["rewritten"] / REPORT).read_text(encoding="utf-8"))
    assert set(report) == {"encoder.onnx", "decoder.onnx", "joiner.onnx", "encoder.int8.onnx", "joiner.int8.onnx"}
    enc = report["encoder.onnx"]
    assert enc["rewrites"]["swoosh_fewer_nodes"] > 0 and enc["rewrites"]["linear_chains_2d"] > 0
    assert enc["rewrite_check"]["passed"] is True and enc["rewrite_check"]["chunks"] == ort_rewrite.CHECK_CHUNKS
    assert enc["rewrite_check"]["max_abs_diff"] <= ort_rewrite.CHECK_TOLERANCE
    assert report["encoder.int8.onnx"] == enc  # quantised from the rewritten graph
    assert any(line.startswith("encoder.onnx: rewrites ") and "passed" in line for line in summary(report))
    plain_report = json.loads((exports["plain"] / REPORT).read_text(encoding="utf-8"))
    assert all(r["rewrites_selected"] == [] and not r["rewrites"] for r in plain_report.values())
    assert "rewrites_selected" not in enc  # the default: said only when the caller chose
    for f in ("encoder.onnx", "encoder.int8.onnx"):
        new, old = (onnx.load(str(exports[k] / f)) for k in ("rewritten", "plain"))
        assert len(new.graph.node) < len(old.graph.node)  # the rewrite is in the shipped file
        # sherpa-onnx reads the metadata and feeds the I/O by position: both unchanged
        assert list(new.metadata_props) == list(old.metadata_props)
        for part in ("input", "output"):
            assert [v.name for v in getattr(new.graph, part)] == [v.name for v in getattr(old.graph, part)]


def test_sherpa_decodes_the_rewritten_files_as_the_unrewritten_ones(exports):
    """fp32: the rewrites move outputs by ~1e-6 (the check's figure), so sherpa-onnx emits the very same ids
    (random weights emit a token on most frames: a changed logit ranking would show). int8: both files are
    quantised from graphs that differ by that much, and a random model's near-tied logits flip under int8
    rounding, so the tokens are not the bar; the int8 encoder's error against the fp32 one is, and the
    rewritten file's must match the unrewritten one's (5 %: measured equal to 3 digits)."""
    from tests.bundle_fixtures import speechlike

    audio = [speechlike(2.5, seed=s) for s in (3, 4)]
    got = {}
    for k in ("rewritten", "plain"):
        ours = S.OurTransducerClient(exports[k], precision="fp32")
        rec = S.sherpa_recognizer(exports[k], precision="fp32")
        got[k] = [S.decode_sherpa(rec, a, ours.signature, ours.tokens) for a in audio]
    assert all(len(t) > 10 for t in got["plain"])
    assert got["rewritten"] == got["plain"]

    sig, _, _ = S.read_sherpa_dir(exports["plain"])
    graph, ref = sig.graph("encoder"), exports["plain"] / "encoder.onnx"
    err = {k: ort_rewrite.rollout_check(ref, exports[k] / "encoder.int8.onnx", graph, sig, chunks=30,
                                        relative=True)["relative_error"] for k in ("rewritten", "plain")}
    assert 0 < err["plain"] and err["rewritten"] <= 1.05 * err["plain"]


def test_refused_or_crashing_pass_ships_the_exported_graph(exports, tmp_path, monkeypatch):
    sig, _, _ = S.read_sherpa_dir(exports["plain"])
    graph, plain = sig.graph("encoder"), exports["plain"] / "encoder.onnx"
    monkeypatch.setattr(ort_rewrite, "rollout_check", lambda *a, **k: {"chunks": 100, "max_abs_diff": 0.5,
                                                                        "state_max_scaled_diff": 0.0})
    src, rec = rewrite_graph(plain, graph, sig, "fp32", tmp_path / "refused")
    assert src == plain and rec["rewrites_refused"]["swoosh_fewer_nodes"] > 0 and "rewrites" not in rec
    assert "FAILED: shipped the exported graph" in summary({"encoder.onnx": rec})[0]

    def crash(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(ort_rewrite, "rewrite", crash)
    src, rec = rewrite_graph(plain, graph, sig, "fp32", tmp_path / "crashed")
    assert src == plain and rec["rewrite_error"] == "RuntimeError: boom"


def test_export_cli_refuses_an_unknown_rewrite_before_any_work(tmp_path, capsys):
    from targets.sherpa.compare import main

    assert main(["export", "--out", str(tmp_path / "out"), "--ort-rewrites", "swoosh_fewer_nodes,fuse_all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ort-rewrites") and "'fuse_all'" in err and "linear_chains_2d" in err
    assert not (tmp_path / "out").exists()
