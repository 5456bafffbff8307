"""Parity of a converted artifact set against PyTorch.

Numbers: every graph is rolled out over the same chunks with its states
carried (the shared StateLoop): max abs difference of the outputs, and of the
states scaled by their magnitude (see runtime_py.stateloop.compare_rollouts).
Tolerances: fp32 1e-4 (only kernel and summation order differ); fp16 1e-2
(weights rounded to 11 significant bits); int8 has no elementwise bound that
means anything, so it is judged on the decoded output: the token sequence the
int8 set decodes from the parity stream against PyTorch's.

Decoded tokens mean something only for a trained model with a decoding head,
and only over enough of them. So int8 and fp16 of an untrained model, of a
model whose head is "none" (VAD, embeddings), or of a stream that decodes
fewer than MIN_AGREEMENT_TOKENS are judged by the numeric figure instead
(relative error of all outputs, RELATIVE_ERROR_BARS), and the record says why.

`rollout_check` is the same rollout between two ONNX files of one graph in
ONNX Runtime: how both rewrite routes (targets/ort_rewrite.py before `.ort`,
targets/tflite/prepare.py before onnx2tf) prove a rewritten graph against
the graph it was rewritten from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime_py.decoding import agreement
from runtime_py.signature import GraphSpec, Signature
from runtime_py.stateloop import (INT8_AGREEMENT_BAR, MIN_AGREEMENT_TOKENS, RELATIVE_ERROR_BARS, TOLERANCES,
                                  compare_rollouts, within)
from runtime_py.stream import Model


def graph_chunks(signature: Signature, graph: GraphSpec, speech_chunks: list[np.ndarray],
                 n: int, seed: int = 0) -> list[dict]:
    """Encoder: speech features. Decoder/joiner: seeded token contexts and
    joiner inputs drawn like the real ones (see _joiner_inputs)."""
    from edge.export import random_chunks

    if graph.name == "encoder":
        return [{graph.inputs[0].name: c.astype(np.float32)} for c in speech_chunks[:n]]
    return random_chunks(graph, signature, n, seed)


def rollout_check(reference: Path, candidate: Path, graph: GraphSpec, signature: Signature, chunks: int,
                  relative: bool = False) -> dict:
    """Both ONNX files rolled out in ONNX Runtime over the same chunks (speech for an encoder), each carrying
    its own states, so a change inside a cache path shows as it accumulates, not only for one step: the max
    abs difference of the outputs and the scaled one of the states (`relative`: also the relative error over
    every output, the figure an int8 file is judged by). Each caller holds its own tolerance."""
    from runtime_py.backends import open_runner

    from .golden import parity_stream

    speech = parity_stream(signature, chunks) if graph.name == "encoder" else []
    inputs = graph_chunks(signature, graph, speech, chunks, seed=0)
    rep = compare_rollouts(graph, open_runner(reference, graph, "onnx", threads=1),
                           open_runner(candidate, graph, "onnx", threads=1), inputs)
    out = {"chunks": rep["chunks"], "max_abs_diff": rep["max_abs_diff"],
           "state_max_scaled_diff": rep["state_max_scaled_diff"]}
    return {**out, "relative_error": rep["relative_error"]} if relative else out


def decode_tokens(signature: Signature, runs: dict, chunks: list[np.ndarray]) -> list[int]:
    """Tokens of the chunks through one stream (runtime_py.stream); a model
    that raises gives a RolloutError naming the chunk."""
    return Model(signature, runs, batch=False).decode_chunks(chunks)


def numeric_reason(signature: Signature, precision: str, trained: bool, ref_tokens: int) -> str | None:
    """Why this set is judged by the numeric figure, or None when the usual bar applies."""
    if precision == "fp32":
        return None
    if signature.decoder == "none":
        return f"head 'none': there are no tokens to compare, so {precision} is judged by the output error"
    if not trained:
        return f"untrained weights decode meaningless tokens, so {precision} is judged by the output error"
    if precision == "int8" and ref_tokens < MIN_AGREEMENT_TOKENS:
        return (f"the parity stream decodes only {ref_tokens} reference tokens (< {MIN_AGREEMENT_TOKENS}); "
                "token agreement over so few is refused, the output error decides")
    return None


def check_set(signature: Signature, reference: dict, candidate: dict, precision: str,
              speech_chunks: list[np.ndarray], n: int, ref_tokens: list[int] | None = None,
              trained: bool = True) -> dict[str, dict]:
    """Parity records per graph for one (backend, precision) artifact set."""
    tokens_ref = ref_tokens if ref_tokens is not None else decode_tokens(signature, reference, speech_chunks[:n])
    tokens_cand = decode_tokens(signature, candidate, speech_chunks[:n])
    agree = agreement(tokens_ref, tokens_cand)
    reason = numeric_reason(signature, precision, trained, len(tokens_ref))
    tol = TOLERANCES[precision]
    records = {}
    for graph in signature.graphs:
        r = compare_rollouts(graph, reference[graph.name], candidate[graph.name],
                             graph_chunks(signature, graph, speech_chunks, n))
        rec = {"reference": "pytorch", "chunks": r["chunks"], "max_abs_diff": r["max_abs_diff"],
               "state_max_abs_diff": r["state_max_abs_diff"], "state_max_scaled_diff": r["state_max_scaled_diff"],
               "tolerance": tol, "decoded_agreement": round(agree, 6) if tokens_ref else None,
               "reference_tokens": len(tokens_ref),
               "relative_error": r["relative_error"], "cosine": r["cosine"]}
        if reason:
            rec.update(judged_by="relative_error", relative_error_bar=RELATIVE_ERROR_BARS[precision],
                       why=reason, tolerance=None)
            rec["passed"] = bool(r["relative_error"] <= RELATIVE_ERROR_BARS[precision]
                                 and np.isfinite(r["max_abs_diff"]))
        elif tol is None:
            rec["agreement_bar"] = INT8_AGREEMENT_BAR
            rec["passed"] = agree >= INT8_AGREEMENT_BAR
        else:
            rec["passed"] = within(r, tol)
        records[graph.name] = rec
    return records
