"""LiteRT `.tflite` files by onnx2tf in a subprocess (targets/tflite/), one precision at a time."""

from __future__ import annotations

from pathlib import Path

from .. import tflite as tfl
from .base import Backend, Int8Recipe, Made


def convert(onnx_path, graph, signature, precision, out_dir, *, work, **_options) -> list[Path]:
    if "onnx_source" in signature.extra:  # a shipped file: op forms onnx2tf mistranslates (targets/onnx_tflite_prep.py)
        from ..onnx_tflite_prep import prepare

        prepared = Path(work) / f"tflite-prep-{graph.name}" / Path(onnx_path).name
        prepared.parent.mkdir(parents=True, exist_ok=True)
        prepare(onnx_path, prepared)
        onnx_path = prepared
    made = tfl.onnx_to_tflite(onnx_path, graph, Path(work) / f"tflite-{graph.name}-{precision}",
                              precisions=(precision,), signature=signature)
    dst = Path(out_dir) / f"{graph.name}.{precision}.tflite"
    made[precision].replace(dst)
    # the route and its rewrites, not the timings: a manifest holds nothing that differs between two builds
    return Made([dst], {"route": made.route, "output_layouts_fixed": made.permutations})


BACKEND = Backend("tflite", tfl.PRECISIONS, convert,
                  build_needs=(("onnx2tf", "tflite"), ("tensorflow", "tflite"), ("onnxsim", "tflite")),
                  # int8: dynamic range, a converter setting (targets/tflite/quantize.py says why not full-integer)
                  int8=Int8Recipe("dynamic-range", count=tfl.quantized_tensor_count))
