"""ONNX Runtime's `.ort` files (targets/ort.py): fp32 and int8 (targets/quantize.py's recipe), and the bundle's
`required_operators.config` for a reduced-operator ORT build."""

from __future__ import annotations

from pathlib import Path

from .. import ort, quantize
from ..ort_ops import quantized_op_count
from .base import Backend, Int8Recipe

OPERATORS_CONFIG = "required_operators.config"
# targets/quantize.py's recipe (static Conv calibrated on speech + dynamic MatMul/Gemm/LSTM), also the check of
# the "onnx" backend's files (the same runtime reads them)
ORT_INT8 = Int8Recipe(quantize.RECIPE, count=quantized_op_count, record=quantize.recipe_record,
                      quantize=quantize.quantize)


def operators_config(folder: Path) -> list[str]:
    """One merged config of every .ort file in the bundle folder (targets.ort.required_operators_config)."""
    ort.required_operators_config(sorted(Path(folder).glob("*.ort")), Path(folder) / OPERATORS_CONFIG)
    return [OPERATORS_CONFIG]


BACKEND = Backend("ort", ort.PRECISIONS, ort.convert, build_needs=(("onnxruntime", "runtime"),), int8=ORT_INT8,
                  side_files=operators_config)
