"""Small helpers shared by the backend modules: optional imports, PyTorch's threads."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys

from edge.errors import missing_extra


def require(module: str, extra: str):
    """Import an optional dependency, or raise a UserError naming the extra
    that provides it (`pip install -e '.[extra]'`)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_extra(module, extra) from e


def ensure_installed(module: str, extra: str) -> None:
    """Like `require`, without importing (for modules used in a subprocess)."""
    if importlib.util.find_spec(module) is None:
        raise missing_extra(module, extra)


@contextlib.contextmanager
def one_torch_thread():
    """PyTorch on one thread while a build runs its references chunk by chunk:
    a chunk step is too small to share, and two threads on a busy 2-core
    machine made the shipped conformer's step 100x slower (60 s of audio: 73.5 s
    against 0.7 s, measured). A no-op where torch was never imported (--onnx)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
