"""The exported ONNX graph as it is (`.onnx`, fp32), for any ONNX Runtime build."""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import Backend
from .ort import ORT_INT8

PRECISIONS = ("fp32",)


def copy_onnx(onnx_path, graph, signature, precision, out_dir, **_options) -> list[Path]:
    return [Path(shutil.copy(onnx_path, Path(out_dir) / f"{graph.name}.{precision}.onnx"))]


BACKEND = Backend("onnx", PRECISIONS, copy_onnx, build_needs=(("onnx", "export"),), int8=ORT_INT8)
