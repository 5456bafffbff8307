"""A converter's child process that must never take the machine down.

onnx2tf's automatic retries have grown past 24 GB on a graph it could not
convert, so the conversion runs in a child process whose whole tree is killed
past a memory or time limit (overridable by the environment for a bigger
machine). The child's console output is captured and returned."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from .base import TfliteConversionError

CONVERT_MAX_GB = float(os.environ.get("EDGE_CONVERT_MAX_GB", "10"))
CONVERT_MAX_S = float(os.environ.get("EDGE_CONVERT_MAX_S", "1200"))


def _tree_rss_gb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root] + root.children(recursive=True)) / 2 ** 30
    except psutil.Error:
        return 0.0


def run_guarded(cmd: list, cwd, env, what: str, max_gb: float | None = None,
                max_s: float | None = None) -> tuple[int, str]:
    """Run a converter subprocess; kill its whole tree past `max_gb` resident
    memory or `max_s` seconds (TfliteConversionError saying which limit)."""
    import signal

    max_gb = CONVERT_MAX_GB if max_gb is None else max_gb
    max_s = CONVERT_MAX_S if max_s is None else max_s
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        t0, why = time.perf_counter(), None
        while proc.poll() is None:
            rss = _tree_rss_gb(proc.pid)
            if rss > max_gb:
                why = f"used {rss:.1f} GB of memory (limit {max_gb:g} GB, EDGE_CONVERT_MAX_GB)"
            elif time.perf_counter() - t0 > max_s:
                why = f"ran past {max_s:.0f} s (limit EDGE_CONVERT_MAX_S)"
            if why:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise TfliteConversionError(f"{what} stopped: it {why}; the converter was killed")
            time.sleep(0.25)
        log.seek(0)
        return proc.returncode, log.read()
