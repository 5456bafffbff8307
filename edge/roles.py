"""How a user's step is described (roles, Step) and called: the nested
state structures, names, layouts and return patterns of edge.declare. See
edge/declaration.py for the API and docs/bring-your-own-model.md for its use."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .errors import UserError
from .signature import SignatureError, StateSpec

LAYOUTS = ("BTF", "TBF", "BFT", "BT")  # B batch, T time (frames or samples), F feature
HEADS = ("ctc", "transducer", "none")
TORCH_DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32", torch.bool: "bool"}


class DeclarationError(UserError):
    """The declaration does not match what the model does; says which part."""


# -- roles --------------------------------------------------------------------------

class _Role:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


FEATURES = _Role("FEATURES")
STATES = _Role("STATES")
LENGTHS = _Role("LENGTHS")
TOKENS = _Role("TOKENS")
ENCODER_OUT = _Role("ENCODER_OUT")
DECODER_OUT = _Role("DECODER_OUT")


@dataclass(frozen=True)
class State:
    name: str


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass(frozen=True)
class Counter:
    """An int64 position the graph advances: `start` at reset, `+ step` per
    chunk, never above `max` (a model whose positions end must say where)."""
    name: str
    step: int
    max: int
    start: int = 0
    shape: tuple = ()
    reset: str = "utterance"


@dataclass(frozen=True)
class Derived:
    fn: Callable[[dict], torch.Tensor]
    doc: str = ""


@dataclass
class Step:
    """One graph: the user's callable and how to call it."""
    fn: Callable
    states: Any = None  # nested tensors, or fn(batch_size) -> nested tensors (batch axes inferred)
    args: tuple = (FEATURES, STATES)
    kwargs: dict = field(default_factory=dict)
    returns: Any = ("output", STATES)
    names: Any = None  # list of flat state names, or fn(path: tuple) -> name
    reset: Any = "utterance"  # scope for every state, or {name: scope}
    batch_axis: Any = "infer"  # int | None | {name: axis}; "infer" needs `states` callable
    counters: dict = field(default_factory=dict)  # {state name: max}: a returned position that saturates
    docs: dict = field(default_factory=dict)  # {tensor name: doc}
    layout: str = "BTF"  # the step's feature layout (encoder)
    output_layout: str = "BTF"  # the step's main output layout (encoder with a ctc/transducer head)
    module: Any = None  # the nn.Module(s) the step runs, when they cannot be found from `fn`


# -- nested states ------------------------------------------------------------------

def flatten(tree, path=()) -> list[tuple[tuple, torch.Tensor]]:
    """Leaves of nested lists/tuples/dicts with their paths, in a stable order."""
    if isinstance(tree, torch.Tensor):
        return [(path, tree)]
    if isinstance(tree, dict):
        return [leaf for k in tree for leaf in flatten(tree[k], path + (str(k),))]
    if isinstance(tree, (list, tuple)):
        return [leaf for i, v in enumerate(tree) for leaf in flatten(v, path + (i,))]
    raise DeclarationError(f"states: a {type(tree).__name__} at {path_text(path)}; states must be tensors "
                           "in nested lists, tuples or dicts")


def unflatten(tree, leaves: list):
    """Rebuild `tree`'s structure with `leaves` in flatten() order."""
    it = iter(leaves)

    def build(t):
        if isinstance(t, torch.Tensor):
            return next(it)
        if isinstance(t, dict):
            return type(t)((k, build(v)) for k, v in t.items()) if type(t) is not dict else {k: build(v) for k, v in t.items()}
        if isinstance(t, tuple):
            return tuple(build(v) for v in t)
        return [build(v) for v in t]
    return build(tree)


def path_text(path: tuple) -> str:
    return "states" + "".join(f"[{p!r}]" for p in path)


def _default_name(path: tuple) -> str:
    """Dict keys as they are ({'h': ..} -> 'h'); list positions as state_0, state_1_2, ..."""
    if not path:
        return "state"
    joined = "_".join(str(p) for p in path)
    return joined if isinstance(path[0], str) else "state_" + joined


NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def modules_of_step(step: Step) -> list[nn.Module]:
    """The nn.Modules a step runs: the callable itself, the module a bound
    method belongs to, the modules a function or lambda closes over or names
    as globals, and any given as Step(module=...)."""
    fn = step.fn
    found = list(step.module if isinstance(step.module, (list, tuple)) else [step.module]) if step.module else []
    if isinstance(fn, nn.Module):
        found.append(fn)
    elif isinstance(getattr(fn, "__self__", None), nn.Module):
        found.append(fn.__self__)
    elif inspect.isfunction(fn):
        try:
            cv = inspect.getclosurevars(fn)
        except (TypeError, ValueError):
            cv = None
        if cv is not None:
            found += [v for v in list(cv.nonlocals.values()) + list(cv.globals.values()) if isinstance(v, nn.Module)]
    unique = []
    for m in found:
        if not any(m is u for u in unique):
            unique.append(m)
    return unique


def output_names(pattern) -> list[str]:
    if isinstance(pattern, str):
        return [pattern]
    if isinstance(pattern, (list, tuple)):
        return [n for p in pattern for n in output_names(p)]
    return []


def match_returns(pattern, value, outputs: dict, nexts: dict, tree, graph: str) -> None:
    if pattern is None:
        return
    if isinstance(pattern, str):
        if not isinstance(value, torch.Tensor):
            raise DeclarationError(f"graph {graph!r}: output {pattern!r} is a {type(value).__name__}, not a tensor")
        outputs[pattern] = value
        return
    if pattern is STATES:
        got = flatten(value)
        want = flatten(tree)
        if len(got) != len(want):
            raise DeclarationError(f"graph {graph!r}: the step returned {len(got)} state tensors, "
                                   f"the declared states have {len(want)}")
        nexts["__tree__"] = [t for _, t in got]
        return
    if isinstance(pattern, State):
        nexts[pattern.name] = value
        return
    if isinstance(pattern, (list, tuple)):
        if len(pattern) == 1 and not isinstance(value, (list, tuple)):
            return match_returns(pattern[0], value, outputs, nexts, tree, graph)
        if not isinstance(value, (list, tuple)) or len(value) != len(pattern):
            n = len(value) if isinstance(value, (list, tuple)) else 1
            raise DeclarationError(f"graph {graph!r}: returns={pattern!r} expects {len(pattern)} values, "
                                   f"the step returned {n}")
        for p, v in zip(pattern, value):
            match_returns(p, v, outputs, nexts, tree, graph)
        return
    raise DeclarationError(f"graph {graph!r}: unknown role {pattern!r} in returns")


def state_names(step: Step, paths: list[tuple]) -> list[str]:
    if step.names is None:
        names = [_default_name(p) for p in paths]
    elif callable(step.names):
        names = [str(step.names(p)) for p in paths]
    else:
        names = [str(n) for n in step.names]
        if len(names) != len(paths):
            raise DeclarationError(f"names= has {len(names)} names for {len(paths)} state tensors")
    for n in names:
        if not NAME.match(n):
            raise DeclarationError(f"state name {n!r} is not a valid tensor name (letters, digits, _ and .)")
    return names


def state_spec(name: str, t: torch.Tensor, axis, scope: str, doc: str) -> StateSpec:
    if t.dtype not in TORCH_DTYPES:
        raise DeclarationError(f"state {name!r} is {t.dtype}; supported dtypes: {sorted(TORCH_DTYPES.values())}")
    v = t.detach().cpu()
    first = v.reshape(-1)[0].item() if v.numel() else 0
    if v.numel() and not bool((v == first).all()):
        raise DeclarationError(f"state {name!r}: its initial value is not one constant (it ranges "
                               f"{v.min().item()}..{v.max().item()}); a state starts from a constant fill. "
                               "Keep a learned start inside the step (add it to a zero state)")
    try:
        return StateSpec(name, tuple(v.shape), TORCH_DTYPES[t.dtype], doc=doc, initial=float(first),
                         batch_axis=axis, reset=scope)
    except SignatureError as e:
        raise DeclarationError(str(e)) from None


def only_unit_axis(t: torch.Tensor):
    units = [i for i, d in enumerate(t.shape) if d == 1]
    return units[0] if len(units) == 1 else None


def to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "BTF":
        return x
    if layout == "TBF":
        return x.transpose(0, 1)
    if layout == "BFT":
        return x.transpose(1, 2)
    return x[..., 0]  # BT: raw samples [1, chunk]


def from_layout_out(y: torch.Tensor, layout: str) -> torch.Tensor:
    return y.transpose(0, 1) if layout == "TBF" else y


def torch_dtype(name: str):
    return {v: k for k, v in TORCH_DTYPES.items()}[name]


def shapes_text(specs) -> str:
    return ", ".join(f"{t.name} {list(t.shape)}" for t in specs)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("…" if len(text) > 300 else "")


