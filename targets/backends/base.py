"""What edge-build knows about one backend: a `Backend` object.

The client's half of a backend (file suffix, runner, preference, why it
cannot run here) is its row in runtime_py/formats.py, which the Raspberry Pi
runtime reads without `targets`. The build's half is here, one object per
backend, one module per backend (targets/backends/<name>.py), registered in
targets/backends/__init__.py:

- `precisions`: what edge-build makes of it (a subset of formats.PRECISIONS);
- `build_needs`: (python module, pip extra) pairs its converter imports,
  checked before any build work starts;
- `convert`: the one converter signature
      convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]
  options: `work` (a scratch folder), `torch_model` (the PyTorch model, for
  converters that start from it), `int8` (the backend's Int8Recipe); a
  converter ignores the ones it does not need. The list may carry `.report`
  (`Made` below): how the file was made, for the manifest;
- `int8`: its int8 recipe (`Int8Recipe`: the quantise step where the recipe
  quantises the ONNX graph before conversion, the quantised op count that
  proves it did, and the record read back from the file). Calibration data
  for every recipe comes from one place, targets/calibration.py;
- `inspect`: (path, graph) -> parity record, for files that cannot run here
  (required then: the build checks what it can instead of running them);
- `side_files`: (bundle folder) -> names of the files it wrote next to the
  artifacts, called once after every (backend, precision) of the build;
- `torch_only`: non-empty when the converter starts from the PyTorch model:
  why a model that came as an ONNX file gets none of its files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime_py import formats


class Made(list):
    """A converter's files, with `report`: how they were made (for the
    manifest's artifact record; None where the converter says nothing)."""

    def __init__(self, files, report: dict | None = None):
        super().__init__(files)
        self.report = report


@dataclass(frozen=True)
class Int8Recipe:
    """How a backend makes and checks an int8 file (targets/build/records.py checks it)."""
    name: str
    count: Callable[[Path], int]  # path -> quantised ops/tensors; 0 means an fp32 file under an int8 name
    record: Callable[[Path], dict] | None = None  # path -> the manifest's "int8_recipe", read back from the file
    # (onnx_path, out_path, graph | None, signature | None) -> out_path: the fp32 ONNX graph in, an int8 ONNX graph
    # out, run by the backend's converter (ORT: in a child process, so a module-level function); None where the
    # converter quantises by itself (TFLite's dynamic range, a converter setting)
    quantize: Callable | None = None


@dataclass(frozen=True)
class Backend:
    name: str  # the client's row in runtime_py/formats.py (manifests, --quant, file names)
    precisions: tuple[str, ...]
    convert: Callable[..., list]
    build_needs: tuple[tuple[str, str], ...] = ()
    int8: Int8Recipe | None = None
    inspect: Callable | None = None
    side_files: Callable[[Path], list[str]] | None = None
    torch_only: str = ""

    @property
    def client(self) -> formats.Format:
        """The row a client reads (suffix, runner, preference)."""
        return formats.get_format(self.name)
