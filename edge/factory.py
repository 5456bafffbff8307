"""`--model FILE.py:factory` (or `package.module:factory`): the user's own
file, which loads their checkpoint and returns `edge.declare(...)`.

Every way this can go wrong is one UserError line: the file or function is
missing, importing it fails, the factory raises (with the file and line of
the user's code), or it returns something that is not a streaming model.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from .errors import UserError

USAGE = "--model takes FILE.py:FUNCTION or package.module:FUNCTION (e.g. zipformer_factory.py:build)"


def _where(exc: BaseException, origin: str) -> str:
    """The innermost frame of the user's own file in the traceback, else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if Path(f.filename).name == Path(origin).name] or frames
    if not mine:
        return ""
    f = mine[-1]
    return f" (at {Path(f.filename).name}:{f.lineno})"


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:400] + ("…" if len(text) > 400 else "")


def load_module(target: str):
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise UserError(f"--model: {path} does not exist")
        name = f"edge_user_model_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # the factory's own folder first, so it can import its neighbours
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - whatever the user's file raises on import
            sys.modules.pop(name, None)
            raise UserError(f"importing {path.name} failed: {type(e).__name__}: {_one_line(e)}"
                            f"{_where(e, str(path))}") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module, path.name
    try:
        return importlib.import_module(target), target
    except Exception as e:  # noqa: BLE001
        raise UserError(f"importing module {target!r} failed: {type(e).__name__}: {_one_line(e)}") from None


def load_model(spec: str):
    """Import the factory, call it with no arguments, check what it returns."""
    from .families.base import StreamingModel

    target, sep, func = str(spec).rpartition(":")
    if not sep or not target or not func.isidentifier():
        raise UserError(f"{USAGE}; got {spec!r}")
    module, origin = load_module(target)
    factory = getattr(module, func, None)
    if not callable(factory):
        have = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                      and getattr(v, "__module__", None) == module.__name__)
        raise UserError(f"{origin} has no function {func!r}; its functions: {', '.join(have) or 'none'}")
    try:
        model = factory()
    except UserError:
        raise  # a declaration mismatch: already one line naming what differs
    except Exception as e:  # noqa: BLE001 - whatever the user's factory raises
        raise UserError(f"{origin}:{func}() raised {type(e).__name__}: {_one_line(e)}{_where(e, origin)}") from None
    if not isinstance(model, StreamingModel):
        raise UserError(f"{origin}:{func}() returned a {type(model).__name__}; it must return the model "
                        "edge.declare(...) makes (see docs/bring-your-own-model.md)")
    return model
