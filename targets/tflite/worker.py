"""The conversion itself, run in a child process (`python -m
targets.tflite.worker JOB`): TensorFlow stays out of the caller, and its
console output is captured.

The ONNX graph is simplified with onnxsim and rewritten where onnx2tf would
fail or mistranslate (prepare.py, rewrite.py), onnx2tf builds the Keras model
(every input kept as is: `keep_shape_absolutely_input_names`), and a thin
tf.function wraps it: inputs by signature name and dtype, outputs returned by
signature name, transposed back where onnx2tf changed their layout
(io_names.py). The frozen function goes through the TFLite converter once per
precision (quantize.py); fp16 gets its small constants back in float32
(fp16.py)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from .base import PRECISIONS, TfliteConversionError
from .fp16 import _small_constants_back_to_fp32
from .io_names import _find_permutation, _set_signature
from .prepare import rewritten, simplify, start_feeds
from .quantize import tflite_bytes

_TF_DTYPES = {"float32": "float32", "int64": "int64", "int32": "int32", "bool": "bool"}


def _simplify(onnx_file: str, name: str, tmp: Path) -> Path:
    import onnx

    sim_path = tmp / f"{name}.onnx"
    onnx.save(simplify(onnx.load(onnx_file), "simplified graph"), str(sim_path))
    return sim_path


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _onnx2tf(sim_path: Path, g: dict, tmp: Path):
    import onnx2tf

    return onnx2tf.convert(
        input_onnx_file_path=str(sim_path), output_folder_path=str(tmp / "onnx2tf"),
        keep_shape_absolutely_input_names=[n for n, _, _ in g["inputs"]],
        not_use_onnxsim=True, disable_model_save=True, non_verbose=True, verbosity="error")


def _onnx_outputs(sim_path: Path, g: dict, feeds: dict) -> list:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(sim_path), so, providers=["CPUExecutionProvider"])
    return sess.run([n for n, _, _ in g["outputs"]], feeds)


def _probe(g: dict, sim_path: Path) -> tuple[dict, list]:
    """Random inputs (float states too, so every axis carries distinct values;
    integer states at their initial values, as a position counter needs) and
    onnxruntime's outputs for them: the reference for layouts and names."""
    feeds = start_feeds(g, np.random.default_rng(0), random_float_states=True)
    return feeds, _onnx_outputs(sim_path, g, feeds)


def _output_layouts(keras_model, g: dict, feeds: dict, ref: list) -> tuple[list, dict]:
    """The Keras inputs' dtypes, and per output the permutation that gives
    back the ONNX layout (None where it already is)."""
    import tensorflow as tf

    k_inputs = keras_model.inputs
    if len(k_inputs) != len(g["inputs"]):
        raise TfliteConversionError(f"onnx2tf model has {len(k_inputs)} inputs, signature {len(g['inputs'])}")
    k_dtypes = [t.dtype for t in k_inputs]
    got = keras_model([tf.constant(feeds[n], dtype=d) for (n, _, _), d in zip(g["inputs"], k_dtypes)])
    got = [np.asarray(o) for o in (got if isinstance(got, (list, tuple)) else [got])]
    if len(got) != len(g["outputs"]):
        raise TfliteConversionError(f"onnx2tf model has {len(got)} outputs, signature {len(g['outputs'])}")
    return k_dtypes, {name: _find_permutation(o, r) for (name, _, _), o, r in zip(g["outputs"], got, ref)}


def _serve(keras_model, out_specs: list, k_dtypes: list, perms: dict, *args):
    """The wrapped function: signature dtypes in, signature names and layouts out."""
    import tensorflow as tf

    xs = [tf.cast(a, d) if a.dtype != d else a for a, d in zip(args, k_dtypes)]
    ys = keras_model(xs)
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


def _serving_module(keras_model, g: dict, k_dtypes: list, perms: dict):
    """A tf.Module holding the Keras model and the wrapped tf.function `serve`."""
    import tensorflow as tf

    specs = [tf.TensorSpec(shape, getattr(tf, _TF_DTYPES[dtype]), name=name) for name, shape, dtype in g["inputs"]]
    module = tf.Module()
    module.m = keras_model
    serve = functools.partial(_serve, keras_model, g["outputs"], k_dtypes, perms)
    serve.__name__ = "serve"  # the function's name in the converted graph, as a method's would be
    module.serve = tf.function(serve, input_signature=specs, autograph=False)
    return module


def _freeze(module):
    """onnx2tf creates some tf.Variables outside any Keras layer (e.g. the
    depthwise conv kernel, named "/conv/..."), which neither a SavedModel nor
    the converter's signature export can track: freeze them into constants."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(module.serve.get_concrete_function())


def _load_calibration(job: dict) -> list[dict] | None:
    if not job.get("calibration"):
        return None
    with np.load(job["calibration"], allow_pickle=False) as z:
        n = int(z["count"])
        return [{name: z[f"{i}/{name}"] for name, _, _ in job["graph"]["inputs"]} for i in range(n)]


def _write_precisions(job: dict, frozen, module, probe: tuple[dict, list], timings: dict,
                      sim_path: Path) -> dict:
    """Convert and write each requested precision; returns the fp16 report."""
    g = job["graph"]
    names = [n for n, _, _ in g["inputs"]]
    calibration = _load_calibration(job)
    if calibration:  # full-integer activations hold only calibrated ranges: probe with real speech
        real = calibration[len(calibration) // 2]
        real_probe = (real, _onnx_outputs(sim_path, g, real))
    fp32, kept = None, {}
    for precision in sorted(job["out"], key=PRECISIONS.index):  # fp32 first: fp16 takes its vectors
        t0 = time.perf_counter()
        data = tflite_bytes(frozen, module, precision, calibration, names, job.get("full_integer"))
        if precision == "fp32":
            fp32 = data
        elif precision == "fp16":
            data, kept = _small_constants_back_to_fp32(
                data, fp32 if fp32 is not None else tflite_bytes(frozen, module, "fp32"))
        full_integer = bool(calibration) and precision == "int8"
        feeds, ref = real_probe if full_integer else probe
        # int8 (either scheme) is proved by nearest match, not allclose(0.1): on the random probe inputs the
        # Silero VAD's dynamic-range LSTM state was off by 0.19 (relative 0.029; 0.029 on speech too).
        Path(job["out"][precision]).write_bytes(_set_signature(data, g, feeds, ref, exact=precision != "int8"))
        timings[f"tflite_{precision}_s"] = round(time.perf_counter() - t0, 2)
    return kept


def _signature(job: dict):
    """The model's Signature, sent as JSON (this process gets no Python objects), or None."""
    from runtime_py.signature import Signature

    return Signature.from_dict(job["signature"]) if job.get("signature") else None


def convert(job: dict) -> dict:
    g = job["graph"]
    tmp = Path(job["tmp"])
    log = io.StringIO()
    timings = {}
    t0 = time.perf_counter()
    sim_path = _simplify(job["onnx"], g["name"], tmp)
    timings["onnxsim_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    tf_input, route = rewritten(sim_path, g, tmp, _signature(job))
    timings["rewrite_s"] = round(time.perf_counter() - t0, 2)
    with contextlib.redirect_stdout(log):
        t0 = time.perf_counter()
        keras_model = _onnx2tf(tf_input, g, tmp)
        timings["onnx2tf_s"] = round(time.perf_counter() - t0, 2)
    feeds, ref = _probe(g, sim_path)
    k_dtypes, perms = _output_layouts(keras_model, g, feeds, ref)
    module = _serving_module(keras_model, g, k_dtypes, perms)
    with contextlib.redirect_stdout(log):
        frozen = _freeze(module)
        kept = _write_precisions(job, frozen, module, (feeds, ref), timings, sim_path)
    return {"timings": timings, "permutations": {k: v for k, v in perms.items() if v is not None},
            "route": {"steps": ["onnxsim", "rewrites", "onnx2tf"], "onnx2tf": _version("onnx2tf"), **route},
            **({"fp16_constants_kept_fp32": kept} if kept else {})}


if __name__ == "__main__":
    _job = json.loads(sys.argv[1])
    (Path(_job["tmp"]) / "result.json").write_text(json.dumps(convert(_job)))
