"""The int8 recipe of the ORT branch, chosen by measurement (issue 13).

Recipe "conv-static+matmul-dynamic":
1. Conv: static QDQ int8 (per-channel int8 weights, uint8 activations with
   ranges calibrated by MinMax on real speech), fused by ONNX Runtime into
   QLinearConv when the .ort is written.
2. MatMul/Gemm/LSTM: dynamic int8 as before (targets.ort.quantize_int8:
   per-tensor int8 weights, activations quantised per call).

Why this split (the 23.6 M streaming Zipformer2 encoder, 1 thread, paired
medians vs the fp32 .ort, interleaved; tools/int8-recipes prints them):
dynamic MatMul only 1.37x; static QDQ on MatMul+Conv 1.47-1.55x (a Quantize
before and a Dequantize after every MatMul adds ~1000 nodes to a graph whose
ops are small, so per-node cost eats the int8 gain); static QDQ with float
outputs (no Q after the MatMul) 0.34x (ORT then dequantises the weights on
every call); static Conv + dynamic MatMul 1.81x. Relative output error over
60 held-out chunks: 0.016 dynamic, 0.019 this recipe, 0.027 static QDQ on
both.

Calibration data: targets/calibration.py, the one calibration source of every
int8 recipe (speech the parity check is not judged on, the encoder's states
carried by the fp32 graph through the one state loop).

An int8 recipe is an object (targets.backends.Int8Recipe: its quantise step,
its op count and the record read back from the file); the "ort" backend's is
this module's `quantize` and `recipe_record` (targets/backends/ort.py). A new
recipe is one module defining another Int8Recipe and handing it to a backend.
"""

from __future__ import annotations

import collections
import logging
import tempfile
from pathlib import Path

from runtime_py.signature import GraphSpec, Signature
from .calibration import CALIBRATION_CHUNKS, CALIBRATION_SEED, CALIBRATION_SOURCE, calibration_feeds  # noqa: F401
from .common import require
from .ort_ops import op_counts

RECIPE = "conv-static+matmul-dynamic"
STATIC_OP_TYPES = ("Conv",)

# Op types in an .ort/.onnx file by how they were quantised.
STATIC_MARKERS = ("QLinear", "QuantizeLinear")
DYNAMIC_MARKERS = ("DynamicQuantize", "MatMulInteger", "ConvInteger")


def _has_weighted(onnx_path: Path, op_types) -> bool:
    onnx = require("onnx", "export")
    model = onnx.load(str(onnx_path), load_external_data=False)
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for node in model.graph.node if node.op_type == "Constant" for o in node.output}
    return any(node.op_type in op_types and len(node.input) > 1 and node.input[1] in consts
               for node in model.graph.node)


# Quantised op types, chosen by measurement (untrained default configs, 200
# chunks vs PyTorch, argmax agreement): MatMul/Gemm carry the conformer's
# weights (6.5 MB -> 2.2 MB, agreement 0.977); the LSTM weights are 95% of
# the LSTM model and only quantising LSTM itself (DynamicQuantizeLSTM)
# shrinks it (6.7 MB -> 1.75 MB, agreement 0.9925 vs 0.99 without).
# Per-tensor weight scales: on the trained models (stage-2 conformer) per-tensor int8
# kept the test WER within 0.14 of per-channel (lstm 9.63 vs 9.77 %, conformer
# 6.88 vs 6.74 %, transducer 4.86 vs 4.86 %; PyTorch 9.77 / 6.74 / 4.95 %) and
# ran the conformer step 14 % faster (0.62 vs 0.73 ms, interleaved in one run,
# 1 thread).
INT8_OP_TYPES = ("MatMul", "Gemm", "LSTM")
INT8_PER_CHANNEL = False
def quantize_int8(onnx_path: Path | str, out_path: Path | str, op_types=INT8_OP_TYPES,
                  per_channel: bool = INT8_PER_CHANNEL) -> Path:
    """Dynamic int8 (QInt8 weights, the signed type ARM's int8 dot products
    use). The result holds ORT-only ops: it is for the ORT branch only."""
    require("onnxruntime.quantization", "runtime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    root.addFilter(_no_preprocess_advice)
    try:
        quantize_dynamic(str(onnx_path), str(out_path), op_types_to_quantize=list(op_types),
                         per_channel=per_channel, weight_type=QuantType.QInt8,
                         nodes_to_exclude=frontend_nodes(onnx_path))
    finally:
        root.removeFilter(_no_preprocess_advice)
    return Path(out_path)


def frontend_nodes(onnx_path: Path | str) -> list[str]:
    """The nodes of an audio-in encoder's in-graph frontend (edge/audio_in.py),
    kept in float: int8 weights for the DFT and mel matrices, and int8
    activations of samples scaled to the int16 range, would wreck the log-mel
    (measured: token agreement 0.29 on the shipped conformer with them
    quantised)."""
    from runtime_py.audio_in import FRONTEND_SCOPE, STATE_CALLS

    onnx = require("onnx", "export")
    model = onnx.load(str(onnx_path), load_external_data=False)
    if STATE_CALLS not in {i.name for i in model.graph.input}:
        return []
    return [n.name for n in model.graph.node if f"/{FRONTEND_SCOPE}/" in n.name]


def _no_preprocess_advice(record: logging.LogRecord) -> bool:
    """quantize_dynamic advises its pre-processing (shape inference, graph
    optimisation) on every call. Our graphs have static shapes, and the
    quantised graph is optimised when saved as .ort: the advice is noise in
    edge-build's output. The dynamic pass over the recipe's static-Conv graph
    also warns that the model may be "already quantized": it is, by design
    (Conv only). Other records pass."""
    return not str(record.msg).startswith(_ADVICE)


_ADVICE = ("Please consider to run pre-processing", "Please consider pre-processing before quantization",
           "Please check if the model is already quantized")


def quantize_static_qdq(onnx_path: Path | str, out_path: Path | str, feeds: list[dict],
                        op_types=STATIC_OP_TYPES) -> Path:
    """Static QDQ int8 of `op_types` with ranges from `feeds`."""
    require("onnxruntime.quantization", "runtime")
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    root = logging.getLogger()
    root.addFilter(_no_preprocess_advice)
    try:
        quantize_static(str(onnx_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(op_types), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        root.removeFilter(_no_preprocess_advice)
    return Path(out_path)


def raw_audio(signature: Signature) -> bool:
    """Samples in (a raw frontend): its Convs see a waveform and then a
    spectrum, whose range uint8 activations with one MinMax scale cannot hold
    (quiet speech falls into the lowest steps). Measured on the Silero VAD
    (silero-vad 6.2.3's silero_vad.onnx, 200 parity chunks of speech vs the
    source file): relative error of the speech probability 0.124 with the
    static Conv step, 0.109 without it on the STFT Conv, 0.0057 with dynamic
    LSTM only. Such a graph gets the dynamic step only."""
    return signature.frontend.kind == "raw"


def quantize(onnx_path: Path | str, out_path: Path | str, graph: GraphSpec | None = None,
             signature: Signature | None = None) -> Path:
    """The recipe: static QDQ Conv (when the graph has a Conv with constant
    weights and a signature to draw calibration speech from), then dynamic
    MatMul/Gemm/LSTM. Without a signature, or for raw samples in: dynamic only."""
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if graph is None or signature is None or not _has_weighted(onnx_path, STATIC_OP_TYPES) or raw_audio(signature):
        return quantize_int8(onnx_path, out_path)
    with tempfile.TemporaryDirectory(prefix="edge-qdq-") as tmp:
        staged = quantize_static_qdq(onnx_path, Path(tmp) / "static.onnx",
                                     calibration_feeds(onnx_path, graph, signature))
        return quantize_int8(staged, out_path)


def quantize_job(onnx_path: str, out_path: str, signature: str | None, graph: str | None,
                 recipe: str | None = None) -> str:
    """A recipe's quantise step (`recipe`: targets.isolated.function_path of
    it; default this module's `quantize`) with JSON-able arguments, for
    targets.isolated's child."""
    from .isolated import resolve

    sig = Signature.from_json(signature) if signature else None
    step = resolve(recipe) if recipe else quantize
    return str(step(onnx_path, out_path, sig.graph(graph) if sig and graph else None, sig))


def quantized_ops(path: Path | str) -> dict[str, dict[str, int]]:
    """Quantised op types of an .ort/.onnx file by method."""
    out: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for op, n in op_counts(path).items():
        if any(m in op for m in STATIC_MARKERS) and "Dynamic" not in op:
            out["static"][op] = n
        elif any(m in op for m in DYNAMIC_MARKERS) or op.endswith("MatMulIntegerToFloat"):
            out["dynamic"][op] = n
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def recipe_record(path: Path | str) -> dict:
    """What the manifest records for an ORT int8 artifact: the method, the
    calibration data (when ranges were calibrated) and the ops quantised,
    read back from the file itself."""
    ops = quantized_ops(path)
    static = "static" in ops
    return {"recipe": RECIPE if static else "matmul-dynamic",
            "method": ("static QDQ int8 for Conv (per-channel int8 weights, uint8 activations), " if static else "")
            + "dynamic int8 for MatMul/Gemm/LSTM (per-tensor int8 weights, activations quantised per call)",
            "calibration": CALIBRATION_SOURCE if static else None,
            "ops_quantised": ops}
