"""The explicit-state loop, driven only by a graph's declared signature.

Every backend (PyTorch, ONNX Runtime, LiteRT, a golden file) is reduced to a
`run(feeds: dict[str, ndarray]) -> dict[str, ndarray]` callable; this module
allocates the states from the spec, feeds each `<state>_next` back, and resets
by scope. The parity checks and the streaming client share this one loop, so
what is verified is what ships.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .signature import GraphSpec, StateSpec

RunFn = Callable[[dict], dict]

# Parity bars per precision, shared by the exporter, the build and edge-verify.
# fp32: only kernel choice and summation order differ. fp16: weights rounded to
# 11 significant bits. int8 has no elementwise bound that means anything: it is
# judged on the decoded tokens, at most 5 edits per 100 reference tokens.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}
INT8_AGREEMENT_BAR = 0.95
# Token agreement proves something only over enough tokens: below this many
# reference tokens it is refused and the numeric figure below decides instead.
MIN_AGREEMENT_TOKENS = 20
# The numeric figure, for models whose decoded tokens mean nothing (untrained
# weights, a head of "none", too few tokens): the relative RMS error of all
# outputs over the rollout, ||ref - cand|| / ||ref||. fp16 rounds weights to
# 11 significant bits (relative 2.4e-4 each); bar 1e-2. int8 rounds each
# weight tensor to 255 levels (relative step ~1e-2 per weight, accumulating
# over layers); bar 0.1. Measured over 200 chunks of speech: the shipped
# conformer's fp16 TFLite 3.9e-5 and its ORT int8 3.3e-3; the untrained
# Zipformer2's ORT int8 encoder 1.9e-2 (23.6 M) and 5.0e-2 (2.8 M); a raw-
# sample VAD's ORT int8 2.3e-4.
RELATIVE_ERROR_BARS = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1}


def initial_state(spec: StateSpec) -> np.ndarray:
    return np.full(spec.shape, spec.initial, dtype=np.dtype(spec.dtype))


def initial_states(graph: GraphSpec) -> dict[str, np.ndarray]:
    return {s.name: initial_state(s) for s in graph.states}


class StateLoop:
    """Runs one graph chunk by chunk, owning its states."""

    def __init__(self, graph: GraphSpec, run: RunFn):
        self.graph = graph
        self.run = run
        self.states = initial_states(graph)
        self.steps = 0

    def feeds(self, inputs: dict) -> dict:
        """The graph's inputs with the current states added."""
        feeds = dict(inputs)
        missing = [t.name for t in self.graph.inputs if t.name not in feeds]
        if missing:
            raise KeyError(f"graph {self.graph.name!r}: missing inputs {missing}")
        feeds.update(self.states)
        return feeds

    def absorb(self, result: dict) -> dict:
        """Keep each `<state>_next` of a run's result as the state; returns the outputs."""
        for s in self.graph.states:
            nxt = result.get(s.next_name)
            if nxt is None:
                raise KeyError(f"graph {self.graph.name!r}: backend returned no {s.next_name!r}")
            self.states[s.name] = np.asarray(nxt, dtype=np.dtype(s.dtype)).reshape(s.shape)
        self.steps += 1
        return {t.name: result[t.name] for t in self.graph.outputs}

    def step(self, inputs: dict) -> dict:
        return self.absorb(self.run(self.feeds(inputs)))

    def reset(self, scope: str = "utterance") -> list[str]:
        """Return states to their initial value. scope="utterance" resets the
        states declared with reset="utterance"; scope="session" resets all."""
        if scope not in ("utterance", "session"):
            raise ValueError(f"reset scope {scope!r} must be 'utterance' or 'session'")
        done = []
        for s in self.graph.states:
            if scope == "session" or s.reset == "utterance":
                self.states[s.name] = initial_state(s)
                done.append(s.name)
        return done


class RolloutError(RuntimeError):
    """The reference or the candidate raised during a rollout; says at which chunk."""


def compare_rollouts(graph: GraphSpec, reference: RunFn, candidate: RunFn,
                     chunks: Iterable[dict]) -> dict:
    """Roll both backends over the same input chunks, each carrying its own
    states. Reports, per chunk, the max abs difference of the outputs, and for
    the states both the max abs difference and the scaled difference
    |a - b| / max(1, |a|): a trained LSTM's cell state reaches |c| ~ 1e3, where
    fp32 resolution alone is ~1e-4, so an absolute bar on states would measure
    float resolution, while a real state error (a wrong slice, a dropped
    cache) is O(1) in scaled terms and shows before the outputs do."""
    ref, cand = StateLoop(graph, reference), StateLoop(graph, candidate)
    per_chunk, state_abs, state_scaled = [], 0.0, 0.0
    err2 = ref2 = dot = cand2 = 0.0
    for i, inputs in enumerate(chunks):
        for which, loop in (("reference", ref), ("candidate", cand)):
            try:
                out = loop.step(inputs)
            except Exception as e:  # noqa: BLE001 - a user's model raises its own types
                raise RolloutError(f"graph {graph.name!r}: the {which} raised at chunk {i} "
                                   f"(after {i} chunks): {type(e).__name__}: "
                                   f"{' '.join(str(e).split())[:300]}") from None
            if which == "reference":
                a = out
            else:
                b = out
        diff = 0.0
        for name in a:
            x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
            if x.size:
                diff = max(diff, float(np.max(np.abs(x - y))))
            err2 += float(np.sum((x - y) ** 2))
            ref2 += float(np.sum(x * x))
            cand2 += float(np.sum(y * y))
            dot += float(np.sum(x * y))
        for name in ref.states:
            x, y = ref.states[name].astype(np.float64), cand.states[name].astype(np.float64)
            d = np.abs(x - y)
            state_abs = max(state_abs, float(d.max()))
            state_scaled = max(state_scaled, float((d / np.maximum(1.0, np.abs(x))).max()))
        per_chunk.append(diff)
    if not per_chunk:
        raise ValueError("compare_rollouts needs at least one chunk")
    n = len(per_chunk)
    q = max(1, n // 4)
    return {
        "chunks": n,
        "max_abs_diff": max(per_chunk),
        "first_chunk_diff": per_chunk[0],
        "first_quarter_max": max(per_chunk[:q]),
        "last_quarter_max": max(per_chunk[-q:]),
        "state_max_abs_diff": state_abs,
        "state_max_scaled_diff": state_scaled,
        # the numeric figure (see RELATIVE_ERROR_BARS): over every output of every chunk
        "relative_error": float(np.sqrt(err2 / ref2)) if ref2 > 0 else float(np.sqrt(err2)),
        "cosine": float(dot / np.sqrt(ref2 * cand2)) if ref2 > 0 and cand2 > 0 else float(err2 == 0),
        "per_chunk": per_chunk,
    }


def within(report: dict, tolerance: float) -> bool:
    """The outputs within `tolerance` (absolute) and the states within it in
    scaled terms (see compare_rollouts)."""
    return report["max_abs_diff"] <= tolerance and report["state_max_scaled_diff"] <= tolerance
