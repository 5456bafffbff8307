"""Bring your own streaming model: declare it once, get every backend.

The user keeps their code and hands over what it already has: a step
callable, the initial states as their code makes them (nested lists, tuples
or dicts of tensors, or the function that makes them), and a few facts.
`declare()` calls the step once, infers every shape and dtype, names the
flattened states, checks that each state comes back with its shape, and
returns a `StreamingModel`: the exporter, targets, bundle, checks and the
torch-free client then treat it like a built-in family.

    model = declare(
        "my-model",
        encoder=Step(module.forward_chunk, states=module.init_states,    # fn(batch) -> nested
                     args=(FEATURES, STATES), returns=("logits", STATES)),
        head="ctc", chunk=16, shift=16, tokens="tokens.txt")

How a step is called is written with roles. `args` (and `kwargs`) say what
goes where:
    FEATURES        one chunk of features in the step's layout (`layout`)
    STATES          the whole nested state structure, as the user's code made it
    State("name")   one state (named by `names`, or a dict key)
    Const(value)    a constant (a number or tensor), folded into the graph
    LENGTHS         int64 [1] holding the chunk length (a batch-1 chunk's lengths)
    Counter(...)    an int64 state the graph advances by `step` per chunk, saturating at `max`
    Derived(fn)     fn(states by name) -> tensor, computed in the graph (e.g. a mask
                    from a validity state)
    TOKENS          (transducer decoder) int64 [1, context_size] last tokens
    ENCODER_OUT, DECODER_OUT   (joiner) one encoder frame, the decoder output
`returns` is a pattern over what the step returns: a string names an output,
STATES / State("name") take next states, None drops a value (e.g. lengths).

The graph boundary is always the same: one input `x` [1, chunk, dim]
(dim 1 for raw samples), then the states; the outputs, then one
`<state>_next` per state. Layout changes, constants, counters and masks live
inside the graph, so one generic client drives every model.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .families.base import StreamingModel
from .signature import FrontendSpec, GraphSpec, Signature, SignatureError, StateSpec, TensorSpec

LAYOUTS = ("BTF", "TBF", "BFT", "BT")  # B batch, T time (frames or samples), F feature
HEADS = ("ctc", "transducer", "none")
_TORCH_DTYPES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32", torch.bool: "bool"}
_NP_DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


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
    raise DeclarationError(f"states: a {type(tree).__name__} at {_path_text(path)}; states must be tensors "
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


def _path_text(path: tuple) -> str:
    return "states" + "".join(f"[{p!r}]" for p in path)


def _default_name(path: tuple) -> str:
    """Dict keys as they are ({'h': ..} -> 'h'); list positions as state_0, state_1_2, ..."""
    if not path:
        return "state"
    joined = "_".join(str(p) for p in path)
    return joined if isinstance(path[0], str) else "state_" + joined


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


# -- the declared model -------------------------------------------------------------

@dataclass
class _FlatState:
    name: str
    spec: StateSpec
    counter: Counter | None = None  # an input counter the step does not return


class _GraphModule(nn.Module):
    """forward(x or graph inputs, *flat states) -> (*outputs, *next flat states)."""

    def __init__(self, owner: "DeclaredModel", graph: str):
        super().__init__()
        self.owner_ref = [owner]  # not a submodule: avoids a parameter cycle
        self.graph = graph
        # registered, so tracers see their weights as parameters, not as constants
        self.user_modules = nn.ModuleList(owner.modules_of(graph))

    def forward(self, *args):
        return self.owner_ref[0]._call(self.graph, list(args))


class DeclaredModel(StreamingModel):
    """A user's model as a StreamingModel: signature and graph modules from a declaration."""

    family = "declared"

    def __init__(self, name: str, steps: dict[str, Step], head: str, chunk: int, shift: int,
                 frontend: FrontendSpec, tokens: list[str], blank_id: int, context_size: int,
                 trained: bool, subsampling: int | None, offline: Callable | None, source: str | None,
                 max_duration_s: float | None, vocab_size: int | None = None, extra: dict | None = None):
        super().__init__(config=None)
        self.family = name
        self.steps = steps
        self.head = head
        self.chunk, self.shift = chunk, shift
        self.frontend = frontend
        self.tokens = tokens
        self.blank_id, self.context_size = blank_id, context_size
        self.trained = trained
        self.offline = offline
        self.source = source
        self.max_duration_s = max_duration_s
        self._vocab = vocab_size
        self._extra = {**(extra or {}), **({"source": source} if source else {})}
        self._subsampling = subsampling
        self._trees: dict[str, Any] = {}
        self._flat: dict[str, list[_FlatState]] = {}
        self._signature: Signature | None = None
        self._modules_of = {g: _modules_of(step) for g, step in steps.items()}
        for g, mods in self._modules_of.items():
            for i, m in enumerate(mods):
                m.eval()  # dropout off, batch norm frozen: the step as it runs in inference
                self.add_module(f"user_{g}_{i}", m)
        self._signature = self._derive()

    def modules_of(self, graph: str) -> list[nn.Module]:
        return list(self._modules_of[graph])

    # -- StreamingModel ----------------------------------------------------------
    def signature(self) -> Signature:
        return self._signature

    def graph_module(self, name: str) -> nn.Module:
        if name not in self.steps:
            raise KeyError(f"{self.family} graphs are {sorted(self.steps)}, not {name!r}")
        return _GraphModule(self, name)

    @property
    def vocab_size(self) -> int:
        return self._signature.vocab_size

    def info(self) -> dict:
        return {"source": self.source, "tokens": list(self.tokens), "meta": {"trained": self.trained}}

    def forward(self, feats, lengths):
        raise NotImplementedError("a declared model has no offline forward; pass offline= to declare()")

    # -- calling the user's step -------------------------------------------------
    def _initial_flat(self, graph: str) -> list[torch.Tensor]:
        return [torch.from_numpy(np.full(f.spec.shape, f.spec.initial, dtype=_NP_DTYPES[f.spec.dtype]))
                for f in self._flat[graph]]

    def _call(self, graph: str, args: list) -> tuple:
        step = self.steps[graph]
        flat = self._flat[graph]
        n_in = len(args) - len(flat)
        inputs, state_vals = args[:n_in], args[n_in:]
        by_name = {f.name: v for f, v in zip(flat, state_vals)}
        user_states = [v for f, v in zip(flat, state_vals) if f.counter is None]
        tree = unflatten(self._trees[graph], user_states) if self._trees[graph] is not None else None

        def value(role):
            if role is FEATURES:
                return _to_layout(inputs[0], step.layout)
            if role is STATES:
                return tree
            if role is LENGTHS:
                return torch.tensor([self.chunk], dtype=torch.int64)
            if role is TOKENS or role is ENCODER_OUT:
                return inputs[0]
            if role is DECODER_OUT:
                return inputs[1]
            if isinstance(role, State):
                return by_name[role.name]
            if isinstance(role, Counter):
                return by_name[role.name]
            if isinstance(role, Const):
                return role.value
            if isinstance(role, Derived):
                return role.fn(dict(by_name))
            raise DeclarationError(f"graph {graph!r}: unknown role {role!r} in args")

        result = step.fn(*[value(r) for r in step.args], **{k: value(r) for k, r in step.kwargs.items()})
        outputs, nexts = {}, {}
        _match(step.returns, result, outputs, nexts, self._trees[graph], graph)
        tree_next = nexts.pop("__tree__", None)
        if tree_next is not None:
            nexts.update(zip([f.name for f in flat if f.counter is None], tree_next))
        known = {f.name for f in flat}
        stray = sorted(set(nexts) - known)
        if stray:
            raise DeclarationError(f"graph {graph!r}: returns names states {stray} that are not declared; "
                                   f"declared: {sorted(known)[:8]}")
        for f in flat:
            if f.counter is not None:
                nexts[f.name] = by_name[f.name] + f.counter.step
            if f.name not in nexts:
                raise DeclarationError(f"graph {graph!r}: state {f.name!r} is not returned by the step "
                                       f"(returns={step.returns!r}); every state needs its next value")
            limit = self._limits[graph].get(f.name)
            if limit is not None:
                nexts[f.name] = torch.clamp(nexts[f.name], max=limit)
        outs = [self._normalise_output(graph, i, outputs[n]) for i, n in enumerate(self._out_names[graph])]
        return tuple(outs) + tuple(nexts[f.name].to(_torch_dtype(f.spec.dtype)) for f in flat)

    def _normalise_output(self, graph: str, index: int, y: torch.Tensor) -> torch.Tensor:
        if self.head == "none" or index:
            return y
        if graph == "encoder":
            return _from_layout_out(y, self.steps[graph].output_layout)
        return y.reshape(1, -1)  # decoder_out / logits: [1, dim] whatever the step's batch/time axes

    # -- deriving the signature ----------------------------------------------------
    def _derive(self) -> Signature:
        self._limits: dict[str, dict] = {}
        self._out_names: dict[str, list[str]] = {}
        graphs = []
        dim = self.frontend.feature_dim
        for g, step in self.steps.items():
            self._prepare_states(g, step)
            if g == "encoder":
                in_specs = (TensorSpec("x", (1, self.chunk, dim), doc=step.docs.get(
                    "x", "raw samples of one chunk" if self.frontend.kind == "raw" else
                    f"{self.frontend.kind} frames of one chunk")),)
            elif g == "decoder":
                in_specs = (TensorSpec("y", (1, self.context_size), "int64",
                                       doc="last context_size tokens, blank-padded at the start"),)
            else:
                in_specs = None  # joiner: shapes come from the encoder and decoder probes
            graphs.append((g, step, in_specs))
        specs: dict[str, GraphSpec] = {}
        probes: dict[str, dict] = {}
        for g, step, in_specs in graphs:
            if in_specs is None:
                enc_dim = specs["encoder"].outputs[0].shape[-1]
                dec_dim = specs["decoder"].outputs[0].shape[-1]
                in_specs = (TensorSpec("encoder_out", (1, enc_dim), doc="one encoder frame"),
                            TensorSpec("decoder_out", (1, dec_dim), doc="current decoder output"))
            specs[g], probes[g] = self._probe(g, step, in_specs)
        enc = specs["encoder"]
        subsampling = self._subsampling
        if subsampling is None:
            if self.head == "none":
                subsampling = 1
            else:
                t_out = enc.outputs[0].shape[1]
                if self.shift % t_out:
                    raise DeclarationError(f"shift={self.shift} frames give {t_out} output frames per chunk, "
                                           "not a whole subsampling factor; give subsampling=")
                subsampling = self.shift // t_out
        vocab = self._check_head(specs)
        try:
            return Signature(self.family, self.frontend, self.chunk, self.shift, subsampling,
                             tuple(specs[g] for g in self.steps), vocab_size=vocab, blank_id=self.blank_id,
                             decoder=self.head, context_size=self.context_size if self.head == "transducer" else 0,
                             extra=self._extra)
        except SignatureError as e:
            raise DeclarationError(str(e)) from None

    def _prepare_states(self, g: str, step: Step) -> None:
        made = step.states(1) if callable(step.states) else step.states
        tree = made
        leaves = flatten(tree) if tree is not None else []
        axes = self._batch_axes(step, leaves)
        names = _state_names(step, [p for p, _ in leaves])
        scopes = step.reset if isinstance(step.reset, dict) else {}
        flat = []
        for (path, t), name, axis in zip(leaves, names, axes):
            flat.append(_FlatState(name, _state_spec(name, t, axis, scopes.get(name, step.reset if isinstance(
                step.reset, str) else "utterance"), step.docs.get(name, f"{_path_text(path)} of the user's step"))))
        for role in list(step.args) + list(step.kwargs.values()):
            if isinstance(role, Counter):
                flat.append(_FlatState(role.name, StateSpec(
                    role.name, tuple(role.shape), "int64", doc=step.docs.get(role.name, (
                        f"position counter: +{role.step} per chunk, saturates at {role.max}")),
                    initial=float(role.start), batch_axis=None if not role.shape else 0, reset=role.reset),
                    counter=role))
        seen = set()
        for f in flat:
            if f.name in seen:
                raise DeclarationError(f"graph {g!r}: two states are named {f.name!r}")
            seen.add(f.name)
        unknown = sorted(set(step.counters) - seen)
        if unknown:
            raise DeclarationError(f"graph {g!r}: counters= names {unknown}, which are not states; "
                                   f"states: {sorted(seen)}")
        self._trees[g] = tree
        self._flat[g] = flat
        self._limits[g] = {**{n: int(m) for n, m in step.counters.items()},
                           **{f.name: f.counter.max for f in flat if f.counter is not None}}

    def _batch_axes(self, step: Step, leaves: list) -> list:
        if step.batch_axis == "infer":
            if not callable(step.states):
                # one axis of size 1 is the only guess a batch-1 tensor allows
                return [_only_unit_axis(t) for _, t in leaves]
            two = flatten(step.states(2))
            if len(two) != len(leaves):
                raise DeclarationError(f"states(2) gave {len(two)} tensors, states(1) {len(leaves)}")
            axes = []
            for (path, a), (_, b) in zip(leaves, two):
                diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
                axes.append(diff[0] if len(diff) == 1 and a.shape[diff[0]] == 1 else None)
            return axes
        if isinstance(step.batch_axis, dict):
            return [step.batch_axis.get(n) for n in _state_names(step, [p for p, _ in leaves])]
        return [step.batch_axis if t.dim() else None for _, t in leaves]

    def _probe(self, g: str, step: Step, in_specs: tuple) -> tuple[GraphSpec, dict]:
        """Call the step once on seeded inputs with every state at its declared
        initial value; infer outputs; check each next state against its state."""
        rng = np.random.default_rng(0)
        feeds = []
        for t in in_specs:
            if t.dtype == "int64":
                feeds.append(torch.from_numpy(rng.integers(0, max(1, len(self.tokens) or 2), t.shape)))
            else:
                feeds.append(torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32)))
        flat = self._flat[g]
        self._out_names[g] = _output_names(step.returns)
        if not self._out_names[g]:
            raise DeclarationError(f"graph {g!r}: returns={step.returns!r} names no output (use a string)")
        try:
            with torch.no_grad():
                result = self._call(g, feeds + self._initial_flat(g))
        except DeclarationError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the user's code raises
            raise DeclarationError(f"graph {g!r}: calling the step on one chunk ({_shapes(in_specs)}) with the "
                                   f"declared initial states raised {type(e).__name__}: {_one_line(e)}") from None
        outs = result[:len(self._out_names[g])]
        nexts = result[len(self._out_names[g]):]
        bad = []
        for f, y in zip(flat, nexts):
            got = (tuple(y.shape), _TORCH_DTYPES.get(y.dtype, str(y.dtype)))
            want = (f.spec.shape, f.spec.dtype)
            if got[0] != want[0]:
                bad.append(f"{f.name}: got {list(got[0])}, want {list(want[0])}")
        if bad:
            raise DeclarationError(f"graph {g!r}: the step's next states differ from the declared states: "
                                   + "; ".join(bad[:6]) + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
        out_specs = []
        for n, y in zip(self._out_names[g], outs):
            if y.dtype not in _TORCH_DTYPES:
                raise DeclarationError(f"graph {g!r}: output {n!r} is {y.dtype}; supported: "
                                       f"{sorted(_TORCH_DTYPES.values())}")
            if not all(np.isfinite(y.float().numpy()).ravel()):
                raise DeclarationError(f"graph {g!r}: output {n!r} is not finite on the first chunk")
            out_specs.append(TensorSpec(n, tuple(y.shape), _TORCH_DTYPES[y.dtype], doc=step.docs.get(n, "")))
        try:
            spec = GraphSpec(g, inputs=in_specs, outputs=tuple(out_specs), states=tuple(f.spec for f in flat))
        except SignatureError as e:
            raise DeclarationError(f"graph {g!r}: {e}") from None
        return spec, {}

    def _check_head(self, specs: dict[str, GraphSpec]) -> int:
        enc_out = specs["encoder"].outputs[0]
        n_tok = len(self.tokens) or self._vocab or 0
        if self.tokens and self._vocab and len(self.tokens) != self._vocab:
            raise DeclarationError(f"{len(self.tokens)} tokens but vocab_size={self._vocab}")
        if self.head == "none":
            return max(1, n_tok)
        if len(enc_out.shape) != 3:
            raise DeclarationError(f"encoder output {enc_out.name!r} is {list(enc_out.shape)}; a {self.head} head "
                                   "needs [1, frames, dim] (set output_layout= if it is time-major)")
        if not n_tok:
            raise DeclarationError(f"a {self.head} head needs tokens= (a list, or a tokens.txt path) or vocab_size=")
        if self.head == "ctc":
            if enc_out.shape[-1] != n_tok:
                raise DeclarationError(
                    f"encoder output {enc_out.name!r} is {list(enc_out.shape)}: a CTC head needs [1, frames, "
                    f"vocab={n_tok}], but its last axis is {enc_out.shape[-1]}. Is it a hidden state? Apply the "
                    "CTC projection in the step, or declare head='none'")
            return n_tok
        logits = specs["joiner"].outputs[0]
        if logits.shape[-1] != n_tok:
            raise DeclarationError(f"joiner output {logits.name!r} is {list(logits.shape)}; its last axis must be "
                                   f"the vocabulary size {n_tok}")
        return n_tok


def _modules_of(step: Step) -> list[nn.Module]:
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


def _output_names(pattern) -> list[str]:
    if isinstance(pattern, str):
        return [pattern]
    if isinstance(pattern, (list, tuple)):
        return [n for p in pattern for n in _output_names(p)]
    return []


def _match(pattern, value, outputs: dict, nexts: dict, tree, graph: str) -> None:
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
            return _match(pattern[0], value, outputs, nexts, tree, graph)
        if not isinstance(value, (list, tuple)) or len(value) != len(pattern):
            n = len(value) if isinstance(value, (list, tuple)) else 1
            raise DeclarationError(f"graph {graph!r}: returns={pattern!r} expects {len(pattern)} values, "
                                   f"the step returned {n}")
        for p, v in zip(pattern, value):
            _match(p, v, outputs, nexts, tree, graph)
        return
    raise DeclarationError(f"graph {graph!r}: unknown role {pattern!r} in returns")


def _state_names(step: Step, paths: list[tuple]) -> list[str]:
    if step.names is None:
        names = [_default_name(p) for p in paths]
    elif callable(step.names):
        names = [str(step.names(p)) for p in paths]
    else:
        names = [str(n) for n in step.names]
        if len(names) != len(paths):
            raise DeclarationError(f"names= has {len(names)} names for {len(paths)} state tensors")
    for n in names:
        if not _NAME.match(n):
            raise DeclarationError(f"state name {n!r} is not a valid tensor name (letters, digits, _ and .)")
    return names


def _state_spec(name: str, t: torch.Tensor, axis, scope: str, doc: str) -> StateSpec:
    if t.dtype not in _TORCH_DTYPES:
        raise DeclarationError(f"state {name!r} is {t.dtype}; supported dtypes: {sorted(_TORCH_DTYPES.values())}")
    v = t.detach().cpu()
    first = v.reshape(-1)[0].item() if v.numel() else 0
    if v.numel() and not bool((v == first).all()):
        raise DeclarationError(f"state {name!r}: its initial value is not one constant (it ranges "
                               f"{v.min().item()}..{v.max().item()}); a state starts from a constant fill. "
                               "Keep a learned start inside the step (add it to a zero state)")
    try:
        return StateSpec(name, tuple(v.shape), _TORCH_DTYPES[t.dtype], doc=doc, initial=float(first),
                         batch_axis=axis, reset=scope)
    except SignatureError as e:
        raise DeclarationError(str(e)) from None


def _only_unit_axis(t: torch.Tensor):
    units = [i for i, d in enumerate(t.shape) if d == 1]
    return units[0] if len(units) == 1 else None


def _to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "BTF":
        return x
    if layout == "TBF":
        return x.transpose(0, 1)
    if layout == "BFT":
        return x.transpose(1, 2)
    return x[..., 0]  # BT: raw samples [1, chunk]


def _from_layout_out(y: torch.Tensor, layout: str) -> torch.Tensor:
    return y.transpose(0, 1) if layout == "TBF" else y


def _torch_dtype(name: str):
    return {v: k for k, v in _TORCH_DTYPES.items()}[name]


def _shapes(specs) -> str:
    return ", ".join(f"{t.name} {list(t.shape)}" for t in specs)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("…" if len(text) > 300 else "")


# -- the entry point ------------------------------------------------------------------

def read_tokens(tokens) -> list[str]:
    """A list of symbols, or a tokens.txt ('symbol id' per line, sherpa-onnx / icefall)."""
    if tokens is None:
        return []
    if isinstance(tokens, (str, Path)):
        path = Path(tokens)
        if not path.is_file():
            raise DeclarationError(f"tokens file {path} does not exist")
        rows = [ln.rsplit(maxsplit=1) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        try:
            by_id = {int(i): s for s, i in rows}
        except ValueError:
            raise DeclarationError(f"{path}: each line must be 'symbol id'") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DeclarationError(f"{path}: ids must be 0..{len(by_id) - 1} without gaps")
        return [by_id[i] for i in range(len(by_id))]
    return [str(t) for t in tokens]


def declare_family(model: StreamingModel) -> DeclaredModel:
    """A built-in family through the same path: its plan (a Signature) says
    names, docs and scopes; its step functions are called and the derived
    signature must equal the plan."""
    plan = model.plan()
    fns = model.step_fns()
    roles = {"encoder": (FEATURES,), "decoder": (TOKENS,), "joiner": (ENCODER_OUT, DECODER_OUT)}
    steps = {}
    for g in plan.graphs:
        states = {s.name: torch.full(s.shape, s.initial, dtype=_torch_dtype(s.dtype)) for s in g.states}
        docs = {t.name: t.doc for t in list(g.inputs) + list(g.outputs) + list(g.states)}
        steps[g.name] = Step(fns[g.name], states=states or None,
                             args=roles[g.name] + tuple(State(s.name) for s in g.states),
                             returns=tuple(t.name for t in g.outputs) + tuple(State(s.name) for s in g.states),
                             batch_axis={s.name: s.batch_axis for s in g.states},
                             reset={s.name: s.reset for s in g.states}, docs=docs, module=model)
    declared = declare(plan.family, **steps, head=plan.decoder, chunk=plan.chunk_frames, shift=plan.shift_frames,
                       subsampling=plan.subsampling, frontend=plan.frontend, vocab_size=plan.vocab_size,
                       blank_id=plan.blank_id, context_size=plan.context_size or 2, trained=False,
                       source=None, extra=plan.extra)
    got = declared.signature()
    if got.to_dict() != {**plan.to_dict(), "context_size": got.context_size}:
        raise DeclarationError(f"family {plan.family!r}: the declared signature differs from its plan:\n"
                               f"  plan     {plan.to_json()}\n  declared {got.to_json()}")
    return declared


def declare(name: str, *, encoder: Step, decoder: Step | None = None, joiner: Step | None = None,
            head: str = "ctc", chunk: int, shift: int | None = None, subsampling: int | None = None,
            frontend: FrontendSpec | None = None, tokens=None, vocab_size: int | None = None, blank_id: int = 0,
            context_size: int = 2, trained: bool = True, offline: Callable | None = None,
            source: str | None = "caller", max_duration_s: float | None = None,
            extra: dict | None = None) -> DeclaredModel:
    """Declare a streaming model. `chunk` and `shift` are in frames of
    `frontend` (samples for a raw frontend); right context = chunk - shift.
    `offline(features [T, dim] ndarray) -> first output [1, T', ...]` enables
    the streaming == offline check. Raises DeclarationError (a UserError)
    naming what does not match."""
    if not _NAME.match(name or ""):
        raise DeclarationError(f"model name {name!r} must be letters, digits, _ and . (it names the bundle)")
    if head not in HEADS:
        raise DeclarationError(f"head {head!r} must be one of {HEADS}")
    if not isinstance(encoder, Step):
        raise DeclarationError(f"encoder= must be a Step(...), got {type(encoder).__name__}")
    steps = {"encoder": encoder}
    if head == "transducer":
        if not isinstance(decoder, Step) or not isinstance(joiner, Step):
            raise DeclarationError("head='transducer' needs decoder=Step(...) and joiner=Step(...)")
        steps.update(decoder=decoder, joiner=joiner)
    elif decoder is not None or joiner is not None:
        raise DeclarationError(f"decoder=/joiner= belong to head='transducer', not {head!r}")
    if encoder.layout not in LAYOUTS or encoder.output_layout not in ("BTF", "TBF"):
        raise DeclarationError(f"layout must be one of {LAYOUTS}, output_layout BTF or TBF")
    frontend = frontend or FrontendSpec()
    if (encoder.layout == "BT") != (frontend.kind == "raw"):
        raise DeclarationError("layout='BT' (raw samples) goes with frontend=FrontendSpec.raw(...), and only with it")
    shift = chunk if shift is None else shift
    if not (isinstance(chunk, int) and isinstance(shift, int) and 0 < shift <= chunk):
        raise DeclarationError(f"need 0 < shift <= chunk (frames), got chunk={chunk!r} shift={shift!r}")
    if max_duration_s is not None and not (isinstance(max_duration_s, (int, float)) and max_duration_s > 0
                                           and math.isfinite(max_duration_s)):
        raise DeclarationError(f"max_duration_s must be a positive number of seconds, got {max_duration_s!r}")
    where = _caller_file() if source == "caller" else source
    return DeclaredModel(name, steps, head, chunk, shift, frontend, read_tokens(tokens), blank_id, context_size,
                         trained, subsampling, offline, where, max_duration_s, vocab_size, dict(extra or {}))


def _caller_file() -> str:
    frame = inspect.stack()[2]
    return f"declared in {Path(frame.filename).name}"
