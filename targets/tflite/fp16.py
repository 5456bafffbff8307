"""fp16 files: weight matrices in float16, vectors and small constants back
in float32 (taken from the fp32 conversion of the same frozen graph)."""

from __future__ import annotations

import numpy as np

from .base import FP16_KEEP_FP32_VALUES


def _small_constants_back_to_fp32(fp16: bytes, fp32: bytes) -> tuple[bytes, dict]:
    """Give the fp16 model its vectors and small constants back in float32.

    The converter's float16 mode stores every float constant as FLOAT16 and
    adds a DEQUANTIZE op in front of it. For large matrices that halves the
    file at a relative error of 2**-11 per weight, and in a long dot product
    those errors average out. Vectors and small tensors save only a few KB
    and cost accuracy: a vector is often an offset (the CMVN mean, |mean| ~ 15,
    rounded to fp16 moved every normalised feature by up to 4e-3; biases shift
    every activation), and a depthwise kernel feeds 15-tap sums where nothing
    averages out. On the shipped conformer (rounding in PyTorch, 200 chunks)
    the log-probs moved by 1.5e-2 with everything fp16, 1.1e-2 with vectors
    fp32, 7.3e-3 with the depthwise kernels fp32 too (bar 1e-2).

    Each such constant (a vector, or at most FP16_KEEP_FP32_VALUES values)
    that feeds a DEQUANTIZE takes its float32 value from the fp32 conversion
    of the same frozen graph. Tensor names are not stable between two
    conversions (fused names get numeric suffixes), so the twin is found by
    value: the fp32 constant of the same shape that rounds to exactly these
    fp16 bits. Should two different fp32 constants round to the same bits, that
    constant stays fp16 (counted as ambiguous); one with no twin at all (the
    converter folded it differently, e.g. around a -inf mask) stays fp16 too
    (counted as untwinned): the parity check judges the result. The DEQUANTIZE op is dropped
    and its output becomes the float32 constant."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    m16 = flatbuffer_utils.read_model_from_bytearray(bytearray(fp16))
    m32 = flatbuffer_utils.read_model_from_bytearray(bytearray(fp32))
    twins = _fp32_twins(m32)
    dequantize = {i for i, c in enumerate(m16.operatorCodes)
                  if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    sub16 = m16.subgraphs[0]
    keep_ops, report = [], {"constants": 0, "values": 0, "ambiguous": 0}
    still_fp16 = 0  # fp16 constants left in the file (large matrices, ambiguous twins)
    for op in sub16.operators:
        outcome = _constant_back_to_fp32(m16, op, dequantize, twins) if op.opcodeIndex in dequantize else "other"
        if outcome == "replaced":
            report["constants"] += 1
            report["values"] += int(np.prod([int(d) for d in sub16.tensors[op.outputs[0]].shape]))
            continue  # the DEQUANTIZE op goes
        keep_ops.append(op)
        if outcome in ("untwinned", "ambiguous"):
            report[outcome] = report.get(outcome, 0) + 1
        still_fp16 += outcome != "other"
    sub16.operators = keep_ops
    if not still_fp16:
        # Every constant was small: nothing is worth storing in fp16, and the
        # fp16 file is the fp32 one (tiny graphs, e.g. a test decoder).
        report["all_fp32"] = True
        return fp32, report
    _drop_unused(m16)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m16)), report


def _kept_fp32(shape) -> bool:
    """A vector, or a constant of at most FP16_KEEP_FP32_VALUES values."""
    dims = [int(d) for d in shape]
    return sum(d > 1 for d in dims) <= 1 or int(np.prod(dims)) <= FP16_KEEP_FP32_VALUES


def _fp32_twins(m32) -> dict[tuple, set]:
    """(shape, fp16 bits) -> the fp32 bits of every fp32 constant that rounds to them."""
    from tensorflow.lite.python import schema_py_generated as schema

    twins: dict[tuple, set] = {}
    for t in m32.subgraphs[0].tensors:
        buf = m32.buffers[t.buffer].data
        if t.type == schema.TensorType.FLOAT32 and buf is not None and len(buf) and _kept_fp32(t.shape):
            v = np.frombuffer(bytes(buf), dtype="<f4")
            twins.setdefault((tuple(int(d) for d in t.shape), v.astype("<f2").tobytes()), set()).add(v.tobytes())
    return twins


def _constant_back_to_fp32(m16, op, dequantize: set, twins: dict) -> str:
    """For a DEQUANTIZE op: give its output the fp32 twin of its fp16 constant.
    Returns "replaced", "other" (not an fp16 constant), "large" (stays fp16),
    "untwinned" or "ambiguous" (stays fp16, counted)."""
    from tensorflow.lite.python import schema_py_generated as schema

    sub16 = m16.subgraphs[0]
    src = sub16.tensors[op.inputs[0]]
    buf = m16.buffers[src.buffer].data
    if src.type != schema.TensorType.FLOAT16 or buf is None or not len(buf):
        return "other"
    if not _kept_fp32(src.shape):
        return "large"
    found = twins.get((tuple(int(d) for d in src.shape), bytes(buf)), set())
    if not found:  # e.g. a -inf mask the converter folded differently: it stays fp16, counted
        return "untwinned"
    if len(found) > 1:
        return "ambiguous"
    new = schema.BufferT()
    new.data = np.frombuffer(next(iter(found)), dtype=np.uint8)
    m16.buffers.append(new)
    sub16.tensors[op.outputs[0]].buffer = len(m16.buffers) - 1
    src.buffer = 0  # the fp16 copy is no longer read by any op; buffer 0 is the empty one
    return "replaced"


def _drop_unused(model) -> None:
    """Remove the tensors no op refers to any more (the fp16 copies replaced by
    float32 constants) and the buffers no tensor uses, renumbering every
    reference, so the file does not carry their names and bytes."""
    if len(model.subgraphs) != 1:
        return  # renumbering across subgraphs is not needed by these graphs
    sub = model.subgraphs[0]
    live = set(int(i) for i in sub.inputs) | set(int(i) for i in sub.outputs)
    for op in sub.operators:
        live |= {int(i) for i in op.inputs if i >= 0} | {int(i) for i in op.outputs if i >= 0}
        live |= {int(i) for i in (op.intermediates if op.intermediates is not None else [])}
    for sd in model.signatureDefs or []:
        live |= {int(tm.tensorIndex) for tm in list(sd.inputs or []) + list(sd.outputs or [])}
    keep = sorted(live)
    t_new = {old: new for new, old in enumerate(keep)}
    sub.tensors = [sub.tensors[i] for i in keep]
    ref = lambda i: t_new[int(i)] if i >= 0 else int(i)  # noqa: E731 (-1: an omitted optional input)
    for op in sub.operators:
        op.inputs = [ref(i) for i in op.inputs]
        op.outputs = [ref(i) for i in op.outputs]
        if op.intermediates is not None:
            op.intermediates = [ref(i) for i in op.intermediates]
    sub.inputs = [t_new[int(i)] for i in sub.inputs]
    sub.outputs = [t_new[int(i)] for i in sub.outputs]
    for sd in model.signatureDefs or []:
        for tm in list(sd.inputs or []) + list(sd.outputs or []):
            tm.tensorIndex = t_new[int(tm.tensorIndex)]
    used_b = {0} | {int(t.buffer) for t in sub.tensors} | {int(md.buffer) for md in (model.metadata or [])}
    keep_b = sorted(used_b)
    b_new = {old: new for new, old in enumerate(keep_b)}
    model.buffers = [model.buffers[i] for i in keep_b]
    for t in sub.tensors:
        t.buffer = b_new[int(t.buffer)]
    for md in model.metadata or []:
        md.buffer = b_new[int(md.buffer)]
