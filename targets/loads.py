"""What an app loads from a bundle: the runtimes its files need, and, when a
target's preferred format did not convert (manifest `not_converted`), one
line saying so and what the app loads instead. Shared by edge-build's last
line, edge-verify and the model card, so the three say the same. Torch-free
(edge-verify runs on a device)."""

from __future__ import annotations

from runtime_py import formats

from . import appdeps
from .appdeps import runtime_name

# The library an app calls per (target, backend), in the words targets/appdeps.py (the one table of
# coordinates) gives them.
RUNTIMES = {key: runtime_name(*key) for key in appdeps.LIBRARIES}


def _suffix(backend: str) -> str:
    """The backend's file suffix, from the one formats table."""
    return formats.FORMATS[backend].suffix if backend in formats.FORMATS else backend


def _order(target_name: str) -> tuple[str, ...]:
    """The target's formats in its order of preference (targets/build/plan.py)."""
    from .build.plan import TARGETS

    target = TARGETS.get(target_name)
    return target.backends if target else ()


def _backends(artifacts: list) -> list[str]:
    return sorted({_get(a, "backend") for a in artifacts})


def _get(a, key: str):
    return a[key] if isinstance(a, dict) else getattr(a, key)


def runtime_line(target_name: str, default: str, artifacts: list) -> str:
    """The runtimes the bundle's files need, in the target's order of
    preference (`default` where the target names one runtime for all)."""
    held = _backends(artifacts)
    order = _order(target_name)
    names = []
    for b in sorted(held, key=lambda b: order.index(b) if b in order else len(order)):
        name = RUNTIMES.get((target_name, b))
        if name and name not in names:
            names.append(name)
    return " / ".join(names) if names else default


def instead(target_name: str, not_converted: list[dict], artifacts: list) -> str:
    """What the app loads in place of the formats that did not convert: the
    encoder files of the most preferred format the bundle holds."""
    missing = {nc["backend"] for nc in not_converted}
    order = _order(target_name)
    held = [b for b in sorted(_backends(artifacts), key=lambda b: order.index(b) if b in order else len(order))
            if b not in missing]
    if not held:
        return "nothing: the bundle holds no model file"
    b = held[0]
    files = sorted(_get(a, "path") for a in artifacts if _get(a, "backend") == b and _get(a, "graph") == "encoder")
    runtime = RUNTIMES.get((target_name, b))
    return " / ".join(f"`{f}`" for f in files) + (f" with {runtime}" if runtime else "")


def not_converted_text(target_name: str, not_converted: list[dict]) -> str:
    """'tflite fp32, fp16, int8' (one backend's precisions together)."""
    by_backend: dict[str, list[str]] = {}
    for nc in not_converted:
        by_backend.setdefault(nc["backend"], []).append(nc["precision"])
    return "; ".join(f"{b} {', '.join(ps)} (no {_suffix(b)} file)" for b, ps in by_backend.items())


def not_converted_line(manifest: dict, artifacts: list) -> str | None:
    """One line for the build's output and edge-verify, or None when every
    format converted."""
    nc = manifest.get("not_converted") or []
    if not nc:
        return None
    target = manifest.get("target", "")
    return (f"NOT CONVERTED: {not_converted_text(target, nc)}; the app loads {instead(target, nc, artifacts)} "
            "instead (why: README.md, manifest.json not_converted)")
