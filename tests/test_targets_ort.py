"""ONNX Runtime target: .ort parity, int8 token agreement, the reduced-build config.

Tolerances: fp32 .ort vs PyTorch differs only by kernel choice and summation
order (~1e-6 measured), so 1e-4 as for ONNX (tests/test_families.py).
int8 (dynamic, int8 weights) is judged by what decoding sees: the argmax
token per frame over a 200-chunk rollout with states carried. Measured on
these tiny random-weight models: lstm 1.0, conformer 0.9925, joiner 1.0; on
the untrained default configs 0.99/0.977/0.985. Random weights give near-tied
logits that any quantisation flips, so the bar is 0.95: a broken
quantisation (wrong scale, dropped bias, a state not carried) gives
agreement near chance (1/47).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from edge.export import FP32_TOLERANCE, export_onnx, random_chunks, torch_runner  # noqa: E402
from runtime_py.stateloop import INT8_AGREEMENT_BAR, StateLoop, compare_rollouts, within  # noqa: E402
from targets import ort as T  # noqa: E402
from test_families import FAMILIES, build  # noqa: E402

CHUNKS = 200

torch.set_num_threads(1)


def token_agreement(graph, reference, candidate, chunks) -> float:
    """Fraction of frames whose argmax token is the same, states carried."""
    ref, cand = StateLoop(graph, reference), StateLoop(graph, candidate)
    name = graph.outputs[0].name
    a = np.concatenate([ref.step(c)[name].reshape(-1, graph.outputs[0].shape[-1]) for c in chunks])
    b = np.concatenate([cand.step(c)[name].reshape(-1, graph.outputs[0].shape[-1]) for c in chunks])
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def token_graphs(sig):
    return [g for g in sig.graphs if g.outputs[0].name in ("log_probs", "logits")]


@pytest.fixture(scope="module", params=FAMILIES)
def converted(request, tmp_path_factory):
    model = build(request.param)
    d = tmp_path_factory.mktemp(f"ort-{request.param}")
    onnx_paths = export_onnx(model, d / "onnx")
    ort_paths = {(g, p): T.to_ort(onnx_paths[g], d / "ort", p) for g in onnx_paths for p in T.PRECISIONS}
    return model, onnx_paths, ort_paths


def test_files_are_named_graph_precision_ort(converted):
    model, onnx_paths, ort_paths = converted
    for (g, p), path in ort_paths.items():
        assert path.name == f"{g}.{p}.ort" and path.stat().st_size > 0


def test_fp32_ort_parity_200_chunks(converted):
    model, _, ort_paths = converted
    sig = model.signature()
    for g in sig.graphs:
        r = compare_rollouts(g, torch_runner(model, g), T.runner(ort_paths[g.name, "fp32"], g),
                             random_chunks(g, sig, CHUNKS, seed=1))
        assert r["chunks"] == CHUNKS
        assert within(r, FP32_TOLERANCE), (g.name, r)


def test_int8_ort_runs_and_keeps_tokens(converted):
    model, onnx_paths, ort_paths = converted
    sig = model.signature()
    for g in sig.graphs:
        chunks = random_chunks(g, sig, CHUNKS, seed=1)
        run = T.runner(ort_paths[g.name, "int8"], g)
        r = compare_rollouts(g, torch_runner(model, g), run, chunks)
        assert np.isfinite(r["max_abs_diff"])
        assert r["max_abs_diff"] < 1.0, (g.name, r["max_abs_diff"])  # quantisation noise, not garbage
        # int8 must differ from fp32: it really was quantised
        assert r["max_abs_diff"] > 1e-6 or g.name == "decoder"
    for g in token_graphs(sig):
        chunks = random_chunks(g, sig, CHUNKS, seed=1)
        agree = token_agreement(g, torch_runner(model, g), T.runner(ort_paths[g.name, "int8"], g), chunks)
        print(f"{sig.family}/{g.name} int8 token agreement {agree:.4f}")
        assert agree >= INT8_AGREEMENT_BAR, (g.name, agree)


def test_optimisation_report_shows_fusion(converted):
    model, onnx_paths, ort_paths = converted
    for g in onnx_paths:
        rep = T.optimisation_report(onnx_paths[g], ort_paths[g, "fp32"])
        assert rep["nodes_after"] <= rep["nodes_before"]
        q = T.optimisation_report(onnx_paths[g], ort_paths[g, "int8"])
        assert any(op.startswith("com.microsoft.DynamicQuantize") for op in q["after"]), q["after"]
    if model.signature().family == "conformer":
        rep = T.optimisation_report(onnx_paths["encoder"], ort_paths["encoder", "fp32"])
        assert rep["nodes_after"] < rep["nodes_before"] * 0.7
        assert "com.microsoft.SkipLayerNormalization" in rep["added"]


def test_required_operators_config_is_deterministic_and_relative(converted, tmp_path):
    _, _, ort_paths = converted
    files = sorted(ort_paths.values())
    a = T.required_operators_config(files, tmp_path / "a" / "required_operators.config")
    # the same models elsewhere, given in another order
    other = tmp_path / "elsewhere" / "deeper"
    other.mkdir(parents=True)
    copies = [shutil.copy(f, other / f.name) for f in reversed(files)]
    b = T.required_operators_config(copies, tmp_path / "b" / "required_operators.config")
    text = a.read_text()
    assert a.read_bytes() == b.read_bytes()
    assert str(tmp_path) not in text and "/" not in text and "\\" not in text
    assert [ln for ln in text.splitlines() if ln.startswith("# - ")] == [f"# - {f.name}" for f in sorted(files, key=lambda p: p.name)]
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert any(ln.startswith("ai.onnx;") for ln in body), body  # keyed by each op's since-version
    assert any(ln.startswith("com.microsoft;1;") and "DynamicQuantize" in ln for ln in body), body
    for ln in body:
        domain, opset, ops = ln.split(";")
        assert ops.split(",") == sorted(ops.split(",")), ln


def test_build_output_is_quiet(tmp_path, caplog):
    """What edge-build prints: no tracer warnings for the families' batch-1
    branches, no quantiser advice, no "Created config in /tmp/..." line; and
    the logging set-up is left as it was."""
    import logging
    import warnings

    model = build("conformer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = export_onnx(model, tmp_path / "onnx")
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)], \
        [str(w.message) for w in caught]
    filters = list(logging.getLogger().filters)
    with caplog.at_level(logging.INFO):
        q = T.to_ort(paths["encoder"], tmp_path / "ort", "int8")
        T.required_operators_config([q], tmp_path / "required_operators.config")
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage() or "Created config" in r.getMessage()]
    assert logging.getLogger().filters == filters
