"""The .ort route's own graph rewrites (targets/ort_rewrite.py): each computes what it replaces in ONNX
Runtime, fires only on its pattern, and fires on the graph icefall's Zipformer code exports."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from targets import ort_rewrite

ort = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parent.parent
SHAPE = [16, 1, 24]
# values far into both tails of the Swoosh (exp overflow / underflow for a naive form) and around its knee
X = np.concatenate([np.linspace(-120, 120, 200), np.linspace(-6, 6, 184)]).astype(np.float32).reshape(SHAPE)


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def _swoosh_graph(off=4.0, k=0.08, c=0.035, zeros_shape=SHAPE, extra_output=None) -> onnx.ModelProto:
    """What torch.onnx exports for icefall's Swoosh (logaddexp(zeros_like(x), x - off) - k * x - c)."""
    n = helper.make_node
    nodes = [n("Sub", ["x", "off"], ["y"]), n("Max", ["zero", "y"], ["mx"]), n("Sub", ["zero2", "y"], ["d"]),
             n("Abs", ["d"], ["a"]), n("Neg", ["a"], ["ng"]), n("Exp", ["ng"], ["e"]), n("Add", ["one", "e"], ["p"]),
             n("Log", ["p"], ["lg"]), n("Add", ["mx", "lg"], ["s1"]), n("Mul", ["x", "k"], ["kx"]),
             n("Sub", ["s1", "kx"], ["s2"]), n("Sub", ["s2", "c"], ["out"])]
    inits = [_const("off", off), _const("zero", np.zeros(zeros_shape)), _const("zero2", np.zeros(zeros_shape)),
             _const("one", 1.0), _const("k", k), _const("c", c)]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, SHAPE)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT, SHAPE))
    g = helper.make_graph(nodes, "swoosh", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, x=X):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})


@pytest.mark.parametrize("off,c", [(4.0, 0.035), (1.0, 0.313261687)])  # Swoosh-L, Swoosh-R
def test_swoosh_rewrite_is_exact_in_ort_and_drops_the_zero_constants(off, c):
    model = _swoosh_graph(off, c=c)
    want = _run(model)[0]
    model, counts = ort_rewrite.rewrite(model, ("swoosh_fewer_nodes",))
    assert counts == {"swoosh_fewer_nodes": 1}
    assert len(model.graph.node) == 9
    assert not any(i.name.startswith("zero") for i in model.graph.initializer)
    got = _run(model)[0]
    assert np.isfinite(got).all()
    # the same function with other rounding: float32 resolution of values up to |110| is ~1e-5
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-5)
    near = np.abs(X) < 8
    assert np.max(np.abs(got - want)[near]) < 1e-6  # around the knee, where the activations live


def test_swoosh_rewrite_finds_shapes_inference_cannot_know():
    """x reshaped by a computed shape: ONNX shape inference leaves the Swoosh input's shape unknown, so
    whether the zeros broadcast is learnt from one ONNX Runtime run of the graph."""
    model = _swoosh_graph()
    model.graph.node[0].input[0] = "xr"
    model.graph.node[9].input[0] = "xr"
    model.graph.node.insert(0, helper.make_node("Reshape", ["x", "xs"], ["xr"]))
    model.graph.node.insert(0, helper.make_node("Shape", ["x"], ["xs"]))
    want = _run(model)[0]
    model, counts = ort_rewrite.rewrite(model, ("swoosh_fewer_nodes",))
    assert counts == {"swoosh_fewer_nodes": 1}
    np.testing.assert_allclose(_run(model)[0], want, rtol=1e-6, atol=2e-5)


@pytest.mark.parametrize("change", ["other_zeros_shape", "nonzero_max", "intermediate_read", "k_is_one"])
def test_swoosh_rewrite_fires_only_on_its_pattern(change):
    if change == "other_zeros_shape":  # zeros bigger than x: the Max broadcasts, the output shape is not x's
        model = _swoosh_graph(zeros_shape=[2] + SHAPE)
    elif change == "nonzero_max":
        model = _swoosh_graph()
        model.graph.initializer[1].CopyFrom(_const("zero", np.full(SHAPE, 0.5)))
    elif change == "intermediate_read":  # the soft part is also a graph output: it must stay
        model = _swoosh_graph(extra_output="lg")
    else:
        model = _swoosh_graph(k=1.0)
    before = model.SerializeToString()
    model, counts = ort_rewrite.rewrite(model, ("swoosh_fewer_nodes",))
    assert counts == {"swoosh_fewer_nodes": 0}
    assert model.SerializeToString() == before


def test_zero_operand_ops_exact_and_only_where_the_zeros_do_not_broadcast():
    model = _swoosh_graph()
    want = _run(model)[0]
    model, counts = ort_rewrite.rewrite(model, ("zero_operand_ops",))
    assert counts == {"zero_operand_ops": 3}  # Max -> Relu, Sub(0, y) -> Neg, Abs(Neg(y)) -> Abs(y)
    ops = [n.op_type for n in model.graph.node]
    assert "Relu" in ops and "Max" not in ops and "Neg" in ops
    np.testing.assert_array_equal(_run(model)[0], want)  # the same float operations, bit for bit
    wide = _swoosh_graph(zeros_shape=[2] + SHAPE)
    assert ort_rewrite.rewrite(wide, ("zero_operand_ops",))[1] == {"zero_operand_ops": 0}


def test_unknown_rewrite_name_is_refused():
    with pytest.raises(ValueError, match="unknown ORT rewrites"):
        ort_rewrite.rewrite(_swoosh_graph(), ("no_such_rewrite",))


@pytest.mark.skipif(importlib.util.find_spec("zipformer") is None, reason="the PyPI zipformer package is not installed")
def test_swoosh_rewrite_fires_on_the_zipformer_packages_own_activations(tmp_path):
    """The package's SwooshL/SwooshR as the model's export traces them (zeros_like) and its *Onnx variants
    (a scalar zero): every one is matched."""
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("zipformer_factory", ROOT / "examples" / "zipformer_factory.py")
    factory = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("zipformer_factory", factory)
    spec.loader.exec_module(factory)  # its stubs let the package import without torchaudio
    from zipformer.modules import scaling

    class Four(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.acts = torch.nn.ModuleList([scaling.SwooshL(), scaling.SwooshR(), scaling.SwooshLOnnx(),
                                             scaling.SwooshROnnx()])

        def forward(self, x):
            return tuple(a(x * (i + 1)) for i, a in enumerate(self.acts))

    path = tmp_path / "swoosh.onnx"
    torch.onnx.export(Four().eval(), (torch.from_numpy(X),), str(path), opset_version=17, dynamo=False,
                      input_names=["x"])
    model = onnx.load(str(path))
    want = _run(model)
    model, counts = ort_rewrite.rewrite(model, ("swoosh_fewer_nodes",))
    assert counts == {"swoosh_fewer_nodes": 4}
    for a, b in zip(_run(model), want):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-4)  # inputs up to |480|: float32 steps of ~3e-5


def _ffn_graph(bias_shape=(8,), second_linear=True) -> onnx.ModelProto:
    """x [1, 5, 4] -> Linear(4, 8) -> Swish -> Linear(8, 4) -> + x: a conformer's feed-forward block."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w1"], ["h"]), n("Add", ["h", "b1"], ["hb"]), n("Sigmoid", ["hb"], ["sg"]),
             n("Mul", ["hb", "sg"], ["sw"])]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "b1")]
    last = "sw"
    if second_linear:
        nodes += [n("MatMul", ["sw", "w2"], ["o"]), n("Add", ["b2", "o"], ["ob"])]
        inits += [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w2"),
                  numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b2")]
        nodes.append(n("Add", ["x", "ob"], ["out"]))
    else:
        nodes.append(n("Identity", [last], ["out"]))
    shape = [1, 5, 4]
    g = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape if second_linear
                                                         else [1, 5, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _ort_optimised_ops(model, tmp_path) -> list[str]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [nd.op_type for nd in onnx.load(str(tmp_path / "opt.onnx")).graph.node]


def test_linear_chain_runs_in_2d_and_ort_then_needs_fewer_reshapes(tmp_path):
    model = _ffn_graph()
    x = np.random.default_rng(1).standard_normal((1, 5, 4)).astype(np.float32)
    want = _run(model, x)[0]
    before = _ort_optimised_ops(model, tmp_path).count("Reshape")
    model, counts = ort_rewrite.rewrite(model, ("linear_chains_2d",))
    assert counts == {"linear_chains_2d": 1}
    np.testing.assert_allclose(_run(model, x)[0], want, rtol=1e-6, atol=1e-6)  # the same GEMMs, other layout
    after = _ort_optimised_ops(model, tmp_path)
    assert before == 4 and after.count("Reshape") == 2 and after.count("Gemm") == 2  # 2 Gemms, 2 -> 1 Reshape each


@pytest.mark.parametrize("case", ["bias_not_last_axis", "one_linear_saves_nothing"])
def test_linear_chain_left_alone(case):
    model = _ffn_graph(bias_shape=(5, 1, 8)) if case == "bias_not_last_axis" else _ffn_graph(second_linear=False)
    if case == "bias_not_last_axis":  # the first Add broadcasts over T: only the second Linear could chain, alone
        model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 5
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5
    before = model.SerializeToString()
    model, counts = ort_rewrite.rewrite(model, ("linear_chains_2d",))
    assert counts == {"linear_chains_2d": 0}
    assert model.SerializeToString() == before


def test_rewrite_bench_measures_a_rewrite_on_an_exported_conformer(tmp_path):
    """python -m targets.bench.rewrites on a tiny exported conformer: node counts, parity and a paired ratio
    per precision (2 rounds: the figures' shape, not their value)."""
    from edge.export import export_onnx
    from targets.bench.rewrites import main
    from test_families import build

    paths = export_onnx(build("conformer"), tmp_path / "conformer")
    out = tmp_path / "rows.json"
    assert main([str(paths["encoder"]), "--rewrites", "linear_chains_2d,swoosh_fewer_nodes", "--no-together",
                 "--rounds", "2", "--chunks", "2", "--parity-chunks", "3", "--json", str(out)]) == 0
    import json
    rows = {r["rewrite"]: r for r in json.loads(out.read_text())}
    assert rows["swoosh_fewer_nodes"]["matches"] == 0 and "fp32" not in rows["swoosh_fewer_nodes"]
    chain = rows["linear_chains_2d"]
    assert chain["matches"] > 0 and chain["graph"] == "conformer/encoder.onnx"
    assert chain["fp32"]["nodes_after"] < chain["fp32"]["nodes_before"]  # fewer Reshapes around ORT's Gemms
    for p in ("fp32", "int8"):
        assert chain[p]["parity"]["chunks"] == 3 and chain[p]["parity"]["max_abs_diff"] <= 1e-4
        s = chain[p]["speedup"]
        assert s["rounds"] == 2 and s["q25"] <= s["median"] <= s["q75"] and s["median"] > 0
    assert len(chain["int8"]["parity"]["relative_error_vs_fp32"]) == 2


def test_ort_route_records_its_rewrites_and_falls_back_when_the_check_fails(tmp_path, monkeypatch):
    """to_ort on a tiny exported conformer: the default rewrites run once for both precisions (one cached
    check), and the route says so; a rewritten graph that fails its check is not shipped: the .ort is then
    the unrewritten one and the route says `rewrites_refused`."""
    from edge.export import export_onnx
    from targets import ort as T
    from targets.ort_ops import op_counts
    from test_families import build

    model = build("conformer")
    sig = model.signature()
    enc = export_onnx(model, tmp_path / "onnx")["encoder"]
    graph = sig.graph("encoder")
    plain = T.to_ort(enc, tmp_path / "plain", "fp32", graph, sig, rewrites=())
    route: dict = {}
    done = T.to_ort(enc, tmp_path / "default", "fp32", graph, sig, route=route, work=tmp_path / "work")
    assert route["rewrites"]["linear_chains_2d"] > 0 and route["rewrite_check"]["passed"] is True
    assert sum(op_counts(done).values()) < sum(op_counts(plain).values())
    assert len(list((tmp_path / "work" / "ort-rewrites").glob("*.json"))) == 1

    calls = []
    monkeypatch.setattr(ort_rewrite, "rollout_check", lambda *a, **k: calls.append(1) or
                        {"chunks": 100, "max_abs_diff": 0.5, "state_max_scaled_diff": 0.0})
    refused: dict = {}
    for p in ("fp32", "int8"):
        out = T.to_ort(enc, tmp_path / "refused", p, graph, sig, route=refused, work=tmp_path / "work2")
    assert calls == [1]  # checked once for both precisions
    assert refused["rewrites_refused"]["linear_chains_2d"] > 0 and "rewrites" not in refused
    assert refused["rewrite_check"]["passed"] is False
    assert op_counts(tmp_path / "refused" / "encoder.fp32.ort") == op_counts(plain)
    assert out.name == "encoder.int8.ort"


def test_edge_build_ort_rewrites_unknown_name_is_one_error_before_any_work(monkeypatch, capsys, tmp_path):
    """--ort-rewrites with a name the pass does not have: one `error:` line listing the known ones, before
    the model is loaded or any folder is made."""
    from targets.build import main

    calls = []
    monkeypatch.setattr("edge.checkpoint.load_or_init", lambda *a, **k: calls.append(a))
    out = tmp_path / "b"
    code = main(["--target", "rpi", "--family", "lstm", "--ort-rewrites", "swoosh_fewer_nodes,fuse_all",
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not calls and not out.exists()
    assert err.count("\n") == 1 and err.startswith("error: --ort-rewrites") and "'fuse_all'" in err
    assert all(name in err for name in ort_rewrite.NAMES) and "none" in err


def test_edge_build_without_the_ort_rewrites_says_so_in_the_manifest(tmp_path):
    """edge-build --ort-rewrites none: the .ort files are ONNX Runtime's conversion of the exported graph as
    it is, and each artifact's conversion.route says no rewrite was allowed and none ran. The control: the
    same tiny conformer built with the default rewrites records matches and their check (so the switch
    changes something)."""
    from targets.build import build_bundle
    from targets.ort_ops import op_counts
    from test_families import build

    model = build("conformer")
    kw = dict(backends=[("ort", "fp32")], parity_chunks=4, stream_seconds=2.0)
    off = build_bundle("conformer", "rpi", tmp_path / "off", model=model, ort_rewrites="none", **kw)
    on = build_bundle("conformer", "rpi", tmp_path / "on", model=model, **kw)
    import json

    def routes(b):
        arts = json.loads((b / "manifest.json").read_text())["artifacts"]
        return {a["graph"]: a.get("conversion", {}).get("route") for a in arts}

    assert routes(off) == {"encoder": {"rewrites_selected": []}}
    assert routes(on)["encoder"]["rewrites"]["linear_chains_2d"] > 0  # the default pass does touch this model
    assert routes(on)["encoder"]["rewrite_check"]["passed"] is True
    assert "rewrites_selected" not in routes(on)["encoder"]  # the default build's manifest is unchanged
    assert sum(op_counts(off / "encoder.fp32.ort").values()) > sum(op_counts(on / "encoder.fp32.ort").values())


def test_edge_verify_reports_the_recorded_rewrite_check(tmp_path):
    """edge-verify prints, per artifact, what the manifest records of the rewrites: what ran and the build's
    check (figure, tolerance, passed), a refusal (the unrewritten graph ships: not a failure), a build with
    none; a record that contradicts itself fails. Read from the manifest: edge-verify does not re-run it."""
    import copy
    import json
    import shutil

    from targets.verify import rewrite_lines, verify
    from tests.bundle_fixtures import cached_bundle

    src, _ = cached_bundle("conformer")  # the tiny conformer: linear_chains_2d matches (see the build test)
    bundle = Path(shutil.copytree(src, tmp_path / "b"))
    lines: list[str] = []
    assert verify(bundle, out=lines.append) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    ort_files = [a["path"] for a in manifest["artifacts"] if a["backend"] == "ort"]
    said = [ln for ln in lines if "graph rewrites" in ln]
    assert len(said) == len(ort_files) > 0
    for path, line in zip(ort_files, said):
        assert line.startswith(f"  [✓] {path}: graph rewrites linear_chains_2d x") and "check passed" in line
        assert "tolerance 0.0001" in line and "over 100 chunks" in line and "not re-run" in line

    art = next(a for a in manifest["artifacts"] if a["path"] == ort_files[0])
    route = art["conversion"]["route"]
    refused = copy.deepcopy(manifest)
    r = refused["artifacts"][manifest["artifacts"].index(art)]["conversion"]["route"]
    r["rewrites_refused"] = r.pop("rewrites")
    r["rewrite_check"].update(max_abs_diff=0.5, passed=False)
    (mark, line), = [x for x in rewrite_lines(refused) if ort_files[0] in x[1]]
    assert mark == "!" and "refused (linear_chains_2d x" in line and "max|diff| 5.00e-01" in line
    assert "unrewritten graph ships" in line

    forged = copy.deepcopy(manifest)
    forged["artifacts"][manifest["artifacts"].index(art)]["conversion"]["route"]["rewrite_check"]["max_abs_diff"] = 0.5
    (bundle / "manifest.json").write_text(json.dumps(forged))
    lines = []
    assert verify(bundle, out=lines.append) == 1  # says passed, figure over the tolerance
    assert any(ln.startswith(f"  [x] {ort_files[0]}: graph rewrites") and "contradicts" in ln for ln in lines)

    none = {"artifacts": [{"path": "encoder.fp32.ort", "conversion": {"route": {"rewrites_selected": []}}},
                          {"path": "encoder.fp32.onnx"}]}
    assert rewrite_lines(none) == [("-", "encoder.fp32.ort: no graph rewrite ran (built with --ort-rewrites none)")]
    tflite = {"artifacts": [{"path": "encoder.fp32.tflite", "conversion": {"route": {
        "rewrites": {"reversing_slice_to_gather": 1}, "rewrite_check": {"chunks": 20, "max_abs_diff": 2e-7,
                                                                        "tolerance": 1e-5}}}}]}
    (mark, line), = rewrite_lines(tflite)  # the TFLite route records no passed flag: within the tolerance is
    assert mark == "✓" and "reversing_slice_to_gather x1" in line and "tolerance 1e-05" in line
    assert route["rewrite_check"]["passed"] is True
