"""LiteRT (TFLite) target via onnx2tf.

`onnx_to_tflite(onnx_path, graph, out_dir)` writes `<graph>.<precision>.tflite`
whose one signature ("serving_default") has exactly the GraphSpec's input and
output names, shapes and dtypes, so a client feeds it by name without any map.

How: in a subprocess (TensorFlow stays out of the caller, and its console
output is captured), the ONNX graph is simplified with onnxsim, onnx2tf builds
the Keras model (every input kept as is: `keep_shape_absolutely_input_names`),
and a thin tf.function wraps it: inputs by signature name and dtype, outputs
returned by signature name. onnx2tf may hand some outputs back in another
layout (e.g. the LSTM states batch-major); the permutation is found by
running onnxruntime and the Keras model on the same random inputs, and the
wrapper transposes back. The TFLite converter then writes each precision:
- fp32: plain;
- fp16: weight matrices stored in float16 (dequantised on CPU, native on
  GPU); vectors (biases, norm scales, the CMVN mean and scale) and small
  tensors (at most FP16_KEEP_FP32_VALUES values, e.g. depthwise kernels) stay
  float32, see _small_constants_back_to_fp32: they are a few KB, and the
  fp16 CMVN mean alone shifted every input feature by up to 4e-3;
- int8: dynamic-range quantisation (int8 weights, float activations). It
  needs no calibration, keeps the float I/O and states, and runs on every
  LiteRT CPU build; full-integer quantisation of recurrent states would put
  quantisation error into the state loop itself.

`runner(path, graph)` drives a file through its signature runner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime_py.backends import TFLITE_SIGNATURE, open_runner
from runtime_py.signature import GraphSpec
from .common import ensure_installed, require

PRECISIONS = ("fp32", "fp16", "int8")
# fp16 files keep constants of at most this many values in float32 (and every
# vector): they save a few KB as fp16 but cost accuracy (see
# _small_constants_back_to_fp32). 4096 covers the conformer's depthwise
# kernels (96 x 15) and position bias, not its 96 x 96 and larger matrices.
FP16_KEEP_FP32_VALUES = 4096
SIGNATURE_KEY = TFLITE_SIGNATURE  # one definition: the client's runner looks for it
_REPO_ROOT = Path(__file__).resolve().parent.parent


class TfliteConversionError(RuntimeError):
    pass


def onnx_to_tflite(onnx_path: Path | str, graph: GraphSpec, out_dir: Path | str,
                   precisions=PRECISIONS, calibration: list[dict] | None = None) -> dict[str, Path]:
    """Convert `<graph>.onnx` to `<out_dir>/<graph>.<precision>.tflite`.

    `calibration` is accepted for API symmetry with full-integer schemes but
    not needed: int8 here is dynamic-range quantisation (see module doc).
    Returns {precision: path}; the conversion time is in `.timings`."""
    for mod in ("onnx2tf", "tensorflow", "onnxsim"):
        ensure_installed(mod, "tflite")  # imported in the worker, not here
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"TFLite precisions {bad} not in {PRECISIONS}")
    del calibration  # dynamic-range int8 needs none
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "onnx": str(Path(onnx_path).resolve()),
        "graph": {"name": graph.name,
                  "inputs": [[t.name, list(t.shape), t.dtype] for t in graph.all_inputs()],
                  "outputs": [[t.name, list(t.shape), t.dtype] for t in graph.all_outputs()]},
        "out": {p: str((out_dir / f"{graph.name}.{p}.tflite").resolve()) for p in precisions},
    }
    with tempfile.TemporaryDirectory(prefix="edge-tflite-") as tmp:
        job["tmp"] = tmp
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("OMP_NUM_THREADS", "1")
        # onnx2tf shells out to tools installed next to the interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        t0 = time.perf_counter()
        rc, out = run_guarded([sys.executable, "-m", "targets.tflite", json.dumps(job)], cwd=tmp, env=env,
                              what=f"onnx2tf conversion of graph {graph.name!r}")
        elapsed = time.perf_counter() - t0
        if rc != 0:
            raise TfliteConversionError(f"onnx2tf conversion of graph {graph.name!r} failed:\n{out[-6000:]}"
                                        + dynamic_shape_note(onnx_path))
        report = json.loads((Path(tmp) / "result.json").read_text())
    result = _PathDict({p: Path(job["out"][p]) for p in precisions})
    result.timings = {"total_s": round(elapsed, 2), **report["timings"]}
    result.permutations = report["permutations"]
    result.fp16_constants_kept_fp32 = report.get("fp16_constants_kept_fp32", {})
    return result


# A converter must never take the machine down: onnx2tf's automatic retries
# have grown past 24 GB on a graph it could not convert. Limits per conversion,
# overridable by the environment for a bigger machine.
CONVERT_MAX_GB = float(os.environ.get("EDGE_CONVERT_MAX_GB", "10"))
CONVERT_MAX_S = float(os.environ.get("EDGE_CONVERT_MAX_S", "1200"))


def run_guarded(cmd: list, cwd, env, what: str, max_gb: float | None = None,
                max_s: float | None = None) -> tuple[int, str]:
    """Run a converter subprocess; kill its whole tree past `max_gb` resident
    memory or `max_s` seconds (TfliteConversionError saying which limit)."""
    import signal

    import psutil

    max_gb = CONVERT_MAX_GB if max_gb is None else max_gb
    max_s = CONVERT_MAX_S if max_s is None else max_s
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        t0, peak, why = time.perf_counter(), 0.0, None
        while proc.poll() is None:
            try:
                root = psutil.Process(proc.pid)
                rss = sum(p.memory_info().rss for p in [root] + root.children(recursive=True)) / 2 ** 30
            except psutil.Error:
                rss = 0.0
            peak = max(peak, rss)
            if rss > max_gb:
                why = f"used {rss:.1f} GB of memory (limit {max_gb:g} GB, EDGE_CONVERT_MAX_GB)"
            elif time.perf_counter() - t0 > max_s:
                why = f"ran past {max_s:.0f} s (limit EDGE_CONVERT_MAX_S)"
            if why:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise TfliteConversionError(f"{what} stopped: it {why}; the converter was killed")
            time.sleep(0.25)
        log.seek(0)
        return proc.returncode, log.read()


def dynamic_shape_note(onnx_path: Path | str) -> str:
    """Every input shape is fixed, so a node whose output shape inference
    cannot fix is data-dependent (a Slice or Gather by a computed index, a
    Range, a NonZero): converters that need static shapes fail near it."""
    try:
        import onnx

        model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    except Exception:  # noqa: BLE001 - a diagnostic must not hide the real error
        return ""
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    dynamic = []
    for node in model.graph.node:
        for out in node.output:
            v = known.get(out)
            dims = v.type.tensor_type.shape.dim if v is not None else None
            if dims is not None and any(not d.HasField("dim_value") for d in dims):
                dynamic.append(f"{node.op_type} {node.name or out}")
                break
    if not dynamic:
        return ""
    return (f"\n  data-dependent shapes: {len(dynamic)} node(s) have an output shape that shape inference "
            f"cannot fix, first: {', '.join(dynamic[:3])}")


def quantized_tensor_count(path: Path | str) -> int:
    """int8 tensors in a .tflite file (0: dynamic-range quantisation found nothing to quantise)."""
    require("ai_edge_litert.interpreter", "litert")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return sum(1 for t in it.get_tensor_details() if np.dtype(t["dtype"]) == np.int8)


class _PathDict(dict):
    timings: dict = {}
    permutations: dict = {}
    fp16_constants_kept_fp32: dict = {}


# -- running ------------------------------------------------------------------

def runner(path: Path | str, graph: GraphSpec, threads: int = 1):
    """The client's runner (runtime_py.backends) in strict mode: the file must
    carry SIGNATURE_KEY with exactly the signature's names and shapes."""
    require("ai_edge_litert.interpreter", "litert")  # the extra's name in the error
    return open_runner(path, graph, "tflite", threads, strict=True)


# -- the conversion worker (runs in a subprocess) ------------------------------

_TF_DTYPES = {"float32": "float32", "int64": "int64", "int32": "int32", "bool": "bool"}


def _find_permutation(got: np.ndarray, want: np.ndarray):
    """Axes permutation p with transpose(got, p) == want (numerically)."""
    import itertools

    if got.shape == want.shape and np.allclose(got, want, rtol=1e-3, atol=1e-3):
        return None
    if got.ndim == want.ndim:
        for p in itertools.permutations(range(got.ndim)):
            if tuple(got.shape[i] for i in p) == want.shape and np.allclose(
                    np.transpose(got, p), want, rtol=1e-3, atol=1e-3):
                return list(p)
    if got.size == want.size and np.allclose(got.reshape(want.shape), want, rtol=1e-3, atol=1e-3):
        return "reshape"
    raise TfliteConversionError(
        f"no layout of onnx2tf's output {got.shape} matches the ONNX output {want.shape}")


def _set_signature(flatbuffer: bytes, g: dict, feeds: dict, ref: list) -> bytes:
    """Write the "serving_default" SignatureDef with the signature's names.
    The converter keeps its own for some graphs (inputs re-sorted, named
    `serving_default_<name>:0`, outputs `output_<k>`) and drops it for others
    (the conformer's). Inputs are mapped by name, outputs by the wrapper's
    tuple order, and the result is checked numerically against ONNX."""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    sub = model.subgraphs[0]

    def tensor_name(i: int) -> str:
        n = sub.tensors[i].name
        n = n.decode() if isinstance(n, bytes) else n
        n = n.split(":")[0]
        return n[len(SIGNATURE_KEY) + 1:] if n.startswith(SIGNATURE_KEY + "_") else n

    by_name = {tensor_name(i): int(i) for i in sub.inputs}
    want = [n for n, _, _ in g["inputs"]]
    if sorted(by_name) != sorted(want):
        raise TfliteConversionError(f"TFLite inputs {sorted(by_name)} are not the signature's {want}")
    n_out = len(g["outputs"])
    if len(sub.outputs) != n_out:
        raise TfliteConversionError(f"TFLite has {len(sub.outputs)} outputs, signature {n_out}")
    out_idx = [int(i) for i in sub.outputs]  # the wrapper's tuple order
    if model.signatureDefs:  # the converter's own: outputs named output_<k>
        kept = {(tm.name.decode() if isinstance(tm.name, bytes) else tm.name): tm.tensorIndex
                for tm in model.signatureDefs[0].outputs}
        if sorted(kept) != sorted(f"output_{k}" for k in range(n_out)):
            raise TfliteConversionError(f"unexpected converter signature outputs {sorted(kept)}")
        out_idx = [int(kept[f"output_{k}"]) for k in range(n_out)]
    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = [schema.TensorMapT() for _ in want]
    for tm, name in zip(sig.inputs, want):
        tm.name, tm.tensorIndex = name, by_name[name]
    sig.outputs = [schema.TensorMapT() for _ in g["outputs"]]
    for tm, (name, _, _), idx in zip(sig.outputs, g["outputs"], out_idx):
        tm.name, tm.tensorIndex = name, idx
    model.signatureDefs = [sig]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    # Outputs are matched by position: prove it on the probe inputs (loose
    # tolerance, this also runs for fp16/int8; a swap is off by O(1)).
    it = Interpreter(model_content=data, num_threads=1)
    res = it.get_signature_runner(SIGNATURE_KEY)(**{n: feeds[n] for n in want})
    for (name, shape, _), r in zip(g["outputs"], ref):
        got = np.asarray(res[name])
        if got.shape != tuple(shape) or not np.allclose(got, r, atol=0.1, rtol=0.1):
            raise TfliteConversionError(f"TFLite output {name!r} does not match ONNX on the probe input")
    return data


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

    def read(data: bytes):
        return flatbuffer_utils.read_model_from_bytearray(bytearray(data))

    def keep(shape) -> bool:
        dims = [int(d) for d in shape]
        return sum(d > 1 for d in dims) <= 1 or int(np.prod(dims)) <= FP16_KEEP_FP32_VALUES

    m16, m32 = read(fp16), read(fp32)
    sub16, sub32 = m16.subgraphs[0], m32.subgraphs[0]
    twins: dict[tuple, set] = {}  # (shape, fp16 bits) -> fp32 bits of every fp32 constant rounding to them
    for t in sub32.tensors:
        buf = m32.buffers[t.buffer].data
        if t.type == schema.TensorType.FLOAT32 and buf is not None and len(buf) and keep(t.shape):
            v = np.frombuffer(bytes(buf), dtype="<f4")
            twins.setdefault((tuple(int(d) for d in t.shape), v.astype("<f2").tobytes()), set()).add(v.tobytes())
    dequantize = {i for i, c in enumerate(m16.operatorCodes)
                  if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    keep_ops, report = [], {"constants": 0, "values": 0, "ambiguous": 0}
    still_fp16 = 0  # fp16 constants left in the file (large matrices, ambiguous twins)
    for op in sub16.operators:
        src = sub16.tensors[op.inputs[0]] if op.opcodeIndex in dequantize else None
        buf = m16.buffers[src.buffer].data if src is not None else None
        if src is None or src.type != schema.TensorType.FLOAT16 or buf is None or not len(buf):
            keep_ops.append(op)
            continue
        if not keep(src.shape):
            still_fp16 += 1
            keep_ops.append(op)
            continue
        found = twins.get((tuple(int(d) for d in src.shape), bytes(buf)), set())
        if not found:  # e.g. a -inf mask the converter folded differently: it stays fp16, counted
            report["untwinned"] = report.get("untwinned", 0) + 1
            still_fp16 += 1
            keep_ops.append(op)
            continue
        if len(found) > 1:
            report["ambiguous"] += 1
            still_fp16 += 1
            keep_ops.append(op)
            continue
        new = schema.BufferT()
        new.data = np.frombuffer(next(iter(found)), dtype=np.uint8)
        m16.buffers.append(new)
        sub16.tensors[op.outputs[0]].buffer = len(m16.buffers) - 1
        src.buffer = 0  # the fp16 copy is no longer read by any op; buffer 0 is the empty one
        report["constants"] += 1
        report["values"] += len(buf) // 2
    sub16.operators = keep_ops
    if not still_fp16:
        # Every constant was small: nothing is worth storing in fp16, and the
        # fp16 file is the fp32 one (tiny graphs, e.g. a test decoder).
        report["all_fp32"] = True
        return fp32, report
    _drop_unused(m16)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m16)), report


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


def _worker(job: dict) -> dict:
    import contextlib
    import io

    import onnx
    import onnxruntime as ort
    import onnxsim

    timings = {}
    g = job["graph"]
    tmp = Path(job["tmp"])
    log = io.StringIO()
    t0 = time.perf_counter()
    model = onnx.load(job["onnx"])
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise TfliteConversionError("onnxsim could not validate the simplified graph")
    sim_path = tmp / f"{g['name']}.onnx"
    onnx.save(simplified, str(sim_path))
    timings["onnxsim_s"] = round(time.perf_counter() - t0, 2)

    with contextlib.redirect_stdout(log):
        import onnx2tf
        import tensorflow as tf

        t0 = time.perf_counter()
        keras_model = onnx2tf.convert(
            input_onnx_file_path=str(sim_path), output_folder_path=str(tmp / "onnx2tf"),
            keep_shape_absolutely_input_names=[n for n, _, _ in g["inputs"]],
            not_use_onnxsim=True, disable_model_save=True, non_verbose=True, verbosity="error")
        timings["onnx2tf_s"] = round(time.perf_counter() - t0, 2)

    # Random inputs (states too, so every axis carries distinct values) to
    # find how onnx2tf laid out each output.
    rng = np.random.default_rng(0)
    feeds = {}
    for name, shape, dtype in g["inputs"]:
        feeds[name] = (rng.integers(0, 2, size=shape).astype(dtype) if dtype.startswith("int")
                       else rng.standard_normal(shape).astype(np.float32))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(sim_path), so, providers=["CPUExecutionProvider"])
    ref = sess.run([n for n, _, _ in g["outputs"]], feeds)

    k_inputs = keras_model.inputs
    if len(k_inputs) != len(g["inputs"]):
        raise TfliteConversionError(f"onnx2tf model has {len(k_inputs)} inputs, signature {len(g['inputs'])}")
    k_dtypes = [t.dtype for t in k_inputs]
    got = keras_model([tf.constant(feeds[n], dtype=d) for (n, _, _), d in zip(g["inputs"], k_dtypes)])
    got = [np.asarray(o) for o in (got if isinstance(got, (list, tuple)) else [got])]
    if len(got) != len(g["outputs"]):
        raise TfliteConversionError(f"onnx2tf model has {len(got)} outputs, signature {len(g['outputs'])}")
    perms = {name: _find_permutation(o, r) for (name, _, _), o, r in zip(g["outputs"], got, ref)}

    specs = [tf.TensorSpec(shape, getattr(tf, _TF_DTYPES[dtype]), name=name) for name, shape, dtype in g["inputs"]]
    out_specs = g["outputs"]

    class Wrapped(tf.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        @tf.function(input_signature=specs, autograph=False)
        def serve(self, *args):
            xs = [tf.cast(a, d) if a.dtype != d else a for a, d in zip(args, k_dtypes)]
            ys = self.m(xs)
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            result = []
            for (name, shape, dtype), y in zip(out_specs, ys):
                p = perms[name]
                if p == "reshape":
                    y = tf.reshape(y, shape)
                elif p is not None:
                    y = tf.transpose(y, p)
                want = getattr(tf, _TF_DTYPES[dtype])
                result.append(tf.identity(tf.cast(y, want) if y.dtype != want else y, name=name))
            return tuple(result)  # signature order: the subgraph's outputs keep it

    wrapped = Wrapped(keras_model)
    with contextlib.redirect_stdout(log):
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        # Freeze: onnx2tf creates some tf.Variables outside any Keras layer
        # (e.g. the depthwise conv kernel, named "/conv/..."), which neither
        # a SavedModel nor the converter's signature export can track.
        frozen = convert_variables_to_constants_v2(wrapped.serve.get_concrete_function())
        def convert(precision: str) -> bytes:
            # With a trackable object the converter writes the function as the
            # "serving_default" signature, with its input and output names.
            conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen], wrapped)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if precision == "fp16":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.target_spec.supported_types = [tf.float16]
            elif precision == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            return conv.convert()

        fp32 = None
        kept = {}
        for precision in sorted(job["out"], key=PRECISIONS.index):  # fp32 first: fp16 takes its vectors
            t0 = time.perf_counter()
            data = convert(precision)
            if precision == "fp32":
                fp32 = data
            elif precision == "fp16":
                data, kept = _small_constants_back_to_fp32(data, fp32 if fp32 is not None else convert("fp32"))
            Path(job["out"][precision]).write_bytes(_set_signature(data, g, feeds, ref))
            timings[f"tflite_{precision}_s"] = round(time.perf_counter() - t0, 2)
    return {"timings": timings, "permutations": {k: v for k, v in perms.items() if v is not None},
            **({"fp16_constants_kept_fp32": kept} if kept else {})}


if __name__ == "__main__":
    _job = json.loads(sys.argv[1])
    (Path(_job["tmp"]) / "result.json").write_text(json.dumps(_worker(_job)))
