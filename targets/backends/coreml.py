"""CoreML ML programs (`.mlpackage`, targets/coreml.py), converted from the traced PyTorch module (coremltools
no longer converts ONNX); their spec is checked here, their numerics only run on Apple devices."""

from __future__ import annotations

from pathlib import Path

from .. import coreml as cm
from .base import Backend


def convert(onnx_path, graph, signature, precision, out_dir, *, torch_model, **_options) -> list[Path]:
    return [cm.to_coreml(torch_model, graph, signature, out_dir, precision)]


BACKEND = Backend("coreml", cm.PRECISIONS, convert, build_needs=(("coremltools", "coreml"),),
                  inspect=cm.inspect_mlpackage, torch_only="coremltools converts from PyTorch only")
