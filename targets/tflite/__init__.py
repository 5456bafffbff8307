"""LiteRT (TFLite) target via onnx2tf.

`onnx_to_tflite(onnx_path, graph, out_dir, signature=sig)` writes
`<graph>.<precision>.tflite` whose one signature ("serving_default") has
exactly the GraphSpec's input and output names, shapes and dtypes, so a
client feeds it by name without any map (the model's Signature is what the
check of the ONNX rewrites rolls out over).
`runner(path, graph)` drives a file through its signature runner.

One module per concern:
- convert.py   the caller's side: the job, the child process, its report;
- guard.py     the child process under memory and time limits;
- worker.py    in the child: onnxsim, onnx2tf, the wrapping tf.function, freezing;
- rewrite.py   generic ONNX rewrites onnx2tf needs for attention models (a
               data-start Slice and a reversing Slice become Gathers, ...);
- prepare.py   applies them and checks the result against the simplified graph
               in ONNX Runtime (targets.parity.rollout_check, the .ort route's
               check too); the route goes into the manifest;
- io_names.py  output layouts and the signature's names, proven against ONNX;
- quantize.py  converter settings per precision (fp32, fp16, int8: dynamic
               range; full-integer as an option, calibrated by targets/calibration.py);
- fp16.py      vectors and small constants back to float32 in fp16 files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime_py.backends import open_runner
from runtime_py.signature import GraphSpec
from ..common import require
from ..conversion_errors import dynamic_shape_note
from .base import FP16_KEEP_FP32_VALUES, PRECISIONS, SIGNATURE_KEY, TfliteConversionError
from .convert import convert_graph, onnx_to_tflite
from .fp16 import _small_constants_back_to_fp32
from .guard import CONVERT_MAX_GB, CONVERT_MAX_S, run_guarded

__all__ = ["CONVERT_MAX_GB", "CONVERT_MAX_S", "FP16_KEEP_FP32_VALUES", "PRECISIONS", "SIGNATURE_KEY",
           "TfliteConversionError", "convert_graph", "dynamic_shape_note", "onnx_to_tflite",
           "quantized_tensor_count", "run_guarded", "runner", "_small_constants_back_to_fp32"]


def runner(path: Path | str, graph: GraphSpec, threads: int = 1):
    """The client's runner (runtime_py.backends) in strict mode: the file must
    carry SIGNATURE_KEY with exactly the signature's names and shapes."""
    require("ai_edge_litert.interpreter", "litert")  # the extra's name in the error
    return open_runner(path, graph, "tflite", threads, strict=True)


def quantized_tensor_count(path: Path | str) -> int:
    """int8 tensors in a .tflite file (0: dynamic-range quantisation found nothing to quantise)."""
    require("ai_edge_litert.interpreter", "litert")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return sum(1 for t in it.get_tensor_details() if np.dtype(t["dtype"]) == np.int8)
