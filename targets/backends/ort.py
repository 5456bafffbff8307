"""ONNX Runtime's `.ort` files (targets/ort.py): fp32 and int8 (targets/quantize.py's recipe), and the bundle's
`required_operators.config` for a reduced-operator ORT build."""

from __future__ import annotations

from pathlib import Path

from .. import ort
from ..ort_ops import quantized_op_count
from ..quantize import recipe_record
from .base import Backend, Int8Check

OPERATORS_CONFIG = "required_operators.config"
# the ORT int8 recipe's check, shared with the "onnx" backend (its files are read by the same runtime)
ORT_INT8 = Int8Check(count=quantized_op_count, record=recipe_record)


def operators_config(folder: Path) -> list[str]:
    """One merged config of every .ort file in the bundle folder (targets.ort.required_operators_config)."""
    ort.required_operators_config(sorted(Path(folder).glob("*.ort")), Path(folder) / OPERATORS_CONFIG)
    return [OPERATORS_CONFIG]


BACKEND = Backend("ort", ort.PRECISIONS, ort.convert, build_needs=(("onnxruntime", "runtime"),), int8=ORT_INT8,
                  side_files=operators_config)
