"""edge-build and edge-verify on tiny models: bundle contents, reproducibility,
atomicity, failure handling and corruption detection."""

from __future__ import annotations

import re

import pytest
import torch

from edge.errors import UserError
from edge.families import get_family
from runtime_py.manifest import Bundle, ManifestError
from targets import build as build_mod
from targets.build import build_bundle, get_target, parse_quant
from targets.verify import verify
from tests.test_families import FAMILY_TEST_CONFIGS

ORT_PAIRS = [("ort", "fp32")]


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return get_family(family).build(**FAMILY_TEST_CONFIGS[family]).eval()


@pytest.fixture(scope="module", params=sorted(FAMILY_TEST_CONFIGS))
def bundle(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / f"t-{request.param}-rpi"
    return build_bundle(request.param, "rpi", out, model=tiny(request.param), backends=ORT_PAIRS)


def test_bundle_contents(bundle):
    b = Bundle(bundle)
    m = b.manifest
    sig = b.signature
    assert {a.graph for a in b.artifacts} == {g.name for g in sig.graphs}
    for a in b.artifacts:
        assert a.precision == "fp32" and a.backend == "ort"
        assert set(a.parity) >= {"max_abs_diff", "tolerance", "chunks", "passed"}
        assert a.parity["chunks"] >= 200 and a.parity["passed"] and a.parity["max_abs_diff"] <= 1e-4
        assert a.parity["state_max_scaled_diff"] <= 1e-4
        assert len(a.sha256) == 64 and a.bytes > 0
    assert (bundle / "required_operators.config").exists()
    for rel in ("tokens.txt", "README.md", "golden/audio.wav", "golden/encoder_inputs.npz",
                "golden/encoder_outputs.npz", "golden/transcript.txt"):
        assert rel in {f["path"] for f in b.files}, rel
    assert len(b.tokens()) == sig.vocab_size
    assert m["model"]["trained"] is False and "UNTRAINED" in m["model"]["note"]
    card = (bundle / "README.md").read_text()
    assert "UNTRAINED" in card
    from targets.modelcard import PRECISION_NOTES
    assert f"- ort fp32: {PRECISION_NOTES[('ort', 'fp32')]}" in card  # what the file's precision means
    for g in sig.graphs:  # model card tables come from the signature
        for s in g.states:
            assert f"`{s.name}`" in card and f"`{s.next_name}`" in card
        for t in g.inputs:
            assert f"`{t.name}`" in card


def test_manifest_has_no_absolute_paths_or_timestamps(bundle):
    text = (bundle / "manifest.json").read_text()
    assert str(bundle.parent) not in text and "/tmp" not in text
    assert not re.search(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text), "no timestamps in a manifest"


def test_build_is_reproducible(tmp_path):
    a = build_bundle("conformer", "rpi", tmp_path / "a", model=tiny("conformer"), backends=ORT_PAIRS)
    b = build_bundle("conformer", "rpi", tmp_path / "b", model=tiny("conformer"), backends=ORT_PAIRS)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    assert (a / "README.md").read_bytes() == (b / "README.md").read_bytes()


def test_verify_passes_then_catches_corruption(bundle, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    assert verify(copy) == 0
    model_file = copy / Bundle(copy).artifacts[0].path
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    capsys.readouterr()
    assert verify(copy) == 1
    assert "does not match the manifest" in capsys.readouterr().out
    with pytest.raises(ManifestError, match="corrupted"):
        Bundle(copy).path(Bundle(copy).artifacts[0].path)


def test_verify_reports_an_artifact_for_another_signature(tmp_path, capsys):
    """A model file whose I/O is not the signature's (here the lstm's .ort in
    a conformer bundle, the manifest's sha256 updated to it) is one error line
    naming the first tensor that differs and exit 2 (issue 25), not a traceback."""
    import json
    import shutil

    from runtime_py.manifest import sha256_path
    conf = build_bundle("conformer", "rpi", tmp_path / "c", model=tiny("conformer"), backends=ORT_PAIRS)
    lstm = build_bundle("lstm", "rpi", tmp_path / "l", model=tiny("lstm"), backends=ORT_PAIRS)
    name = Bundle(conf).artifacts[0].path
    shutil.copyfile(lstm / name, conf / name)
    m = json.loads((conf / "manifest.json").read_text())
    for a in m["artifacts"]:
        if a["path"] == name:
            a["sha256"], a["bytes"] = sha256_path(conf / name), (conf / name).stat().st_size
    (conf / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert verify(conf) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: manifest.json does not describe its model files: ") and name in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_failed_parity_fails_build_unless_kept(tmp_path, monkeypatch):
    from targets import parity
    monkeypatch.setitem(parity.TOLERANCES, "fp32", 0.0)  # nothing can meet a zero tolerance
    out = tmp_path / "x"
    with pytest.raises(UserError, match="parity failed"):
        build_bundle("lstm", "rpi", out, model=tiny("lstm"), backends=ORT_PAIRS)
    assert not out.exists() and not any(tmp_path.iterdir()), "a failed build must leave nothing behind"
    kept = build_bundle("lstm", "rpi", out, model=tiny("lstm"), backends=ORT_PAIRS, keep_failed=True)
    assert all(a.parity["passed"] is False for a in Bundle(kept).artifacts)


def test_interrupted_build_keeps_previous_bundle(tmp_path, monkeypatch):
    out = tmp_path / "b"
    build_bundle("lstm", "rpi", out, model=tiny("lstm"), backends=ORT_PAIRS)
    before = (out / "manifest.json").read_bytes()

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("targets.build.artifacts.convert_graphs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_bundle("lstm", "rpi", out, model=tiny("lstm", seed=1), backends=ORT_PAIRS)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"], "no partial folder may remain"


def test_int8_of_an_untrained_model_is_judged_by_output_error(tmp_path):
    """Tokens an untrained model decodes mean nothing: its int8 is judged by
    the relative output error, and the record says why."""
    out = build_bundle("transducer", "rpi", tmp_path / "q", model=tiny("transducer"),
                       backends=[("ort", "int8")], keep_failed=True)
    for a in Bundle(out).artifacts:
        assert a.parity["judged_by"] == "relative_error" and "untrained" in a.parity["why"]
        assert a.parity["quantized_ops"] > 0
        assert a.parity["passed"] == (a.parity["relative_error"] <= a.parity["relative_error_bar"])
        # the recipe is recorded and matches the file: this family has no Conv, so MatMul dynamic only
        recipe = a.parity["int8_recipe"]
        assert recipe["recipe"] == "matmul-dynamic" and recipe["calibration"] is None
        assert sum(recipe["ops_quantised"]["dynamic"].values()) == a.parity["quantized_ops"]


def test_int8_of_a_trained_model_is_judged_on_decoded_tokens(tmp_path):
    out = build_bundle("lstm", "rpi", tmp_path / "t", backends=[("ort", "int8")], keep_failed=True,
                       parity_chunks=200)  # the shipped, trained checkpoint
    for a in Bundle(out).artifacts:
        assert a.parity["tolerance"] is None and "judged_by" not in a.parity
        assert a.parity["reference_tokens"] >= 20
        assert a.parity["passed"] == (a.parity["decoded_agreement"] >= a.parity["agreement_bar"])


def test_int8_agreement_over_too_few_tokens_is_refused():
    from runtime_py.signature import Signature
    from targets.parity import numeric_reason
    sig = tiny("lstm").signature()
    assert isinstance(sig, Signature)
    assert "only 5 reference tokens" in numeric_reason(sig, "int8", True, 5)
    assert numeric_reason(sig, "int8", True, 20) is None
    assert numeric_reason(sig, "fp32", False, 0) is None


def test_targets_table_and_suggestions(capsys):
    assert build_mod.main(["--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("rpi", "android", "ios"):
        assert name in listing
    with pytest.raises(UserError, match="Did you mean 'android'"):
        get_target("andriod")
    assert build_mod.main(["--target", "andriod"]) == 2
    assert "Did you mean 'android'" in capsys.readouterr().err
    assert parse_quant(get_target("rpi"), "int8") == (("ort", "int8"),)
    with pytest.raises(UserError, match="not available"):
        parse_quant(get_target("ios"), "tflite:fp16")


def test_cli_puts_back_the_callers_sigterm_handler():
    import signal
    before = signal.getsignal(signal.SIGTERM)
    assert build_mod.main(["--list"]) == 0
    assert build_mod.main(["--target", "andriod"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert build_mod.main(["--target", "rpi", "--family", "lstm", "--checkpoint", str(bad),
                           "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a torch checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
