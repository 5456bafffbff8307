"""Library chatter stays off stderr unless --verbose: torch's exporter
warnings during edge-build, LiteRT's native "Created TensorFlow Lite XNNPACK
delegate" line on the first invoke."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, *args: str, env=None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "EDGE_SPEECH_VERBOSE"}
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env=e)


def test_native_stderr_is_silenced_unless_verbose():
    code = ("import os, sys\nfrom runtime_py.backends import native_stderr_silenced\n"
            "with native_stderr_silenced():\n    os.write(2, b'INFO: native chatter\\n')\n"
            "os.write(2, b'after\\n')\n")
    quiet = _run(code)
    assert quiet.returncode == 0 and quiet.stderr == "after\n", quiet.stderr
    loud = _run(code, env={"EDGE_SPEECH_VERBOSE": "1"})
    assert loud.stderr == "INFO: native chatter\nafter\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_edge_build_hides_torch_exporter_warnings_unless_verbose(verbose, tmp_path):
    """The LSTM export makes torch warn about batch sizes (the exported graph
    is batch 1 by design): nothing the user can act on."""
    argv = ["--target", "rpi", "--family", "lstm", "--quant", "ort:fp32", "--parity-chunks", "2",
            "-o", str(tmp_path / "b")] + (["--verbose"] if verbose else [])
    r = _run("import sys\nfrom targets.build import main\nsys.exit(main(sys.argv[1:]))", *argv)
    assert r.returncode == 0, r.stderr
    assert ("Warning" in r.stderr) == verbose, r.stderr
    if not verbose:
        assert r.stderr == ""
