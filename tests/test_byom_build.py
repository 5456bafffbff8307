"""Bring your own model through edge-build: factories, bundles, the client,
and the icefall Zipformer2 from PyPI (small configuration)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import edge
from byom_models import declare_vad
from runtime_py.manifest import Bundle
from runtime_py.session import ModelSession
from targets import build as build_mod
from targets.build import build_bundle

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
ROOT = Path(__file__).resolve().parent.parent
ORT = [("ort", "fp32"), ("ort", "int8")]


def _factory(tmp_path: Path, body: str) -> str:
    f = tmp_path / "my_factory.py"
    f.write_text("import torch\nimport edge\n\n" + body)
    return f"{f}:build"


@pytest.mark.parametrize("body, message", [
    ("def build():\n    raise ValueError('no checkpoint at /x.pt')\n",
     r"my_factory.py:build\(\) raised ValueError: no checkpoint at /x.pt \(at my_factory.py:5\)"),
    ("def build():\n    return {'not': 'a model'}\n", r"returned a dict; it must return the model edge.declare"),
    ("def make():\n    pass\n", r"my_factory.py has no function 'build'; its functions: make"),
    ("import not_installed_pkg\n", r"importing my_factory.py failed: ModuleNotFoundError"),
    ("def build():\n    return edge.declare('m', encoder=edge.Step(lambda x, s: (x, [s[0][:, :1]]), "
     "states=[torch.zeros(1, 3)], names=['h'], returns=('y', edge.STATES)), head='none', chunk=4)\n",
     r"h: got \[1, 1\], want \[1, 3\]"),
])
def test_factory_errors_are_one_line_and_leave_no_bundle(tmp_path, capsys, body, message):
    out = tmp_path / "bundle"
    rc = build_mod.main(["--target", "rpi", "--model", _factory(tmp_path, body), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ")
    assert __import__("re").search(message, err[0]), err[0]
    assert not out.exists()


def test_model_and_family_together_are_refused(capsys):
    assert build_mod.main(["--target", "rpi", "--model", "x.py:build", "--family", "lstm"]) == 2
    assert "leave out --family" in capsys.readouterr().err


def test_vad_bundle_runs_in_the_client_and_int8_is_judged_numerically(tmp_path):
    out = build_bundle(None, "rpi", tmp_path / "vad", model=declare_vad(), backends=ORT, parity_chunks=60)
    bundle = Bundle(out)
    assert bundle.manifest["family"] == "vad" and bundle.signature.decoder == "none"
    int8 = bundle.find("encoder", "ort", "int8").parity
    assert int8["judged_by"] == "relative_error" and "head 'none'" in int8["why"]
    assert int8["decoded_agreement"] is None and int8["quantized_ops"] > 0 and int8["passed"]
    session = ModelSession(out, backend="ort", precision="fp32")
    audio = np.random.default_rng(0).standard_normal(576).astype(np.float32)[None, :, None] * 0.1
    prob = session.encode(audio[0])
    assert prob.shape == (1, 1) and 0.0 < float(prob[0, 0]) < 1.0
    session.decoder.accept(prob)
    assert session.text().startswith("speech_prob [1, 1]: 1 chunks, last 0.") and len(session.decoder.outputs) == 1
    from targets.verify import verify
    lines = []
    assert verify(out, out=lines.append) == 0
    assert any("ort int8 golden" in ln and "relative error" in ln for ln in lines), lines


def test_int8_that_quantised_nothing_fails(tmp_path):
    """No weight matmul at all: dynamic int8 has nothing to quantise."""
    step = edge.Step(lambda x, s: (torch.tanh(x.mean(-1)) + s[0].mean(), [s[0] * 0.5 + x.mean()]),
                     states=lambda b: [torch.zeros(b, 4)], names=["acc"], returns=("y", edge.STATES))
    model = edge.declare("noweights", encoder=step, head="none", chunk=4)
    out = build_bundle(None, "rpi", tmp_path / "nw", model=model, backends=ORT, keep_failed=True, parity_chunks=20)
    rec = Bundle(out, verify=False).find("encoder", "ort", "int8").parity
    assert rec["quantized_ops"] == 0 and rec["passed"] is False and "quantised" in rec["why"]


# -- the icefall Zipformer2 from PyPI --------------------------------------------------

needs_zipformer = pytest.mark.skipif(importlib.util.find_spec("zipformer") is None,
                                     reason="the PyPI zipformer package is not installed (.ci/run installs it; "
                                            "see docs/bring-your-own-model.md)")


def _zipformer_factory():
    spec = importlib.util.spec_from_file_location("zipformer_factory", ROOT / "examples" / "zipformer_factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_zipformer
def test_zipformer_declares_and_matches_onnx_over_200_chunks(tmp_path):
    from edge.export import check_onnx_parity, export_onnx
    model = _zipformer_factory().build_small_untrained()
    sig = model.signature()
    enc = sig.graph("encoder")
    assert len(enc.states) == 6 * 6 + 2  # 6 stacks of 1 layer, 6 caches each, + embed cache + processed_lens
    by = {s.name: s for s in enc.states}
    assert by["cached_key_0"].batch_axis == 1 and by["cached_conv1_0"].batch_axis == 0
    assert by["processed_lens"].dtype == "int64"
    assert enc.outputs[0].shape == (1, 8, 256) and sig.subsampling == 4 and sig.decoder == "transducer"
    report = check_onnx_parity(model, export_onnx(model, tmp_path), chunks=200)
    for g, r in report.items():
        assert r["passed"] and r["max_abs_diff"] <= 1e-4, (g, r)


@needs_zipformer
def test_zipformer_factory_builds_a_bundle_that_verifies(tmp_path, capsys):
    from targets.verify import main as verify_main
    out = tmp_path / "zf"
    factory = f"{ROOT / 'examples' / 'zipformer_factory.py'}:build_small_untrained"  # random weights, 500 tokens
    rc = build_mod.main(["--target", "rpi", "--model", factory,
                         "--quant", "ort:fp32", "--parity-chunks", "20", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    bundle = Bundle(out)
    assert bundle.manifest["model"]["trained"] is False and len(bundle.tokens()) == 500
    assert verify_main([str(out)]) == 0
    # the .ort route's graph pass (targets/ort_rewrite.py) ran on the encoder, and says so
    route = next(a for a in bundle.manifest["artifacts"] if a["graph"] == "encoder")["conversion"]["route"]
    assert route["rewrites"]["swoosh_fewer_nodes"] > 0 and route["rewrites"]["linear_chains_2d"] > 0
    assert route["rewrite_check"]["max_abs_diff"] <= 1e-4 and route["rewrite_check"]["chunks"] == 100


@needs_zipformer
def test_zipformer_state_dict_loads_through_the_factory(tmp_path, monkeypatch):
    zf = _zipformer_factory()
    first = zf.build_small_untrained()
    user_model = first.modules_of("decoder")[0]  # the AsrModel the decoder lambda closes over
    torch.save(user_model.state_dict(), tmp_path / "model.pt")
    monkeypatch.setenv("ZIPFORMER_CHECKPOINT", str(tmp_path / "model.pt"))
    again = zf.build_small_untrained()  # ZIPFORMER_CHECKPOINT applies to every build
    assert again.trained is True
    a = dict(first.named_parameters())
    b = dict(again.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@needs_zipformer
@pytest.mark.slow
def test_sherpa_sized_zipformer_exports_with_parity_and_int8(tmp_path):
    """The configuration users deploy (about 20 M parameters, chunk 16, left
    context 64): what the benchmarks use."""
    from edge.export import check_onnx_parity, export_onnx
    from runtime_py.backends import open_runner
    from runtime_py.stateloop import RELATIVE_ERROR_BARS, compare_rollouts
    from targets.golden import parity_stream
    from targets.ort import quantized_op_count, to_ort
    model = _zipformer_factory().build()
    params = sum(p.numel() for p in model.modules_of("encoder")[0].parameters())
    assert 15e6 < params < 30e6, params
    paths = export_onnx(model, tmp_path / "onnx")
    report = check_onnx_parity(model, paths, chunks=200)
    assert all(r["passed"] for r in report.values()), report
    sig = model.signature()
    enc = sig.graph("encoder")
    int8 = to_ort(paths["encoder"], tmp_path, "int8")
    assert quantized_op_count(int8) > 100
    fp32 = open_runner(paths["encoder"], enc, "onnx", 1)
    r = compare_rollouts(enc, fp32, open_runner(int8, enc, "ort", 1),
                         [{"x": c} for c in parity_stream(sig, 100)])
    assert r["relative_error"] <= RELATIVE_ERROR_BARS["int8"], r["relative_error"]


@pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="coremltools is not installed")
def test_coreml_takes_logaddexp(tmp_path):
    """icefall's Zipformer activations use torch.logaddexp, which coremltools 9
    cannot translate by itself; targets.coreml supplies it."""
    from targets.coreml import inspect_mlpackage, to_coreml
    step = edge.Step(lambda x, s: (torch.logaddexp(x, s[0][:, None, :]).mean(-1), [s[0] * 0.5 + x.mean(1)]),
                     states=lambda b: [torch.zeros(b, 80)], names=["acc"], returns=("y", edge.STATES))
    model = edge.declare("lae", encoder=step, head="none", chunk=4)
    sig = model.signature()
    path = to_coreml(model, sig.graph("encoder"), sig, tmp_path, "fp32")
    report = inspect_mlpackage(path, sig.graph("encoder"))  # raises CoremlSpecError on a mismatch
    assert report["verified"] is False and "softplus" in report["ops"] and "maximum" in report["ops"]


def test_edge_bench_times_a_declared_model(tmp_path):
    from byom_models import declare_time_major
    from targets.bench import run_bench
    result = run_bench(model=declare_time_major(), seconds=2, backends=("pytorch", "ort:fp32"), repeats=1,
                       subprocesses=False, peak_matmul=False, progress=None)
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["pytorch"]["status"] == "ok" and rows["ort:fp32"]["status"] == "ok", rows
    assert rows["ort:fp32"]["p50_ms"] > 0 and rows["ort:fp32"]["family"] == "timemajor"


def test_edge_eval_scores_a_declared_model_like_the_family(tmp_path, capsys):
    """The shipped conformer, wrapped by a user's factory through edge.declare
    (its own step, states and tokens), scores the same WER as --family conformer."""
    import json
    import shutil

    from edge.evaluate import main as eval_main
    samples = ROOT / "edge" / "checkpoints" / "samples"
    texts = {"one_two_three": "one two three", "test_000419": "down one select",
             "test_000340": "forward three zero", "test_000123": "select cancel zero"}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with open(corpus / "test.jsonl", "w") as f:
        for stem, text in texts.items():
            shutil.copy(samples / f"{stem}.wav", corpus / f"{stem}.wav")
            f.write(json.dumps({"path": f"{stem}.wav", "text": text, "speaker": "x", "seconds": 2.0}) + "\n")
    factory = tmp_path / "conformer_factory.py"
    factory.write_text(
        "import torch\nimport edge\nfrom edge.checkpoint import load_or_init\n\n"
        "def build():\n"
        "    model, info = load_or_init('conformer', None)\n"
        "    enc = model.plan().graph('encoder')\n"
        "    states = {s.name: torch.full(s.shape, s.initial) for s in enc.states}\n"
        "    step = edge.Step(model.step, states=states, batch_axis={s.name: s.batch_axis for s in enc.states},\n"
        "                     args=(edge.FEATURES, *[edge.State(s.name) for s in enc.states]),\n"
        "                     returns=('log_probs', *[edge.State(s.name) for s in enc.states]))\n"
        "    return edge.declare('myconformer', encoder=step, head='ctc', chunk=model.config.chunk_frames,\n"
        "                        tokens=info['tokens'])\n")
    assert eval_main(["--family", "conformer", "--corpus", str(corpus), "--no-offline"]) == 0
    family_line = [ln for ln in capsys.readouterr().out.splitlines() if "pytorch streaming" in ln][0]
    assert eval_main(["--model", f"{factory}:build", "--corpus", str(corpus)]) == 0
    out = capsys.readouterr().out
    declared_line = [ln for ln in out.splitlines() if "pytorch streaming" in ln][0]
    untimed = lambda line: __import__("re").sub(r"; [0-9.]+ s\)", ")", line)  # noqa: E731 - elapsed time differs
    assert "myconformer" in out and untimed(declared_line) == untimed(family_line)


def test_edge_export_takes_a_factory(tmp_path, capsys):
    from edge.cli import main as export_main
    factory = tmp_path / "vad_factory.py"
    factory.write_text("import sys\nsys.path.insert(0, %r)\nfrom byom_models import declare_vad\n\n"
                       "def build():\n    return declare_vad()\n" % str(Path(__file__).parent))
    assert export_main(["--model", f"{factory}:build", "-o", str(tmp_path / "onnx"), "--parity-chunks", "50"]) == 0
    out = capsys.readouterr().out
    assert "exported vad" in out and "[✓]" in out and (tmp_path / "onnx" / "encoder.onnx").is_file()
    assert export_main(["--model", f"{factory}:build", "--family", "lstm", "-o", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
