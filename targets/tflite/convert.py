"""The caller's side of a conversion: check the request, write the job,
run the worker (worker.py) as a guarded child process (guard.py), and read
back its report."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime_py.signature import GraphSpec, Signature
from ..calibration import rollout_feeds
from ..common import ensure_installed
from ..conversion_errors import dynamic_shape_note
from .base import PRECISIONS, TfliteConversionError
from .guard import run_guarded

_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class _PathDict(dict):
    """{precision: path}, with the conversion's report as attributes."""
    timings: dict = {}
    permutations: dict = {}
    fp16_constants_kept_fp32: dict = {}
    route: dict = {}  # how the file was made: steps, onnx2tf version, rewrites and their check


def onnx_to_tflite(onnx_path: Path | str, graph: GraphSpec, out_dir: Path | str,
                   precisions=PRECISIONS, signature: Signature | None = None) -> dict[str, Path]:
    """Convert `<graph>.onnx` to `<out_dir>/<graph>.<precision>.tflite`; int8
    is dynamic-range quantisation, which needs no calibration (quantize.py
    says why, with the full-integer figures). `signature` (the model's) is
    what the check of the ONNX rewrites for onnx2tf rolls out over (speech
    for an encoder, prepare.py); a graph they change is refused without it.
    Returns {precision: path}; the conversion time is in `.timings`."""
    return convert_graph(onnx_path, graph, out_dir, precisions, signature=signature)


def convert_graph(onnx_path: Path | str, graph: GraphSpec, out_dir: Path | str, precisions=PRECISIONS,
                  calibration: list[dict] | None = None, full_integer: str | None = None,
                  signature: Signature | None = None) -> dict[str, Path]:
    """onnx_to_tflite with the int8 scheme to use: dynamic range (full_integer
    None) or full-integer ("fallback" / "strict", quantize.py) calibrated on
    `calibration` (the graph's non-state inputs per chunk; the states are
    filled in by rolling the ONNX graph over them)."""
    for mod in ("onnx2tf", "tensorflow", "onnxsim"):
        ensure_installed(mod, "tflite")  # imported in the worker, not here
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"TFLite precisions {bad} not in {PRECISIONS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = _job(onnx_path, graph, out_dir, precisions)
    if signature is not None:
        job["signature"] = signature.to_dict()  # the child process rebuilds it for the rewrites' check
    with tempfile.TemporaryDirectory(prefix="edge-tflite-") as tmp:
        job["tmp"] = tmp
        if full_integer and "int8" in precisions:
            job["full_integer"] = full_integer
            job["calibration"] = _write_calibration(Path(tmp), rollout_feeds(onnx_path, graph, calibration))
        t0 = time.perf_counter()
        rc, out = run_guarded([sys.executable, "-m", "targets.tflite.worker", json.dumps(job)], cwd=tmp,
                              env=_worker_env(), what=f"onnx2tf conversion of graph {graph.name!r}")
        elapsed = time.perf_counter() - t0
        if rc != 0:
            raise TfliteConversionError(f"onnx2tf conversion of graph {graph.name!r} failed:\n{out[-6000:]}"
                                        + dynamic_shape_note(onnx_path))
        report = json.loads((Path(tmp) / "result.json").read_text())
    result = _PathDict({p: Path(job["out"][p]) for p in precisions})
    result.timings = {"total_s": round(elapsed, 2), **report["timings"]}
    result.permutations = report["permutations"]
    result.fp16_constants_kept_fp32 = report.get("fp16_constants_kept_fp32", {})
    result.route = report["route"]
    return result


def _job(onnx_path, graph: GraphSpec, out_dir: Path, precisions) -> dict:
    return {
        "onnx": str(Path(onnx_path).resolve()),
        "graph": {"name": graph.name,
                  "inputs": [[t.name, list(t.shape), t.dtype] for t in graph.all_inputs()],
                  "outputs": [[t.name, list(t.shape), t.dtype] for t in graph.all_outputs()],
                  "initial": {s.name: s.initial for s in graph.states}},
        "out": {p: str((out_dir / f"{graph.name}.{p}.tflite").resolve()) for p in precisions},
    }


def _write_calibration(tmp: Path, feeds: list[dict]) -> str:
    path = tmp / "calibration.npz"
    arrays = {f"{i}/{name}": v for i, f in enumerate(feeds) for name, v in f.items()}
    np.savez(path, count=np.array(len(feeds)), **arrays)
    return str(path)


def _worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("OMP_NUM_THREADS", "1")
    # onnx2tf shells out to tools installed next to the interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
