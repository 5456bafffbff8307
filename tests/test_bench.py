"""edge-bench on a tiny model: the output is well-formed (no wall-clock bars)."""

from __future__ import annotations

import json

import pytest

from targets.bench import ROW_KEYS, format_table, main, paired_speedup, parse_backends, run_bench
from tests.test_families import build

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = run_bench(model=build("conformer"), backends=["pytorch", "ort:fp32", "ort:int8"], seconds=3,
                    repeats=2, threads=[1], json_path=out / "bench.json", png_path=out / "bench.png",
                    parity_chunks=8, progress=None, fresh_processes=2)
    return res, out


def test_rows_have_every_key_and_ordered_latencies(result):
    res, _ = result
    assert [r["label"] for r in res["rows"]] == ["pytorch", "ort:fp32", "ort:int8"]
    for row in res["rows"]:
        assert set(ROW_KEYS) <= set(row)
        assert row["status"] == "ok", row["error"]
        assert row["threads"] == 1 and row["family"] == "conformer"
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["mean_ms"] > 0 and row["compute_s"] > 0
        assert row["size_bytes"] > 0
        assert row["cold_start_ms"] > 0 and row["peak_rss_mb"] > 0
        each = row["peak_rss_mb_each"]  # one figure per fresh process; the row gives their median
        assert len(each) == 2 and min(each) <= row["peak_rss_mb"] <= max(each), each
        assert row["calls"]["encoder"] == row["chunks"]
        assert row["flops_per_pass"] > 0 and row["gflops"] > 0


def test_rtf_is_compute_over_audio(result):
    res, _ = result
    audio = res["workload"]["audio_s"]
    assert 2.5 <= audio <= 3.5
    for row in res["rows"]:
        assert row["audio_s"] == pytest.approx(audio)
        assert row["rtf"] == pytest.approx(row["compute_s"] / audio, rel=1e-9)
        # the total of a pass bounds its mean per chunk
        assert row["compute_s"] == pytest.approx(row["mean_ms"] * row["chunks"] / 1e3, rel=0.5)


def test_speedup_is_relative_to_pytorch_same_threads(result):
    res, _ = result
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["pytorch"]["speedup_vs_pytorch"] == pytest.approx(1.0)
    for r in rows.values():
        assert r["speedup_vs_pytorch"] == pytest.approx(rows["pytorch"]["p50_ms"] / r["p50_ms"])


def test_paired_speedup_is_per_round():
    """Round by round: a drift that slows both configurations of a round
    alike cancels, which a ratio of whole-run medians would not."""
    a = [{"p50": 1.0}, {"p50": 2.0}, {"p50": 4.0}]  # the machine gets slower each round
    b = [{"p50": 1.5}, {"p50": 3.0}, {"p50": 6.0}]
    assert paired_speedup(a, b) == {"median": 1.5, "q25": 1.5, "q75": 1.5, "rounds": 3}
    assert paired_speedup(a, [{"p50": 1.0}, {"p50": 3.0}, {"p50": 8.0}])["median"] == 1.5


def test_paired_speedups_reported(result):
    res, _ = result
    pairs = [(p["faster"], p["than"]) for p in res["paired"]]
    assert pairs == [("ort:int8", "ort:fp32")]  # only pairs whose both rows ran
    p = res["paired"][0]
    assert p["rounds"] == 2 and p["q25"] <= p["median"] <= p["q75"]
    for row in res["rows"]:
        assert row["speedup_vs_pytorch_paired"]["rounds"] == 2
    assert "paired speed-ups" in format_table(res)


def test_backend_children_are_separate(result):
    res, _ = result
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["pytorch"]["torch_imported"] is True
    assert rows["ort:fp32"]["torch_imported"] is False
    assert rows["ort:int8"]["torch_imported"] is False


def test_json_png_and_table(result):
    res, out = result
    data = json.loads((out / "bench.json").read_text())
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    assert data["machine"]["versions"]["onnxruntime"] and data["machine"]["versions"]["torch"]
    assert data["models"]["conformer"]["macs_per_call"]["encoder"] > 0
    assert data["models"]["conformer"]["flops_per_audio_s"] > 0
    assert len(data["rows"]) == 3
    assert (out / "bench.png").read_bytes()[:8] == PNG_MAGIC
    table = format_table(res)
    for label in ("pytorch", "ort:fp32", "ort:int8"):
        assert label in table


def test_missing_artifact_is_a_failed_row_not_a_crash(tmp_path):
    from tests.bundle_fixtures import tiny_bundle

    bundle, model = tiny_bundle("lstm", tmp_path)  # ort:fp32 only
    res = run_bench(model=model, bundle=bundle, backends=["ort:fp32", "tflite:fp16"], seconds=1, repeats=1,
                    subprocesses=False, peak_matmul=False, progress=None)
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["ort:fp32"]["status"] == "ok"
    assert rows["tflite:fp16"]["status"] == "failed" and "tflite" in rows["tflite:fp16"]["error"]
    assert rows["ort:fp32"]["speedup_vs_pytorch"] is None  # no pytorch row to compare with
    assert "FAILED" in format_table(res)


def test_backend_names():
    assert parse_backends("pytorch, ort:fp32,ORT:int8,tflite") == ["pytorch", "ort:fp32", "ort:int8", "tflite:fp32"]
    with pytest.raises(Exception):
        parse_backends("tensorrt:fp32")
    assert main(["--backends", "nope"]) == 2


def test_int8_ceiling_covers_every_weight_matmul(result):
    """The ceiling copies each weight MatMul/Gemm of the encoder at its own shape."""
    import onnx

    from edge.export import export_onnx

    res, out = result
    c = res["models"]["conformer"]["int8_matmul_ceiling"]
    m = build("conformer")
    g = onnx.load(str(export_onnx(m, out / "onnx")["encoder"])).graph
    inits = {i.name for i in g.initializer}
    n_weight_matmuls = sum(n.op_type in ("MatMul", "Gemm") and n.input[1] in inits for n in g.node)
    assert c["matmuls"] == n_weight_matmuls > 0
    from edge.families.conformer import SUBSAMPLING
    chunk_rows = m.signature().chunk_frames // SUBSAMPLING
    assert chunk_rows in c["rows_per_call"]
    assert c["fp32_ms"] > 0 and c["int8_ms"] > 0 and c["ratio"] == pytest.approx(c["fp32_ms"] / c["int8_ms"])
    assert "int8 ceiling" in format_table(res)


def test_int8_ceiling_not_claimed_for_recurrent_graphs(tmp_path):
    """int8 also quantises LSTM weights, so a matmul-only bound would be false
    for the LSTM families (measured: the ceiling said 1.03x, the step 2.5x)."""
    from targets.bench import int8_matmul_ceiling
    from edge.export import export_onnx

    assert int8_matmul_ceiling(export_onnx(build("lstm"), tmp_path)["encoder"]) is None


def test_chart_title_names_model_machine_threads(result):
    from targets.bench import chart_title
    res, out = result
    title = chart_title(res)
    assert "conformer" in title and res["machine"]["cpu"] in title and "threads 1" in title
    assert f"{res['machine']['cores']} cores" in title and "untrained" in title  # an in-memory test model
    assert (out / "bench.png").read_bytes()[:8] == PNG_MAGIC


def test_columns_are_one_table():
    """A label is a row of targets.bench.columns.COLUMNS; `sherpa-onnx` names
    its six columns (sherpa on our export and on the package's, our client on
    sherpa's very files); anything else is one clear error."""
    from targets.bench.columns import COLUMNS

    assert parse_backends("sherpa-onnx") == ["sherpa:fp32", "sherpa:int8", "client:sherpa-fp32",
                                             "client:sherpa-int8", "sherpa:pkg-fp32", "sherpa:pkg-int8"]
    assert parse_backends("ort:int8,sherpa-onnx,sherpa:int8")[:3] == ["ort:int8", "sherpa:fp32", "sherpa:int8"]
    assert {COLUMNS[lb].kind for lb in parse_backends("sherpa-onnx")} == {"sherpa", "client"}
    with pytest.raises(Exception, match="unknown backend 'ort:int4'"):
        parse_backends("ort:int4")


def _passes(p50, e2e, rounds=5):
    return [{"p50": p50, "e2e": e2e} for _ in range(rounds)]


def test_project_targets_pass_and_miss():
    """Each target compares the paired ratio with its limit, in the right direction."""
    from targets.bench.stats import project_targets

    ok = {"status": "ok"}
    rows = {"pytorch": dict(ok), "ort:fp32": dict(ok, e2e_rtf=0.05), "ort:int8": dict(ok, e2e_rtf=0.02),
            "sherpa:pkg-fp32": dict(ok, e2e_rtf=0.06), "sherpa:pkg-int8": dict(ok, e2e_rtf=0.04),
            "client:sherpa-fp32": dict(ok, e2e_rtf=0.061, peak_rss_mb=130.0),
            "sherpa:fp32": dict(ok, e2e_rtf=0.06, peak_rss_mb=125.0),
            "tflite:int8": {"status": "failed", "error": "not converted: ..."}}
    passes = {"pytorch": _passes(40.0, 12.0), "ort:fp32": _passes(10.0, 3.0), "ort:int8": _passes(8.0, 1.2),
              "sherpa:pkg-fp32": _passes(11.0, 3.6), "sherpa:pkg-int8": _passes(9.0, 2.4),
              "client:sherpa-fp32": _passes(10.0, 3.66), "sherpa:fp32": _passes(10.0, 3.6)}
    got = {t["target"]: (t["passed"], t["value"]) for t in project_targets(rows, passes)}
    assert got["ORT fp32 >= 3x PyTorch eager per chunk"] == (True, 4.0)
    assert got["best int8 >= 2.2x ORT fp32"] == (False, 1.25)
    assert got["our e2e RTF <= 0.8x sherpa-onnx on the package's export (fp32)"] == (False, pytest.approx(3.0 / 3.6))
    assert got["our e2e RTF <= 0.8x sherpa-onnx on the package's export (int8)"] == (True, 0.5)
    assert got["identical files (fp32): our e2e RTF <= 1.05x sherpa-onnx's"][0] is True
    assert got["identical files (fp32): peak RSS <= sherpa-onnx's + 10 MB"] == (True, 5.0)
    assert got["our best e2e RTF <= 0.025"] == (True, 0.02)
    assert not any("TFLite" in k for k in got)  # it did not convert: no ratio to claim


def test_int8_is_compared_with_the_fp32_column_of_the_same_search():
    """An int8 column with one symbol per frame is judged against the fp32 column with one symbol per
    frame (the same decoder and joiner calls per chunk), not against the client's default search."""
    from targets.bench.stats import project_targets

    ok = {"status": "ok"}
    rows = {"ort:fp32": dict(ok, e2e_rtf=0.05), "ort:int8": dict(ok, e2e_rtf=0.03),
            "ort:fp32+1sym": dict(ok, e2e_rtf=0.04), "ort:int8+1sym": dict(ok, e2e_rtf=0.015),
            "sherpa:pkg-fp32": dict(ok, e2e_rtf=0.05)}
    passes = {"ort:fp32": _passes(10.0, 3.0), "ort:int8": _passes(6.0, 1.8),
              "ort:fp32+1sym": _passes(8.0, 2.4), "ort:int8+1sym": _passes(3.2, 0.9),
              "sherpa:pkg-fp32": _passes(9.0, 3.0)}
    got = {t["target"]: t for t in project_targets(rows, passes)}
    int8 = got["best int8 >= 2.2x ORT fp32"]
    assert int8["value"] == pytest.approx(8.0 / 3.2) and int8["passed"]  # not 10 / 3.2 against ort:fp32
    assert int8["detail"].startswith("ort:int8+1sym vs ort:fp32+1sym")
    fp32 = got["our e2e RTF <= 0.8x sherpa-onnx on the package's export (fp32)"]
    assert fp32["value"] == pytest.approx(2.4 / 3.0) and "ort:fp32+1sym" in fp32["detail"]


def test_not_converted_is_a_row_that_says_why(tmp_path):
    """A bundle that lists a target under not_converted gives that row the reason."""
    import shutil

    from targets.bench.artifacts import _artifact_set
    from tests.bundle_fixtures import cached_bundle

    src, model = cached_bundle("lstm")
    bundle = tmp_path / "b"
    shutil.copytree(src, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["not_converted"] = [{"backend": "tflite", "precision": "int8",
                                  "reason": "onnx2tf: Depth of output (8) is not a multiple of the groups (80)"}]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match=r"^not converted: onnx2tf: Depth of output"):
        _artifact_set(bundle, model.signature(), "tflite", "int8")


def test_pi_estimate_scales_by_the_matmul_peak():
    from targets.bench.stats import PI_PEAK_GFLOPS, pi_estimates

    rows = [{"status": "ok", "e2e_rtf": 0.02, "threads": 1, "label": "ort:int8", "family": "z"},
            {"status": "failed", "threads": 1, "label": "tflite:int8", "family": "z"}]
    (est,) = pi_estimates(rows, peak_here=96.0)
    for pi, gflops in PI_PEAK_GFLOPS.items():
        assert est[pi] == pytest.approx(0.02 * 96.0 / gflops)


def test_pi_estimate_per_thread_count():
    """2 threads: the 1-core figure / the paired speed-up given (not the rows' ratio,
    which is used only without one); 4 threads, not measured: Amdahl's law from
    the 1 -> 2 speed-up (S2 = 1.6 -> p = 0.75 -> S4 = 1 / (0.25 + 0.75/4) = 2.2857)."""
    from targets.bench.stats import PI_PEAK_GFLOPS, amdahl_speedup, pi_estimates

    rows = [{"status": "ok", "e2e_rtf": 0.04, "threads": 1, "label": "ort:int8", "family": "z"},
            {"status": "ok", "e2e_rtf": 0.02, "threads": 2, "label": "ort:int8", "family": "z"}]
    est = {e["threads"]: e for e in pi_estimates(rows, peak_here=96.0, thread_speedups={("ort:int8", 2): 1.6})}
    assert sorted(est) == [1, 2, 4]
    assert amdahl_speedup(1.6, 4) == pytest.approx(1 / (0.25 + 0.75 / 4))
    assert amdahl_speedup(2.0, 4) == pytest.approx(4.0) and amdahl_speedup(0.9, 4) == pytest.approx(1.0)
    for pi, gflops in PI_PEAK_GFLOPS.items():
        one = 0.04 * 96.0 / gflops
        assert est[1][pi] == pytest.approx(one)
        assert est[2][pi] == pytest.approx(one / 1.6)
        assert est[4][pi] == pytest.approx(one / amdahl_speedup(1.6, 4))
    assert est[4]["rtf_here"] is None and "Amdahl" in est[4]["basis"]
    (no_pair,) = [e for e in pi_estimates(rows, 96.0) if e["threads"] == 2]  # the rows' own ratio
    assert no_pair["speedup"] == pytest.approx(2.0)
    # 2 threads slower than 1 (a busy machine): measured, but no Pi figure and no 4-thread line
    busy = {e["threads"]: e for e in pi_estimates(rows, 96.0, thread_speedups={("ort:int8", 2): 0.3})}
    assert sorted(busy) == [1, 2] and all(busy[2][pi] is None for pi in PI_PEAK_GFLOPS)
    assert "no estimate" in busy[2]["basis"] and busy[1][next(iter(PI_PEAK_GFLOPS))] is not None


def test_a_refused_conversion_is_a_not_converted_row():
    """When the build raises the converter's refusal (an explicitly requested
    TFLite column of the Zipformer), the row says "not converted" and what the
    converter said, not the build's advice."""
    from targets.bench.artifacts import _not_converted
    from targets.conversion_errors import conversion_error

    e = conversion_error(RuntimeError("Traceback ...\nDepth of output (8) is not a multiple of the number of "
                                      "groups (80)"), "tflite", "int8", "encoder")
    row = _not_converted(e)
    assert row.startswith("not converted: converting graph 'encoder' to target tflite int8 failed")
    assert row.endswith("converter said: Depth of output (8) is not a multiple of the number of groups (80)")
    assert "Fix:" not in row and _not_converted(ValueError("x")) is None


def test_streams_batched_against_one_stream_alone():
    """--streams N: the same audio on N batched streams decodes the tokens a
    stream alone decodes (checked inside), and both per stream-chunk costs are
    reported with their paired ratio. No speed bar: that is the benchmark's figure."""
    import numpy as np

    from targets.bench.streams import batching_cost, describe

    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    b = batching_cost(build("lstm").eval(), audio, n=3, rounds=2)
    assert "error" not in b, b
    assert b["streams"] == 3 and b["batched_ms"] > 0 and b["single_ms"] > 0
    assert b["ratio_min"] <= b["ratio"] <= b["ratio_max"]
    assert len(b["per_round"]) == 2
    assert "3 streams batched" in describe(b)
    with pytest.raises(ValueError):
        batching_cost(build("lstm").eval(), audio, n=1)


def test_project_targets_stay_out_of_the_terminal():
    """Our performance targets are ours: the docs' Markdown lists them, the
    table edge-bench prints does not (docs/bench-zipformer.json has 10)."""
    import json
    from pathlib import Path

    from targets.bench.report import markdown

    result = json.loads((Path(__file__).parent.parent / "docs" / "bench-zipformer.json").read_text())
    assert result["targets"], "the recorded run has target lines to hide"
    assert "target MISS" in markdown(result) or "target PASS" in markdown(result)
    printed = format_table(result)
    assert "target PASS" not in printed and "target MISS" not in printed


def test_int8_column_describes_the_recipe_its_manifest_records(result, tmp_path):
    """The ort:int8 column's description is the bundle's own recipe, not a fixed "static Conv + dynamic
    MatMul": an LSTM has no Conv and its manifest records matmul-dynamic; a bundle without the record keeps
    the column's neutral wording."""
    import json
    import shutil

    from targets.bench.artifacts import prepare_artifacts
    from targets.bench.columns import COLUMNS
    from tests.bundle_fixtures import tiny_bundle

    bundle, model = tiny_bundle("lstm", tmp_path, backends=(("ort", "int8"),))
    manifest = json.loads((bundle / "manifest.json").read_text())
    recipe = next(a for a in manifest["artifacts"] if a["graph"] == "encoder")["parity"]["int8_recipe"]
    assert recipe["recipe"] == "matmul-dynamic" and "static" not in recipe["ops_quantised"]
    art = prepare_artifacts(["ort:int8"], model.signature(), tmp_path, bundle=bundle)["ort:int8"]
    about = art["about"]
    assert "int8 recipe from the manifest: encoder matmul-dynamic (" in about and "static Conv" not in about
    ops = {op.split(".")[-1]: n for by_op in recipe["ops_quantised"].values() for op, n in by_op.items()}
    assert ops and all(f"{op} x{n}" in about for op, n in ops.items())
    # an older bundle without the record: the column's own words, which name no recipe
    for a in manifest["artifacts"]:
        a["parity"].pop("int8_recipe", None)
    old = shutil.copytree(bundle, tmp_path / "old")
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert "about" not in prepare_artifacts(["ort:int8"], model.signature(), tmp_path, bundle=old)["ort:int8"]
    assert "static Conv" not in COLUMNS["ort:int8"].about
    # the timed rows carry it (the module's run built its own conformer bundle)
    row = next(r for r in result[0]["rows"] if r["label"] == "ort:int8")
    assert "int8 recipe from the manifest: encoder " in row["about"]
