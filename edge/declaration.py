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
from pathlib import Path
from typing import Callable

import torch

from .declared import DeclaredModel
from .families.base import StreamingModel
from .roles import (DECODER_OUT, ENCODER_OUT, FEATURES, HEADS, LAYOUTS, LENGTHS, STATES, TOKENS, Const, Counter,
                    DeclarationError, Derived, State, Step, NAME, torch_dtype)
from .signature import FrontendSpec

__all__ = ["declare", "declare_family", "check_facts", "check_chunk", "read_tokens", "Step", "State", "Const",
           "Counter", "Derived", "FEATURES", "STATES", "LENGTHS", "TOKENS", "ENCODER_OUT", "DECODER_OUT", "DeclarationError", "DeclaredModel"]


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
        states = {s.name: torch.full(s.shape, s.initial, dtype=torch_dtype(s.dtype)) for s in g.states}
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
            context_size: int = 2, decoder_start=None, trained: bool = True, offline: Callable | None = None,
            source: str | None = "caller", max_duration_s: float | None = None,
            extra: dict | None = None) -> DeclaredModel:
    """Declare a streaming model. `chunk` and `shift` are in frames of
    `frontend` (samples for a raw frontend); right context = chunk - shift.
    `offline(features [T, dim] ndarray) -> first output [1, T', ...]` enables
    the streaming == offline check. `decoder_start` (transducer): the
    `context_size` token ids the decoder was trained to start from; None is
    all blank, icefall/sherpa-onnx models start from [-1, ..., blank] (-1: a
    zero embedding). Raises DeclarationError (a UserError) naming what does
    not match."""
    check_facts(name, head, max_duration_s)
    check_chunk(chunk, shift)
    if not isinstance(encoder, Step):
        raise DeclarationError(f"encoder= must be a Step(...), got {type(encoder).__name__}")
    steps = {"encoder": encoder}
    if head == "transducer":
        if not isinstance(decoder, Step) or not isinstance(joiner, Step):
            raise DeclarationError("head='transducer' needs decoder=Step(...) and joiner=Step(...)")
        steps.update(decoder=decoder, joiner=joiner)
    elif decoder is not None or joiner is not None or decoder_start is not None:
        raise DeclarationError(f"decoder=/joiner=/decoder_start= belong to head='transducer', not {head!r}")
    if encoder.layout not in LAYOUTS or encoder.output_layout not in ("BTF", "TBF"):
        raise DeclarationError(f"layout must be one of {LAYOUTS}, output_layout BTF or TBF")
    frontend = frontend or FrontendSpec()
    if (encoder.layout == "BT") != (frontend.kind == "raw"):
        raise DeclarationError("layout='BT' (raw samples) goes with frontend=FrontendSpec.raw(...), and only with it")
    shift = chunk if shift is None else shift
    where = _caller_file() if source == "caller" else source
    return DeclaredModel(name, steps, head, chunk, shift, frontend, read_tokens(tokens), blank_id, context_size,
                         trained, subsampling, offline, where, max_duration_s, vocab_size, dict(extra or {}),
                         decoder_start=decoder_start)


# The facts every declaration states, checked the same way (one DeclarationError naming the key) for
# edge.declare and for an --onnx model's JSON spec (targets/onnx_spec.py), whose keys are declare's.

def check_facts(name: str, head: str, max_duration_s) -> None:
    if not NAME.match(name or ""):
        raise DeclarationError(f"model name {name!r} must be letters, digits, _ and . (it names the bundle)")
    if head not in HEADS:
        raise DeclarationError(f"head {head!r} must be one of {HEADS}")
    if max_duration_s is not None and not (isinstance(max_duration_s, (int, float)) and max_duration_s > 0
                                           and math.isfinite(max_duration_s)):
        raise DeclarationError(f"max_duration_s must be a positive number of seconds, got {max_duration_s!r}")


def check_chunk(chunk, shift) -> None:
    """`shift` None means `chunk` (no right context)."""
    shift = chunk if shift is None else shift
    if not (isinstance(chunk, int) and isinstance(shift, int) and 0 < shift <= chunk):
        raise DeclarationError(f"need 0 < shift <= chunk (frames), got chunk={chunk!r} shift={shift!r}")


def _caller_file() -> str:
    frame = inspect.stack()[2]
    return f"declared in {Path(frame.filename).name}"
