"""Small helpers shared by the backend modules: optional imports."""

from __future__ import annotations

import importlib
import importlib.util

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
