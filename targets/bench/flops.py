"""FLOPs of the exported graphs, the machine's matmul peak, and the int8
ceiling experiment (how much dynamic int8 can speed up a graph's weight
matmuls at the shapes one step calls them with).

FLOPs: multiply-accumulates counted analytically from the exported fp32 ONNX
graphs (MatMul/Gemm/Conv/LSTM/GRU shapes after onnx shape inference), times
the number of calls of each graph in a pass, times 2. Cross-checked with
torch.utils.flop_counter.FlopCounterMode on the PyTorch encoder step. The
machine's peak is a 512x512 fp32 matmul in torch at 1 thread.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np


def _graph_shapes(path):
    """(graph, {tensor name: static shape}) of an ONNX file, after shape inference."""
    import onnx
    from onnx import numpy_helper, shape_inference

    g = shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    for node in g.node:  # Constant nodes feeding a MatMul
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(numpy_helper.to_array(a.t).shape)
    return g, shapes


def onnx_macs(path) -> int:
    """Multiply-accumulates of one call of an ONNX graph, from its shapes:
    MatMul, Gemm, Conv, LSTM, GRU (element-wise ops, softmax, norms are not
    counted: they are a few % here and not matmul-bound)."""
    import onnx

    g, shapes = _graph_shapes(path)
    total = 0
    for node in g.node:
        op = node.op_type
        s = lambda name: shapes.get(name)  # noqa: E731
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "MatMul":
            a, y = s(node.input[0]), s(node.output[0])
            if a and y is not None:
                total += int(np.prod(y)) * a[-1]
        elif op == "Gemm":
            a, y = s(node.input[0]), s(node.output[0])
            if a and y:
                k = a[0] if attrs.get("transA", 0) else a[1]
                total += int(np.prod(y)) * k
        elif op == "Conv":
            w, y = s(node.input[1]), s(node.output[0])
            if w and y:
                total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif op in ("LSTM", "GRU"):
            x, w, r = s(node.input[0]), s(node.input[1]), s(node.input[2])
            if x and w and r:
                layout = attrs.get("layout", 0)
                seq, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
                total += seq * batch * w[0] * w[1] * (w[2] + r[2])
    return int(total)


def int8_matmul_ceiling(path, rounds: int = 7, calls: int = 200) -> dict | None:
    """How much dynamic int8 can speed up this graph's weight matmuls at the
    shapes one step calls them with (e.g. 8 rows for a conformer chunk).

    Every MatMul/Gemm with a weight initializer is copied, with its weight and
    its own input shape, into a graph of independent MatMuls; that graph runs
    in ONNX Runtime (1 thread) as fp32 and as dynamic int8 (targets.ort's
    quantize_int8, as the .ort int8 artifact), interleaved, medians of `rounds`. The rest of
    a step (norms, softmax, concat/slice of caches) is the same in both
    precisions, so the ratio here bounds what int8 can give the whole step.
    None for a graph with recurrent ops: int8 quantises LSTM weights too
    (targets.ort.INT8_OP_TYPES), so matmuls alone would bound nothing."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from targets.ort import quantize_int8

    g, shapes = _graph_shapes(path)
    if any(n.op_type in ("LSTM", "GRU", "RNN") for n in g.node):
        return None
    inits = {i.name: i for i in g.initializer}
    nodes, inputs, outputs, weights, in_shapes = [], [], [], [], []
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in inits:
            continue
        a = shapes.get(node.input[0])
        w = numpy_helper.to_array(inits[node.input[1]])
        if not a or w.ndim != 2:
            continue
        if node.op_type == "Gemm":
            attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            if attrs.get("transA", 0):
                continue
            w = w.T if attrs.get("transB", 0) else w
        k = len(nodes)
        weights.append(numpy_helper.from_array(np.ascontiguousarray(w), f"w{k}"))
        in_shapes.append(a)
        inputs.append(helper.make_tensor_value_info(f"x{k}", onnx.TensorProto.FLOAT, a))
        outputs.append(helper.make_tensor_value_info(f"y{k}", onnx.TensorProto.FLOAT, a[:-1] + [w.shape[1]]))
        nodes.append(helper.make_node("MatMul", [f"x{k}", f"w{k}"], [f"y{k}"]))
    if not nodes:
        return None
    model = helper.make_model(helper.make_graph(nodes, "matmuls", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rng = np.random.default_rng(0)
    feeds = {f"x{k}": rng.standard_normal(a).astype(np.float32) for k, a in enumerate(in_shapes)}
    with tempfile.TemporaryDirectory(prefix="edge-int8-ceiling-") as tmp:
        f32, q8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(f32))
        quantize_int8(f32, q8)  # the .ort int8 artifact's settings
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        sess = {p: ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
                for p, f in (("fp32", f32), ("int8", q8))}
        times = {p: [] for p in sess}
        for _ in range(rounds):
            for p, s in sess.items():
                s.run(None, feeds)
                t0 = time.perf_counter()
                for _ in range(calls):
                    s.run(None, feeds)
                times[p].append((time.perf_counter() - t0) / calls)
    med = {p: float(np.median(t)) for p, t in times.items()}
    rows = sorted({int(np.prod(a[:-1])) for a in in_shapes})
    return {"matmuls": len(nodes), "rows_per_call": rows, "fp32_ms": med["fp32"] * 1e3,
            "int8_ms": med["int8"] * 1e3, "ratio": med["fp32"] / med["int8"]}


def torch_step_flops(model, graph) -> int | None:
    """FLOPs of one PyTorch call of a graph (FlopCounterMode: mm/bmm/addmm/conv)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from edge.export import example_inputs

        module = model.graph_module(graph.name).eval()
        feeds = example_inputs(graph, model.signature())
        args = [torch.from_numpy(feeds[n]) for n in graph.input_names]
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            module(*args)
        return int(fc.get_total_flops())
    except Exception:  # noqa: BLE001 - a cross-check only
        return None


def matmul_peak_gflops(n: int = 512, seconds: float = 0.5) -> float:
    """Best-of fp32 GFLOP/s of an n x n matmul in torch at 1 thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        for _ in range(3):
            torch.mm(a, b, out=c)
        best, t_end = math.inf, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b, out=c)
            best = min(best, (time.perf_counter() - t0) / 4)
        return 2 * n ** 3 / best / 1e9
    finally:
        torch.set_num_threads(before)


