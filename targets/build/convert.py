"""Conversion dispatch: one (backend, precision) of every graph, by the
backend object's converter (targets/backends/), and the runners that check
the result.

Every converter has one signature (targets/backends/base.py):
    convert(onnx_path, graph, signature, precision, out_dir, **options) -> list[Path]
with options `work`, `torch_model` and `int8` (the backend's int8 recipe,
added here); a converter ignores the ones it does not need. Options for
one backend only (edge-build --ort-rewrites: {"ort": {"rewrites": ...}})
reach that backend's converter alone, through `backend_options`.
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import UserError
from runtime_py import formats

from ..backends import BACKENDS, Backend, Made  # noqa: F401 - Made: a converter's files with their report
from ..conversion_errors import conversion_error


class Converted(dict):
    """graph -> file, with `reports`: graph -> the converter's report."""
    reports: dict = {}


def convert_graphs(backend: Backend | str, precision: str, signature, onnx_paths: dict, out_dir: Path,
                   backend_options: dict | None = None, **options) -> dict[str, Path]:
    """Convert every graph for one (backend, precision); returns graph -> file
    (a Converted: `.reports` holds what each converter said about its route).
    A converter's failure becomes a ConversionError naming the operation
    (when the converter says which), the graph, the target and a fix."""
    if isinstance(backend, str):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}")
        backend = BACKENDS[backend]
    out = Converted()
    out.reports = {}
    options = {**options, **(backend_options or {}).get(backend.name, {})}
    for g, p in onnx_paths.items():
        try:
            made = backend.convert(p, signature.graph(g), signature, precision, out_dir, int8=backend.int8, **options)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - every converter has its own exception types
            raise conversion_error(e, backend.name, precision, g) from e
        if len(made) != 1:
            raise ValueError(f"the {backend.name} converter made {len(made)} files for graph {g!r}; a bundle holds "
                             "one per graph")
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
