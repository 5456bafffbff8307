"""A Raspberry Pi installs only the runtime: numpy and ONNX Runtime. There,
edge-export/-train/-eval must say in one line which extra to install, and
edge-verify, edge-demo and edge-bench on a bundle must work.

Two proofs: a fast one in this interpreter with torch, onnx and tensorflow
made unimportable for every process it starts (a sitecustomize meta-path
blocker, children included), and a slow one in a real fresh venv holding
only numpy and onnxruntime, with this checkout on PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.bundle_fixtures import cached_bundle

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "onnx", "tensorflow", "onnx2tf", "coremltools")
BLOCKER = f'''
import sys
class _NotInstalled:
    """Acts as if {HEAVY} were not installed (a runtime-only venv)."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
'''
COMMANDS = {"edge-export": "edge.cli", "edge-train": "edge.train", "edge-eval": "edge.evaluate",
            "edge-bench": "targets.bench.cli", "edge-verify": "targets.verify", "edge-demo": "demo.cli"}


def _command(python: str, env: dict, name: str, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys\nfrom {COMMANDS[name]} import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=env.get("EDGE_TEST_CWD"), timeout=300)


def _check_runtime_only(python: str, env: dict, bundle: Path, tmp: Path) -> None:
    # the commands that need PyTorch: one line naming the extra, exit 2
    for name, argv in (("edge-export", ["--family", "lstm", "-o", tmp / "onnx"]),
                       ("edge-train", ["--family", "lstm", "-o", tmp / "x.pt"]),
                       ("edge-eval", ["--family", "lstm"])):
        r = _command(python, env, name, *argv)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (name, r.stderr)
        assert lines[0].startswith("error: torch is not installed") and "[export] extra" in lines[0]
        assert "pip install -e '.[export]'" in lines[0]
    # the runtime's commands on a bundle
    r = _command(python, env, "edge-verify", bundle)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _command(python, env, "edge-demo", bundle, "--wav", bundle / "golden" / "audio.wav")
    assert r.returncode == 0 and "--- summary ---" in r.stdout, r.stderr
    out = tmp / "bench.json"
    r = _command(python, env, "edge-bench", "--bundle", bundle, "--backends", "ort:fp32", "--seconds", "2",
                 "--repeats", "2", "--json", out)
    assert r.returncode == 0, r.stderr
    row, = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok" and row["label"] == "ort:fp32" and row["p50_ms"] > 0, row
    assert row["cold_start_ms"] > 0 and row["torch_imported"] is False, row  # the fresh child ran too


def test_runtime_only_commands_with_heavy_packages_blocked(tmp_path):
    bundle, _ = cached_bundle("conformer")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}", EDGE_TEST_CWD=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "No module named 'torch'" in r.stderr, "the blocker must work"
    _check_runtime_only(sys.executable, env, bundle, tmp_path)


@pytest.mark.slow
def test_runtime_only_commands_in_a_fresh_numpy_onnxruntime_venv(tmp_path):
    """About 15 s: a new venv (no system site-packages) with numpy and
    onnxruntime from pip, this checkout on PYTHONPATH."""
    bundle, _ = cached_bundle("conformer")
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    pip = subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                          "numpy", "onnxruntime"], capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"cannot install numpy/onnxruntime into a fresh venv here: {pip.stderr.strip()[-300:]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), EDGE_TEST_CWD=str(tmp_path))
    r = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "No module named 'torch'" in r.stderr, "the venv must not see torch"
    _check_runtime_only(python, env, bundle, tmp_path)
