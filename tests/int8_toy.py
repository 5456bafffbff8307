"""A toy int8 recipe, the whole of it in one module (tests/test_int8_recipe.py
hands it to the "ort" backend): dynamic int8 of MatMul only, no calibration.
Its quantise step is a module-level function because ONNX Runtime quantises
in a child process (targets/isolated.py), which imports it by module path."""

from __future__ import annotations

from targets.backends import Int8Recipe
from targets.ort_ops import quantized_op_count
from targets.quantize import quantize_int8, quantized_ops

NAME = "toy-matmul-dynamic"


def matmul_only(onnx_path, out_path, graph, signature):
    return quantize_int8(onnx_path, out_path, op_types=("MatMul",))


def toy_record(path) -> dict:
    return {"recipe": NAME, "ops_quantised": quantized_ops(path)}


TOY = Int8Recipe(NAME, count=quantized_op_count, record=toy_record, quantize=matmul_only)
