"""Native code on a graph we did not write runs in a child process.

ONNX Runtime's session creation and its quantiser are C++; on a foreign graph
they have died with a segmentation fault (exit 139), which took edge-build
down with no `error:` line and left its temporary folders behind. A step
that may do that runs here: `run_isolated(step, "module:function", **kwargs)`
calls the function in a child under the converter guard's memory and time
limits (targets/tflite/guard.py) and returns what it returned. Arguments and
result are JSON; paths go as strings. A crash, a limit or an exception in the
child becomes one UserError naming the step.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from edge.errors import UserError

_ERROR_MARK = "edge-isolated-error: "


def run_isolated(step: str, target: str, **kwargs):
    """`target` ("package.module:function") called with `kwargs` in a child."""
    from .tflite.base import TfliteConversionError
    from .tflite.guard import run_guarded

    with tempfile.TemporaryDirectory(prefix="edge-isolated-") as tmp:
        job, result = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job.write_text(json.dumps({"target": target, "kwargs": kwargs}), encoding="utf-8")
        path = os.pathsep.join(p for p in (_repo_root(), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "targets.isolated", str(job), str(result)]
        try:  # the caller's working directory: relative paths in kwargs mean the same in the child
            rc, log = run_guarded(cmd, cwd=None, env=env, what=step)
        except TfliteConversionError as e:  # a memory or time limit
            raise UserError(str(e)) from None
        if rc == 0 and result.exists():
            return json.loads(result.read_text(encoding="utf-8"))
        raise UserError(_describe(step, rc, log))


def _describe(step: str, rc: int, log: str) -> str:
    said = [ln[len(_ERROR_MARK):] for ln in log.splitlines() if ln.startswith(_ERROR_MARK)]
    if said:
        return f"{step} failed: {said[-1]}"
    if rc < 0 or rc > 128:  # killed by a signal (Popen gives -N; a shell gives 128 + N)
        num = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = f"signal {num}"
        last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
        return (f"{step} crashed ({name}, exit {128 + num}) inside a native library"
                + (f" (its last words: {last[:300]})" if last else "") + "; nothing of this build was left behind")
    tail = " | ".join(ln.strip() for ln in log.strip().splitlines()[-3:])
    return f"{step} failed (exit {rc}): {tail or 'no output'}"


def function_path(fn) -> str:
    """"package.module:function" of a module-level function, for a child to
    import it again (a lambda or a nested function cannot be)."""
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in fn.__qualname__ or "." in fn.__qualname__ or fn.__module__ == "__main__":
        raise ValueError(f"{name} is not a module-level function a child process can import")
    return name


def resolve(path: str):
    """The function `function_path` named (imported now)."""
    module, _, fn = path.partition(":")
    return getattr(importlib.import_module(module), fn)


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _child(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    try:
        value = resolve(job["target"])(**job["kwargs"])
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        msg = " ".join(str(e).split())
        print(f"{_ERROR_MARK}{type(e).__name__}: {msg[:1500]}", flush=True)
        return 1
    Path(result_path).write_text(json.dumps(value), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
