"""What the edge-* commands that need PyTorch share, importable without it:
the family names (read from file names, not imported), typo suggestions, and
the guard that turns a missing heavy package into one line naming the extra.
The parser grammar itself is in runtime_py.cliargs (the torch-free client
uses it too)."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from runtime_py.cliargs import add_verbose, make_parser, quiet_libraries  # noqa: F401 (one import for the commands)

from .errors import fail, missing_extra


def family_names() -> list[str]:
    """The built-in families, read from the file names in edge/families/
    without importing them (importing a family imports torch)."""
    spec = importlib.util.find_spec("edge.families")
    folders = spec.submodule_search_locations if spec else []
    return sorted(p.stem for d in folders for p in Path(d).glob("*.py") if not p.stem.startswith("_")
                  and p.stem != "base")


DEFAULT_FAMILY = "conformer"


def add_family(p, default: str | None = DEFAULT_FAMILY, extra: tuple[str, ...] = (), note: str = "") -> None:
    """--family, spelled and defaulted the same on every command; checked
    with `family_error` (a typo gets a suggestion)."""
    names = ", ".join(family_names() + list(extra))
    p.add_argument("--family", default=default, help=f"model family: {names}{note}")


def add_model(p) -> None:
    """--model FILE.py:FACTORY: the user's own model (docs/bring-your-own-model.md)."""
    p.add_argument("--model", metavar="FILE.py:FACTORY",
                   help="your own model: a file (or package.module) and its function returning edge.declare(...); "
                        "see docs/bring-your-own-model.md")


def family_error(name: str | None, extra: tuple[str, ...] = ()) -> str | None:
    """The error line for an unknown family name, else None."""
    known = family_names() + list(extra)
    return None if name is None or name in known else unknown("family", name, known)


def unknown(what: str, name: str, known) -> str:
    """"unknown family 'lstn'. Did you mean 'lstm'? Known: ..." """
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Known: {', '.join(known)}"


def preflight(args) -> int | None:
    """What every PyTorch-side command does first: quiet the libraries (unless
    --verbose), reject an unknown --family, and check that torch/onnx are
    installed. Returns an exit code to stop with, or None to go on."""
    quiet_libraries(args.verbose)
    error = family_error(args.family)
    if error:
        return fail(error)
    return torch_side("export")  # first: on a runtime-only install nothing else matters


def torch_side(extra: str = "export", hint: str = ""):
    """Guard for the commands that need PyTorch (and ONNX): None when they
    are importable, else the exit code after one `error:` line naming the
    extra to install."""
    for module in ("torch", "onnx") if extra == "export" else ("torch",):
        try:  # looked up, not imported: a mistake further on is reported without paying torch's 2 s import
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a finder that refuses the name counts as not installed
            found = False
        if not found:
            return fail(str(missing_extra(module, extra)) + hint)
    return None
