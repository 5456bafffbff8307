"""Op-type counts of an .onnx or .ort file: what ORT fused, what int8 quantised.
Its own module so the converter (ort.py) and the int8 recipe (quantize.py) both
read files without importing each other."""

from __future__ import annotations

import collections
from pathlib import Path

from .common import require


def _ort_fbs():
    # ort_format_model puts its generated flatbuffers package on sys.path.
    require("onnxruntime.tools.ort_format_model", "runtime")
    import ort_flatbuffers_py.fbs as fbs  # noqa: E402
    return fbs


def op_counts(path: Path | str) -> dict[str, int]:
    """Op-type counts of an .onnx or .ort file; contrib ops as `domain.Op`."""
    path = Path(path)
    counts: collections.Counter = collections.Counter()

    def key(domain: str, op: str) -> str:
        return op if domain in ("", "ai.onnx") else f"{domain}.{op}"

    if path.suffix == ".ort":
        fbs = _ort_fbs()
        buf = bytearray(path.read_bytes())
        if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
            raise ValueError(f"{path} is not an ORT format model")
        graph = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model().Graph()
        for i in range(graph.NodesLength()):
            node = graph.Nodes(i)
            counts[key(node.Domain().decode(), node.OpType().decode())] += 1
    else:
        onnx = require("onnx", "export")
        for node in onnx.load(str(path), load_external_data=False).graph.node:
            counts[key(node.domain, node.op_type)] += 1
    return dict(sorted(counts.items()))


QUANTIZED_OP_MARKERS = ("DynamicQuantize", "MatMulInteger", "ConvInteger", "QLinear", "QuantizeLinear",
                        "QAttention", "QGemm")


def quantized_op_count(path: Path | str) -> int:
    """Nodes of an .ort/.onnx file that compute in int8 (0: nothing was quantised)."""
    return sum(n for op, n in op_counts(path).items() if any(m in op for m in QUANTIZED_OP_MARKERS))
