"""The machine (CPU, versions, load) and the fresh child process per
configuration that measures cold start and peak memory.

The child loads only its column's runtime (the PyTorch child imports torch
and re-makes the model; the ORT, TFLite and sherpa-onnx children never
import torch, which the child checks) and runs the end-to-end workload once:
cold start = load + the first chunk's step (the first decode_stream for
sherpa-onnx); peak memory = the child's own VmHWM over load + the pass.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .columns import BenchError

_REPO_ROOT = Path(__file__).resolve().parents[2]


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":")[0].strip().lower()
            if key in ("model name", "hardware", "cpu model"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx", "ai_edge_litert"):  # from metadata: importing torch takes seconds
        try:
            versions[mod] = version(mod.replace("_", "-"))
        except PackageNotFoundError:
            versions[mod] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"cpu": cpu, "machine": platform.machine(), "system": platform.platform(),
            "cores": os.cpu_count(), "usable_cores": affinity, "versions": versions,
            "loadavg_start": list(os.getloadavg())}


# -- the cold-start / memory child -------------------------------------------------

def _rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _peak_rss_bytes() -> int:
    """This process's own high-water RSS. VmHWM is per address space, so it
    starts afresh at exec; ru_maxrss would carry the parent's peak over
    (Linux keeps the maximum across fork + execve)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _child(spec_path: str) -> None:
    """Entry of the fresh subprocess: load one configuration, run the
    end-to-end workload once, print a JSON line."""
    from runtime_py.signature import Signature

    spec = json.loads(Path(spec_path).read_text())
    signature = Signature.from_dict(spec["signature"])
    audio = np.load(spec["audio"])
    baseline = _rss_bytes()
    t0 = time.perf_counter()
    module = {"pytorch": "torch", "sherpa": "sherpa_onnx"}.get(spec["kind"])
    module = module or ("ai_edge_litert.interpreter" if spec["backend"] == "tflite" else "onnxruntime")
    __import__(module)
    t1 = time.perf_counter()
    from .configs import make_config

    config = make_config(spec, signature)
    t2 = time.perf_counter()
    res = config.run(audio)
    first = float(res["chunk_s"][0]) if len(res["chunk_s"]) else 0.0
    out = dict(import_ms=(t1 - t0) * 1e3, load_ms=(t2 - t1) * 1e3, first_chunk_ms=first * 1e3,
               cold_start_ms=(t2 - t1 + first) * 1e3, pass_s=res["e2e_s"], baseline_rss_mb=baseline / 2 ** 20,
               peak_rss_mb=_peak_rss_bytes() / 2 ** 20, torch_imported="torch" in sys.modules)
    print("EDGE_BENCH_CHILD " + json.dumps(out), flush=True)


def run_child(spec: dict, work: Path, timeout: float = 900) -> dict:
    fd, path = tempfile.mkstemp(prefix="child-", suffix=".json", dir=work)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-c", "import sys; from targets.bench.machine import _child; _child(sys.argv[1])", path]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(_REPO_ROOT), timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("EDGE_BENCH_CHILD "):
            return json.loads(line.split(" ", 1)[1])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    raise BenchError(f"child exited {p.returncode}: {' | '.join(tail)}")
