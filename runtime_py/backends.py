"""A bundle's model files opened by backend: `open_runner(path, graph,
backend, threads, strict)` returns the callable the state loop drives (see
`runtime_py.stateloop`), keyed by the signature's names, by the runner the
formats table (runtime_py/formats.py) gives the backend. It is the one way
to run a file: the client, edge-bench, the export's parity check and
edge-build's parity rollouts all use it. `check_artifacts` opens every file
of a bundle and checks its I/O before any state exists.

The runners themselves are runtime_py/runners.py (ONNX Runtime and LiteRT;
re-exported here): a LiteRT file's I/O names, which converters (onnx2tf) may
rename, are matched exactly, then after normalisation (lower case,
non-alphanumerics -> "_"), then by a unique element count, and finally by
position when the counts agree; anything else is a clear error listing both
sides. Inputs are cast to the dtype the model declares and outputs reshaped
to the signature's shapes. `strict=True` (what edge-build uses on the files
it just wrote) accepts only the "serving_default" signature with exactly the
signature's names and shapes. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

from . import formats
from .manifest import MANIFEST
from .modelio import coreml_io
from .runners import (BackendError, DEFAULT_PROVIDERS, IOMismatch, PIP_NAMES, PROVIDERS,  # noqa: F401 - re-exported
                      TFLITE_SIGNATURE, ProviderFallback, _require, _strict_names, check_io, graph_threads, match_names,
                      native_stderr_silenced, ort_runner, provider_names, tflite_runner, usable_providers)
from .signature import GraphSpec

MISMATCH = f"{MANIFEST} does not describe its model files:"  # how a bundle's IOMismatch begins


def check_artifacts(bundle, pairs=None) -> dict[str, str]:
    """Open every artifact of `bundle` (of the (backend, precision) `pairs`,
    default all) and check its I/O against its graph, before any state
    exists. Raises IOMismatch on the first disagreement; returns, for each
    file that could not be checked here, why (its runtime is not installed)."""
    unchecked = {}
    for a in bundle.artifacts:
        if pairs is not None and (a.backend, a.precision) not in pairs:
            continue
        graph, path = bundle.signature.graph(a.graph), bundle.path(a.path)  # sha256-checked
        try:
            if formats.FORMATS[a.backend].runs_here:
                open_runner(path, graph, a.backend)  # the runner checks as it opens, then is dropped
            elif a.backend == "coreml":
                check_io(graph, *_coreml_io(path), path, "coreml")
            else:
                unchecked[a.path] = f"no reader for {a.backend} files here"
        except ImportError as e:
            unchecked[a.path] = f"{e.name} is not installed here" if e.name else str(e).splitlines()[0]
        except IOMismatch as e:
            raise IOMismatch(f"{MISMATCH} {e}") from None
        except BackendError as e:  # a file that does not load at all: its golden check says so
            unchecked[a.path] = str(e)
    return unchecked


def _coreml_io(path: Path):
    with native_stderr_silenced():  # coremltools' import greets torch and TensorFlow on stderr
        import coremltools.proto  # noqa: F401 - an ImportError here means "not checked", not a bad file
    try:
        return coreml_io(path)
    except Exception as e:  # noqa: BLE001 - not a package: no Manifest.json, a broken protobuf, ...
        raise IOMismatch(f"{path.name} is declared a CoreML package, but coremltools cannot read its spec "
                         f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None


def backend_available(backend: str) -> bool:
    """Whether the Python package a backend's runner needs can be imported."""
    return backend in formats.FORMATS and formats.get_format(backend).installed()


def open_runner(path: Path | str, graph: GraphSpec, backend: str, threads: int = 1, strict: bool = False,
                providers=None):
    """`run(feeds) -> dict[name, ndarray]` over one model file, by the runner
    the formats table names for `backend`. `providers`: ONNX Runtime
    execution providers in order of preference (ort/onnx only)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    fmt = formats.FORMATS.get(backend)
    if fmt is None:
        raise BackendError(f"unknown backend {backend!r}; use one of {formats.runnable()}")
    if not fmt.runs_here:
        raise BackendError(fmt.not_here)
    return fmt.runner(Path(path), graph, threads=graph_threads(graph.name, threads), strict=strict,
                      providers=providers)
