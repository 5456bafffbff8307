"""ONNX Runtime target: `.ort` files (fp32, and int8 by targets.quantize's recipe) for a reduced
operator ORT build, e.g. on a Raspberry Pi.

- `to_ort(onnx_path, out_dir, precision, graph, signature)` writes
  `<graph>.<precision>.ort`. int8 is targets.quantize's recipe: static QDQ
  Conv calibrated on speech, then dynamic quantisation (int8 weights,
  activations quantised per call) of MatMul, Gemm and LSTM (see
  INT8_OP_TYPES). Our own graph rewrites run first (targets/ort_rewrite.py:
  the Swoosh activations in fewer nodes, feed-forward chains in 2-D; each
  checked against the exported graph), then the graph
  is optimised offline at the "extended" level (see OPTIMIZATION_LEVEL) and
  saved in ORT format, so the device does not redo the fusions.
- `optimisation_report(before_onnx, after)`: op-type counts before and after,
  i.e. what ORT fused.
- `required_operators_config(ort_paths, out_path)`: one merged, reproducible
  `required_operators.config` for `--include_ops_by_config`.
- `runner(path, graph)`: the `run(feeds) -> dict` callable of the state loop.

Nothing here imports torch: the runner is what the device client uses.
"""

from __future__ import annotations

import logging
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime_py.signature import GraphSpec
from .common import require
from .ort_ops import QUANTIZED_OP_MARKERS, op_counts, quantized_op_count  # noqa: F401 - the table names ort's
from .quantize import INT8_OP_TYPES, INT8_PER_CHANNEL, quantize, quantize_int8  # noqa: F401 - re-exported

PRECISIONS = ("fp32", "int8")
# "extended" applies the fusions that are not hardware specific (LayerNorm,
# Gelu, MatMul+Add, MatMul+scale, DynamicQuantizeMatMul ...). "all" adds
# layout transforms tied to the build machine's CPU (NCHWc on x86), which a
# file for an ARM device must not bake in.
# Measured on the 23.6 M Zipformer2 encoder (1 thread, paired medians of 7
# interleaved rounds vs this .ort): "all" applied at load on x86 1.03x (not
# portable); MatMulAddFusion disabled (its 3-D Gemm adds two Reshapes per
# MatMul) 1.02x; session.set_denormal_as_zero 1.01x; the Swoosh activations
# as one Softplus op instead of icefall's 8-op logaddexp 0.88x (ORT's Softplus
# kernel is scalar). None is worth a change; the int8 recipe is (quantize.py),
# and so is our graph pass before this step (targets/ort_rewrite.py: 1.11-1.17x fp32,
# 1.14-1.18x int8 on the same model).
OPTIMIZATION_LEVEL = "extended"
QUANTIZE_JOB = "targets.quantize:quantize_job"  # run in a child process (targets.isolated)


def convert(onnx_path, graph: GraphSpec, signature, precision: str, out_dir, *, int8=None, rewrites=None,
            **_options) -> list[Path]:
    """The one converter signature (targets/backends/base.py): `to_ort`, int8 by the backend's recipe; the
    graph rewrites that ran (targets/ort_rewrite.py) go into the manifest's record as `route`. `rewrites`
    (edge-build --ort-rewrites): the ones allowed, None for the precision's DEFAULT."""
    from .backends.base import Made

    route: dict = {}
    path = to_ort(onnx_path, out_dir, precision, graph, signature, recipe=int8, rewrites=rewrites, route=route,
                  work=_options.get("work"))
    return Made([path], {"route": route} if route else None)


def _ort():
    return require("onnxruntime", "runtime")


# Serialising to ORT format walks containers keyed by pointers, so the bytes of
# a .ort file change from run to run with address-space randomisation. The
# conversion therefore runs in a fresh interpreter with randomisation off
# (setarch -R), a fixed environment and fixed relative file names: then the
# same model gives the same bytes (tests/test_build.py::test_build_is_reproducible).
_SAVE_ORT = """
import sys
import onnxruntime as ort
so = ort.SessionOptions()
so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[1])
so.optimized_model_filepath = "out.ort"
so.add_session_config_entry("session.save_model_format", "ORT")
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
ort.InferenceSession("in.onnx", so, providers=["CPUExecutionProvider"], disabled_optimizers=["NchwcTransformer"])
"""
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def _save_ort(onnx_path: Path, ort_path: Path, level: str = OPTIMIZATION_LEVEL) -> Path:
    """Optimise offline and serialise in ORT format: what onnxruntime's
    convert_onnx_models_to_ort does for one model (fixed optimisation style),
    without its console output and its per-directory side files."""
    _ort()  # a clear error if onnxruntime is missing
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-c", _SAVE_ORT, _LEVELS[level]]
    setarch = shutil.which("setarch")
    with tempfile.TemporaryDirectory(prefix="edge-ortfmt-") as tmp:
        shutil.copyfile(onnx_path, Path(tmp) / "in.onnx")
        attempts = ([[setarch, platform.machine(), "-R"] + cmd] if setarch else []) + [cmd]
        for attempt in attempts:  # setarch may be refused in a sandbox; then bytes may vary
            r = subprocess.run(attempt, cwd=tmp, env=env, capture_output=True, text=True)
            if r.returncode == 0:
                break
        else:
            raise RuntimeError(f"ONNX Runtime could not optimise/serialise {Path(onnx_path).name}:\n"
                               + r.stderr.strip()[-2000:])
        shutil.copyfile(Path(tmp) / "out.ort", ort_path)
    return ort_path


def to_ort(onnx_path: Path | str, out_dir: Path | str, precision: str = "fp32", graph: GraphSpec | None = None,
           signature=None, recipe=None, rewrites=None, route: dict | None = None, work=None) -> Path:
    """Write `<out_dir>/<graph>.<precision>.ort` from `<graph>.onnx`. int8 by
    `recipe` (an Int8Recipe with a quantise step; default targets.quantize's:
    with the graph's spec and signature calibrated static Conv + dynamic
    MatMul, without them dynamic int8 only). `rewrites`: the graph rewrites
    to try first (targets/ort_rewrite.py; None: its DEFAULT for the precision), which need the
    graph and signature for their check; what ran is added to `route`, and a
    choice other than the default as `rewrites_selected` (so a build with
    none says none was allowed). With
    `work` (a scratch folder) a graph is rewritten and checked once for all
    its precisions."""
    if precision not in PRECISIONS:
        raise ValueError(f"ORT precision {precision!r} must be one of {PRECISIONS}")
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{onnx_path.stem}.{precision}.ort"
    with tempfile.TemporaryDirectory(prefix="edge-ort-") as tmp:
        src = onnx_path
        if graph is not None and signature is not None:
            from . import ort_rewrite

            names = tuple(ort_rewrite.DEFAULT[precision] if rewrites is None else rewrites)
            if rewrites is not None and route is not None:  # the user's choice: said even when nothing ran
                route["rewrites_selected"] = list(names)
            rewritten, record = ort_rewrite.apply_cached(onnx_path, graph, signature, names,
                                                         Path(work or tmp) / "ort-rewrites")
            src = rewritten or src
            if record is not None and route is not None:
                route.update(record)
        if precision == "int8":
            src = _quantize_isolated(src, Path(tmp) / f"{onnx_path.stem}.int8.onnx", graph, signature,
                                     getattr(recipe, "quantize", None))
        _save_ort(src, target)
    return target


def _quantize_isolated(onnx_path: Path, out_path: Path, graph: GraphSpec | None, signature, step=None) -> Path:
    """A recipe's quantise `step` (default targets.quantize's) in a child process: ONNX Runtime's quantiser
    is native code that has crashed on graphs we did not write, and a crash
    must end in an error line, not take the build down (targets/isolated.py)."""
    from edge.errors import UserError

    from .isolated import function_path, run_isolated

    try:
        run_isolated(f"ONNX Runtime int8 quantisation of {onnx_path.name}", QUANTIZE_JOB,
                     onnx_path=str(onnx_path.resolve()), out_path=str(Path(out_path).resolve()),
                     signature=signature.to_json() if signature is not None and graph is not None else None,
                     graph=graph.name if graph is not None else None,
                     recipe=function_path(step) if step is not None else None)
    except UserError as e:  # a converter's failure: the build reports it as one (not converted, or the error)
        raise RuntimeError(str(e)) from None
    return Path(out_path)


# -- inspection (op counts: targets/ort_ops.py) --------------------------------

def optimisation_report(before_onnx: Path | str, after: Path | str) -> dict:
    """What the conversion did: op counts before/after, and the op types that
    appeared (fused kernels) or disappeared (folded into them)."""
    before, aft = op_counts(before_onnx), op_counts(after)
    return {
        "before": before,
        "after": aft,
        "nodes_before": sum(before.values()),
        "nodes_after": sum(aft.values()),
        "added": sorted(set(aft) - set(before)),
        "removed": sorted(set(before) - set(aft)),
    }


def required_operators_config(ort_paths, out_path: Path | str) -> Path:
    """One `required_operators.config` for all .ort files of a bundle. The
    tool's header lists absolute model paths; it is replaced by the sorted
    file names, so the same models give the same bytes wherever they live."""
    require("onnxruntime.tools.ort_format_model", "runtime")
    from onnxruntime.tools.ort_format_model import create_config_from_models

    paths = sorted((Path(p) for p in ort_paths), key=lambda p: p.name)
    if not paths:
        raise ValueError("required_operators_config needs at least one .ort file")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate .ort file names: {names}")
    tool_log = logging.getLogger("ort_format_model.utils")  # the tool sets it to DEBUG
    level = tool_log.level
    tool_log.setLevel(logging.WARNING)  # not "Created config in /tmp/..." in edge-build's output
    try:
        with tempfile.TemporaryDirectory(prefix="edge-ortcfg-") as tmp:
            raw = Path(tmp) / "required_operators.config"
            create_config_from_models(paths, raw, enable_type_reduction=False)
            body = [ln for ln in raw.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    finally:
        tool_log.setLevel(level)
    header = ["# Generated from models:"] + [f"# - {n}" for n in names]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "w", newline="\n") as f:
        f.write("\n".join(header + body) + "\n")
    return out_path


# -- running ------------------------------------------------------------------

def runner(path: Path | str, graph: GraphSpec, threads: int = 1):
    """`run(feeds) -> dict` over an .ort (or .onnx) file: the client's runner."""
    _ort()  # the extra's name in the error
    from runtime_py.backends import open_runner

    return open_runner(path, graph, "ort", threads)
