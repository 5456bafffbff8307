"""The ONNX rewrites that come before onnx2tf (targets/tflite/rewrite.py):
each one changes what its pattern matches and nothing else, and the
rewritten graph computes exactly what the original computes in ONNX Runtime
(the values are moved, not recomputed: tolerance 0)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from targets.tflite.rewrite import ambiguous_transposes, constant_nodes, data_start_slices, reversing_slices, rewrite

INT_MAX = np.iinfo(np.int64).max


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, n) for n, v in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _offset_slice(length_nodes):
    """y = table[:, offset - 3 : <end>] on a [1, 50, 8] table; offset a rank-0 int64 input."""
    table = np.random.default_rng(0).standard_normal((1, 50, 8)).astype(np.float32)
    nodes = [helper.make_node("Sub", ["offset", "three"], ["start0"]),
             helper.make_node("Unsqueeze", ["start0", "ax0"], ["start"]),
             *length_nodes,
             helper.make_node("Slice", ["table", "start", "end", "ax1"], ["y"])]
    inits = [("table", table), ("three", np.array(3, np.int64)), ("six", np.array(6, np.int64)),
             ("ax0", np.array([0], np.int64)), ("ax1", np.array([1], np.int64))]
    return _model(nodes, [helper.make_tensor_value_info("offset", TensorProto.INT64, [])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "n", 8])], inits)


def test_data_start_slice_of_constant_length_becomes_a_gather_with_the_same_values():
    # end = (offset - 3) + 6: the length is 6 whatever the offset
    model = _offset_slice([helper.make_node("Add", ["start0", "six"], ["end0"]),
                           helper.make_node("Unsqueeze", ["end0", "ax0"], ["end"])])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert data_start_slices(rewritten) == 1
    assert "Slice" not in {n.op_type for n in rewritten.graph.node}
    # the table is gathered as 2-D (onnx2tf transposes a 3-D constant)
    gather = next(n for n in rewritten.graph.node if n.op_type == "Gather")
    assert [len(i.dims) for i in rewritten.graph.initializer if i.name == gather.input[0]] == [2]
    for offset in (3, 4, 20, 47):  # every offset at which the Slice has its 6 rows
        feeds = {"offset": np.array(offset, np.int64)}
        want, got = _run(model, feeds)[0], _run(rewritten, feeds)[0]
        assert want.shape == (1, 6, 8) and np.array_equal(want, got), offset


def test_slice_whose_length_depends_on_data_is_left_alone():
    # end = 2 * (offset - 3): the length changes with the offset, no gather can express it
    model = _offset_slice([helper.make_node("Add", ["start0", "start0"], ["end0"]),
                           helper.make_node("Unsqueeze", ["end0", "ax0"], ["end"])])
    assert data_start_slices(model) == 0
    assert [n.op_type for n in model.graph.node].count("Slice") == 1


def test_reversing_slice_becomes_a_gather_and_keeps_its_other_axes():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 3])
    starts, ends = np.array([-1, 1], np.int64), np.array([-INT_MAX, 3], np.int64)
    axes, steps = np.array([1, 2], np.int64), np.array([-1, 1], np.int64)
    model = _model([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"]), helper.make_node("Neg", ["y"], ["z"])],
                   [x], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 5, 2])],
                   [("s", starts), ("e", ends), ("a", axes), ("t", steps)])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert reversing_slices(rewritten) == 1
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops == ["Slice", "Gather", "Neg"]  # the positive-step axis stays a (static) Slice
    feeds = {"x": np.arange(30, dtype=np.float32).reshape(2, 5, 3)}
    want, got = _run(model, feeds)[0], _run(rewritten, feeds)[0]
    assert np.array_equal(want, -feeds["x"][:, ::-1, 1:3]) and np.array_equal(want, got)
    assert reversing_slices(rewritten) == 0  # nothing left to rewrite


def test_constant_nodes_become_initializers():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    scale = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(4.0, np.float32))),
             helper.make_node("Div", ["x", "c"], ["d"]), helper.make_node("Mul", ["d", "scale"], ["y"])]
    model = _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])], [("scale", scale)])
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert constant_nodes(rewritten) == 1
    assert "Constant" not in {n.op_type for n in rewritten.graph.node}
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)}
    assert np.array_equal(_run(model, feeds)[0], _run(rewritten, feeds)[0])


def test_rewrite_reports_counts_and_resimplifies_after_slices():
    model = _offset_slice([helper.make_node("Add", ["start0", "six"], ["end0"]),
                           helper.make_node("Unsqueeze", ["end0", "ax0"], ["end"])])
    calls = []
    out, counts = rewrite(model, simplify=lambda m: calls.append(1) or m)
    assert calls == [1]
    assert counts["data_start_slice_to_gather"] == 1 and counts["reversing_slice_to_gather"] == 0
    assert counts["folded_after_slices"] == 0  # the stand-in simplifier folds nothing


def test_onnx2tf_mistranslates_a_flip_and_the_rewrite_fixes_it(tmp_path):
    """Why reversing_slices exists, on the pinned onnx2tf (1.28.8): a Slice
    with step -1 comes out of onnx2tf as something else without any error
    (measured max diff 5.1 here); after the rewrite the Keras model equals
    ONNX Runtime exactly. If a new onnx2tf translates the flip itself, the
    first assertion says so and the rewrite can be reconsidered."""
    onnx2tf = pytest.importorskip("onnx2tf")
    tf = pytest.importorskip("tensorflow")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    nodes = [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Slice", ["x2", "s", "e", "a", "t"], ["f"]),
             helper.make_node("Add", ["f", "x"], ["y"])]
    inits = [("two", np.array(2, np.float32)), ("s", np.array([-1], np.int64)), ("e", np.array([-INT_MAX], np.int64)),
             ("a", np.array([1], np.int64)), ("t", np.array([-1], np.int64))]
    model = _model(nodes, [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], inits)
    feed = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    want = _run(model, {"x": feed})[0]

    assert np.abs(_keras_output(onnx2tf, tf, model, feed, tmp_path / "as_is") - want).max() > 0.1
    rewritten, counts = rewrite(model)
    assert counts["reversing_slice_to_gather"] == 1
    assert np.array_equal(_keras_output(onnx2tf, tf, rewritten, feed, tmp_path / "rewritten"), want)


def _keras_output(onnx2tf, tf, model, feed, folder):
    """onnx2tf's Keras model of `model` (one input "x") run on `feed`."""
    folder.mkdir()
    onnx.save(model, str(folder / "m.onnx"))
    km = onnx2tf.convert(input_onnx_file_path=str(folder / "m.onnx"), output_folder_path=str(folder),
                         keep_shape_absolutely_input_names=["x"], not_use_onnxsim=True,
                         disable_model_save=True, non_verbose=True, verbosity="error")
    return np.asarray(km(tf.constant(feed)))


def _transpose_then(shape, perm, op):
    """y = op(Transpose(x, perm)); op is "Softmax", "Relu" or "Slice" (the first row of axis 0)."""
    out = [shape[p] for p in perm]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=perm)]
    inits = [("s", np.array([0], np.int64)), ("e", np.array([1], np.int64)), ("a", np.array([0], np.int64))]
    if op == "Slice":
        nodes.append(helper.make_node("Slice", ["t", "s", "e", "a"], ["y"]))
        out[0] = 1
    else:
        nodes.append(helper.make_node(op, ["t"], ["y"]))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits if op == "Slice" else ())


# icefall's attention: permute(2, 1, 0, 3) of [frames, batch, heads, dim] with 4 frames and 4 heads;
# and a shape-keeping permute read by a Softmax
AMBIGUOUS = [([4, 1, 4, 32], [2, 1, 0, 3], "Slice"), ([1, 4, 4, 8], [0, 2, 1, 3], "Softmax")]
CLEAR = [([3, 1, 4, 32], [2, 1, 0, 3], "Slice"), ([1, 4, 4, 8], [0, 2, 1, 3], "Relu"), ([1, 4, 4, 8], [0, 1, 2, 3], "Softmax")]


@pytest.mark.parametrize("shape,perm,op", AMBIGUOUS + CLEAR)
def test_only_ambiguous_transposes_get_a_unit_axis_and_values_stay_exact(shape, perm, op):
    model = _transpose_then(shape, perm, op)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    expected = 1 if (shape, perm, op) in AMBIGUOUS else 0
    assert ambiguous_transposes(rewritten) == expected
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops == (["Unsqueeze", "Transpose", "Squeeze", op] if expected else ["Transpose", op])
    feed = {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    assert np.array_equal(_run(model, feed)[0], _run(rewritten, feed)[0])


@pytest.mark.parametrize("shape,perm,op", AMBIGUOUS)
def test_onnx2tf_drops_an_ambiguous_transpose_and_the_rewrite_fixes_it(tmp_path, shape, perm, op):
    """Why ambiguous_transposes exists, on the pinned onnx2tf (1.28.8): a
    Transpose whose perm does not start with 0 is rebuilt by matching axis
    sizes, and one read by a Softmax that keeps its shape is skipped; with
    two axes of size 4 both come out as the identity, without any error
    (the 23.6 M Zipformer's outputs were off by 3.1e-3). With a leading unit
    axis the perm is applied as written."""
    onnx2tf = pytest.importorskip("onnx2tf")
    tf = pytest.importorskip("tensorflow")
    model = _transpose_then(shape, perm, op)
    feed = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = _run(model, {"x": feed})[0]
    assert np.abs(_keras_output(onnx2tf, tf, model, feed, tmp_path / "as_is") - want).max() > 1e-3
    rewritten, counts = rewrite(model)
    assert counts["ambiguous_transpose_with_unit_axis"] == 1
    # the same kernels on the same values; only Softmax's summation order may differ (float32 ulps)
    np.testing.assert_allclose(_keras_output(onnx2tf, tf, rewritten, feed, tmp_path / "rewritten"), want,
                               rtol=0, atol=1e-6)


def test_a_converters_route_report_reaches_the_manifest_record(tmp_path, monkeypatch):
    """The build's plumbing, without a real conversion: what the tflite
    adapter reports (targets.backends.Made) comes back per graph from
    convert_graphs and is written as the artifact's `conversion`."""
    from byom_models import declare_vad
    from targets.build import convert as conv
    from targets.bundle import BundleWriter

    route = {"steps": ["onnxsim", "rewrites", "onnx2tf"], "rewrites": {"reversing_slice_to_gather": 1}}

    def fake_tflite(onnx_path, graph, signature, precision, out_dir, **_options):
        dst = tmp_path / f"{graph.name}.{precision}.tflite"
        dst.write_bytes(b"tflite")
        return conv.Made([dst], {"route": route})

    monkeypatch.setitem(conv.BACKENDS, "tflite", dataclasses.replace(conv.BACKENDS["tflite"], convert=fake_tflite))
    sig = declare_vad().signature()
    files = conv.convert_graphs("tflite", "fp32", sig, {"encoder": tmp_path / "encoder.onnx"}, tmp_path)
    assert files.reports == {"encoder": {"route": route}}
    with BundleWriter(tmp_path / "bundle") as bw:
        (bw.tmp / "encoder.fp32.tflite").write_bytes(b"tflite")
        rec = bw.add_artifact("encoder.fp32.tflite", "encoder", "tflite", "fp32", {"passed": True},
                              files.reports.get("encoder"))
        plain = bw.add_artifact("encoder.fp32.tflite", "encoder", "ort", "fp32", {"passed": True})
    assert rec["conversion"]["route"] == route and "conversion" not in plain
