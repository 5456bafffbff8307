"""Conversion dispatch: one (backend, precision) of every graph, by the
converter the formats table names, and the runners that check the result.

Every converter has one signature (runtime_py/formats.py):
    convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]
with options `work`, `torch_model` and `calibration`; a converter ignores the
ones it does not need. The adapters below give that signature to converters
whose modules keep their own narrow functions (tflite.onnx_to_tflite,
coreml.to_coreml) and to the plain ONNX copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.errors import UserError
from runtime_py import formats

from ..conversion_errors import conversion_error


class Made(list):
    """A converter's files, with `report`: how they were made (for the
    manifest's artifact record; None where the converter says nothing)."""

    def __init__(self, files, report: dict | None = None):
        super().__init__(files)
        self.report = report


class Converted(dict):
    """graph -> file, with `reports`: graph -> the converter's report."""
    reports: dict = {}


def convert_graphs(backend: str, precision: str, signature, onnx_paths: dict, out_dir: Path,
                   **options) -> dict[str, Path]:
    """Convert every graph for one (backend, precision); returns graph -> file
    (a Converted: `.reports` holds what each converter said about its route).
    A converter's failure becomes a ConversionError naming the operation
    (when the converter says which), the graph, the target and a fix."""
    fmt = formats.FORMATS.get(backend)
    if fmt is None:
        raise UserError(f"unknown backend {backend!r}")
    out = Converted()
    out.reports = {}
    for g, p in onnx_paths.items():
        try:
            made = formats.load(fmt.converter)(p, signature.graph(g), signature, precision, out_dir, **options)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - every converter has its own exception types
            raise conversion_error(e, backend, precision, g) from e
        if len(made) != 1:
            raise ValueError(f"{fmt.converter} made {len(made)} files for graph {g!r}; a bundle holds one per graph")
        out[g] = Path(made[0])
        if getattr(made, "report", None):
            out.reports[g] = made.report
    return out


def runners(backend: str, files: dict[str, Path], signature) -> dict:
    """graph -> run(feeds) over the files just written, by the client's own
    runner in strict mode (names and shapes exactly the signature's)."""
    from runtime_py.backends import open_runner

    from ..common import ensure_installed

    fmt = formats.get_format(backend)
    if not fmt.runs_here:
        raise ValueError(f"backend {backend!r} cannot run on this host")
    if fmt.runtime_module:
        ensure_installed(fmt.runtime_module, fmt.extra)  # the extra's name in the error
    return {g: open_runner(p, signature.graph(g), backend, strict=True) for g, p in files.items()}


# -- adapters to the one converter signature ------------------------------------------------------

def copy_onnx(onnx_path, graph, signature, precision, out_dir, **_options) -> list[Path]:
    """The exported ONNX graph as it is (the "onnx" row)."""
    return [Path(shutil.copy(onnx_path, Path(out_dir) / f"{graph.name}.{precision}.onnx"))]


def tflite(onnx_path, graph, signature, precision, out_dir, *, work, calibration=(), **_options) -> list[Path]:
    """onnx2tf in a subprocess (targets.tflite), one precision at a time."""
    from .. import tflite as tfl

    calib = [{graph.inputs[0].name: c} for c in calibration] if graph.name == "encoder" else None
    if "onnx_source" in signature.extra:  # a shipped file: op forms onnx2tf mistranslates (targets/onnx_tflite_prep.py)
        from ..onnx_tflite_prep import prepare

        prepared = Path(work) / f"tflite-prep-{graph.name}" / Path(onnx_path).name
        prepared.parent.mkdir(parents=True, exist_ok=True)
        prepare(onnx_path, prepared)
        onnx_path = prepared
    made = tfl.onnx_to_tflite(onnx_path, graph, Path(work) / f"tflite-{graph.name}-{precision}",
                              precisions=(precision,), calibration=calib)
    dst = Path(out_dir) / f"{graph.name}.{precision}.tflite"
    made[precision].replace(dst)
    # the route and its rewrites, not the timings: a manifest holds nothing that differs between two builds
    return Made([dst], {"route": made.route, "output_layouts_fixed": made.permutations})


def coreml(onnx_path, graph, signature, precision, out_dir, *, torch_model, **_options) -> list[Path]:
    """coremltools converts from the traced PyTorch module, not from ONNX."""
    from .. import coreml as cm

    return [cm.to_coreml(torch_model, graph, signature, out_dir, precision)]


def inspect_coreml(path, graph) -> dict:
    from .. import coreml as cm

    return cm.inspect_mlpackage(path, graph)
