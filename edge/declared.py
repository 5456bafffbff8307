"""DeclaredModel: a user's model as a StreamingModel. It calls the step once
to derive the signature (shapes, dtypes, batch axes, names), checks every
next state against its state, and makes the graph modules the exporter
traces: one input `x`, then the flat states; outputs, then `<state>_next`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .families.base import StreamingModel
from .roles import (TORCH_DTYPES, DECODER_OUT, ENCODER_OUT, FEATURES, LENGTHS, STATES, TOKENS, Const,
                    Counter, DeclarationError, Derived, State, Step, from_layout_out, match_returns, modules_of_step,
                    one_line, only_unit_axis, output_names, path_text, shapes_text, state_names, state_spec,
                    to_layout, torch_dtype, flatten, unflatten)
from runtime_py.stateloop import initial_state

from .signature import FrontendSpec, GraphSpec, Signature, SignatureError, StateSpec, TensorSpec

# -- the declared model -------------------------------------------------------------

@dataclass
class _FlatState:
    name: str
    spec: StateSpec
    counter: Counter | None = None  # an input counter the step does not return


class _GraphModule(nn.Module):
    """forward(x or graph inputs, *flat states) -> (*outputs, *next flat states)."""

    def __init__(self, owner: "DeclaredModel", graph: str, clamp: bool = True):
        super().__init__()
        self.owner_ref = [owner]  # not a submodule: avoids a parameter cycle
        self.graph = graph
        self.clamp = clamp  # False: counters run past their declared max (the stream proof's reference)
        # registered, so tracers see their weights as parameters, not as constants
        self.user_modules = nn.ModuleList(owner.modules_of(graph))

    def forward(self, *args):
        return self.owner_ref[0]._call(self.graph, list(args), clamp=self.clamp)


class DeclaredModel(StreamingModel):
    """A user's model as a StreamingModel: signature and graph modules from a declaration."""

    family = "declared"

    def __init__(self, name: str, steps: dict[str, Step], head: str, chunk: int, shift: int,
                 frontend: FrontendSpec, tokens: list[str], blank_id: int, context_size: int,
                 trained: bool, subsampling: int | None, offline: Callable | None, source: str | None,
                 max_duration_s: float | None, vocab_size: int | None = None, extra: dict | None = None,
                 decoder_start=None):
        super().__init__(config=None)
        self.family = name
        self.steps = steps
        self.head = head
        self.chunk, self.shift = chunk, shift
        self.frontend = frontend
        self.tokens = tokens
        self.blank_id, self.context_size = blank_id, context_size
        self.decoder_start = decoder_start
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
        self._modules_of = {g: modules_of_step(step) for g, step in steps.items()}
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
    def counter_limits(self) -> dict[str, dict[str, int]]:
        """{graph: {state: max}}: the counters and counters= states the graph saturates."""
        return {g: dict(lim) for g, lim in self._limits.items()}

    def unclamped_module(self, name: str) -> nn.Module:
        """The graph as the user's own step computes it: counters and
        counters= states advance past their declared max. The stream proof's
        reference, so a clamp cannot hide where the model's positions end."""
        self.graph_module(name)  # the same KeyError for an unknown graph
        return _GraphModule(self, name, clamp=False)

    @property
    def vocab_size(self) -> int:
        return self._signature.vocab_size

    def info(self) -> dict:
        return {"source": self.source, "tokens": list(self.tokens), "meta": {"trained": self.trained}}

    def forward(self, feats, lengths):
        raise NotImplementedError("a declared model has no offline forward; pass offline= to declare()")

    # -- calling the user's step -------------------------------------------------
    def _initial_flat(self, graph: str) -> list[torch.Tensor]:
        return [torch.from_numpy(initial_state(f.spec)) for f in self._flat[graph]]

    def _call(self, graph: str, args: list, clamp: bool = True) -> tuple:
        step = self.steps[graph]
        flat = self._flat[graph]
        n_in = len(args) - len(flat)
        inputs, state_vals = args[:n_in], args[n_in:]
        by_name = {f.name: v for f, v in zip(flat, state_vals)}
        user_states = [v for f, v in zip(flat, state_vals) if f.counter is None]
        tree = unflatten(self._trees[graph], user_states) if self._trees[graph] is not None else None

        def value(role):
            if role is FEATURES:
                return to_layout(inputs[0], step.layout)
            if role is STATES:
                return tree
            if role is LENGTHS:
                return torch.tensor([self.chunk], dtype=torch.int64)
            if role is TOKENS or role is ENCODER_OUT:
                return inputs[0]
            if role is DECODER_OUT:
                return inputs[1]
            if isinstance(role, (State, Counter)):
                return by_name[role.name]
            if isinstance(role, Const):
                return role.value
            if isinstance(role, Derived):
                return role.fn(dict(by_name))
            raise DeclarationError(f"graph {graph!r}: unknown role {role!r} in args")

        result = step.fn(*[value(r) for r in step.args], **{k: value(r) for k, r in step.kwargs.items()})
        outputs, nexts = {}, {}
        match_returns(step.returns, result, outputs, nexts, self._trees[graph], graph)
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
            limit = self._limits[graph].get(f.name) if clamp else None
            if limit is not None:
                nexts[f.name] = torch.clamp(nexts[f.name], max=limit)
        outs = [self._normalise_output(graph, i, outputs[n]) for i, n in enumerate(self._out_names[graph])]
        return tuple(outs) + tuple(nexts[f.name].to(torch_dtype(f.spec.dtype)) for f in flat)

    def _normalise_output(self, graph: str, index: int, y: torch.Tensor) -> torch.Tensor:
        if self.head == "none" or index:
            return y
        if graph == "encoder":
            return from_layout_out(y, self.steps[graph].output_layout)
        # decoder_out / logits: [batch, dim] whatever singleton time axes the step adds; the batch axis
        # kept (not [1, -1]) so a graph exported with one stacks hypotheses instead of concatenating them
        return y.reshape(y.shape[0] if y.dim() > 1 else 1, -1)

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
        for g, step, in_specs in graphs:
            if in_specs is None:
                enc_dim = specs["encoder"].outputs[0].shape[-1]
                dec_dim = specs["decoder"].outputs[0].shape[-1]
                in_specs = (TensorSpec("encoder_out", (1, enc_dim), doc="one encoder frame"),
                            TensorSpec("decoder_out", (1, dec_dim), doc="current decoder output"))
            specs[g] = self._probe(g, step, in_specs)
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
                             decoder_start=self.decoder_start, extra=self._extra)
        except SignatureError as e:
            raise DeclarationError(str(e)) from None

    def _prepare_states(self, g: str, step: Step) -> None:
        tree = step.states(1) if callable(step.states) else step.states
        leaves = flatten(tree) if tree is not None else []
        axes = self._batch_axes(step, leaves)
        names = state_names(step, [p for p, _ in leaves])
        scopes = step.reset if isinstance(step.reset, dict) else {}
        flat = []
        for (path, t), name, axis in zip(leaves, names, axes):
            flat.append(_FlatState(name, state_spec(name, t, axis, scopes.get(name, step.reset if isinstance(
                step.reset, str) else "utterance"), step.docs.get(name, f"{path_text(path)} of the user's step"))))
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
                return [only_unit_axis(t) for _, t in leaves]
            two = flatten(step.states(2))
            if len(two) != len(leaves):
                raise DeclarationError(f"states(2) gave {len(two)} tensors, states(1) {len(leaves)}")
            axes = []
            for (path, a), (_, b) in zip(leaves, two):
                diff = [i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y]
                axes.append(diff[0] if len(diff) == 1 and a.shape[diff[0]] == 1 else None)
            return axes
        if isinstance(step.batch_axis, dict):
            return [step.batch_axis.get(n) for n in state_names(step, [p for p, _ in leaves])]
        return [step.batch_axis if t.dim() else None for _, t in leaves]

    def _probe(self, g: str, step: Step, in_specs: tuple) -> GraphSpec:
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
        self._out_names[g] = output_names(step.returns)
        if not self._out_names[g]:
            raise DeclarationError(f"graph {g!r}: returns={step.returns!r} names no output (use a string)")
        try:
            with torch.no_grad():
                result = self._call(g, feeds + self._initial_flat(g))
        except DeclarationError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the user's code raises
            raise DeclarationError(f"graph {g!r}: calling the step on one chunk ({shapes_text(in_specs)}) with the "
                                   f"declared initial states raised {type(e).__name__}: {one_line(e)}") from None
        outs = result[:len(self._out_names[g])]
        nexts = result[len(self._out_names[g]):]
        bad = []
        for f, y in zip(flat, nexts):  # shapes must match; a dtype is cast to the state's (e.g. int32 -> int64)
            if tuple(y.shape) != f.spec.shape:
                bad.append(f"{f.name}: got {list(y.shape)}, want {list(f.spec.shape)}")
        if bad:
            raise DeclarationError(f"graph {g!r}: the step's next states differ from the declared states: "
                                   + "; ".join(bad[:6]) + (f" (+{len(bad) - 6} more)" if len(bad) > 6 else ""))
        out_specs = []
        for n, y in zip(self._out_names[g], outs):
            if y.dtype not in TORCH_DTYPES:
                raise DeclarationError(f"graph {g!r}: output {n!r} is {y.dtype}; supported: "
                                       f"{sorted(TORCH_DTYPES.values())}")
            if not all(np.isfinite(y.float().numpy()).ravel()):
                raise DeclarationError(f"graph {g!r}: output {n!r} is not finite on the first chunk")
            out_specs.append(TensorSpec(n, tuple(y.shape), TORCH_DTYPES[y.dtype], doc=step.docs.get(n, "")))
        try:
            spec = GraphSpec(g, inputs=in_specs, outputs=tuple(out_specs), states=tuple(f.spec for f in flat))
        except SignatureError as e:
            raise DeclarationError(f"graph {g!r}: {e}") from None
        return spec

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


