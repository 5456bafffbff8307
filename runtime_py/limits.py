"""What a manifest can make the client allocate, bounded before anything is.

manifest.json is the one file of a bundle no sha256 covers, and its numbers
(state shapes, chunk, frontend) decide how much memory a client asks for: a
state declared [100000, 100000, 100] is a 3.6 TiB `np.zeros`. Opening a
bundle (`manifest.Bundle`) runs `check_client(signature, model_bytes)`, which
looks only at numbers and allocates nothing until they are known to be small:

1. the numbers agree with each other where the client relies on it: the
   encoder's first input holds one chunk (chunk_frames x the feature dim: a
   Stream reshapes every chunk into it); a CTC output or a transducer joiner
   emits ids that tokens.txt has; a transducer decoder's input holds
   context_size tokens; blank_id is a token;
2. the bytes one stream allocates from the declared numbers (`stream_bytes`)
   stay within `budget(model_bytes)` = max(MIN_BUDGET_BYTES, the model's
   size). A model computes its states from its weights, so states larger than
   the model files do not describe a real model, and below 64 MiB nothing
   harmful can be asked for (the shipped models: states of 4 KiB (lstm,
   transducer) and 118 KiB (conformer), one stream 230-510 KiB in all);
3. the frontend's options build (window, frequencies, dither, cepstra), as
   every stream will build them.

A failure is one SignatureError naming the tensor or the field. Torch-free.
"""

from __future__ import annotations

import math

import numpy as np

from .signature import Signature, SignatureError, TensorSpec

MIB = 1 << 20
MIN_BUDGET_BYTES = 64 * MIB
FLOAT64 = 8  # the frontend computes in float64


def human_bytes(n: int) -> str:
    """Exact integers of any size (a manifest's shape can overflow a float)."""
    n = int(n)
    if n < 1024:
        return f"{n} bytes"
    for power, unit in enumerate(("KiB", "MiB", "GiB", "TiB"), 1):
        if n < 1024 ** (power + 1) or unit == "TiB" and n < 1024 ** 8:
            return f"{n / 1024 ** power:.1f} {unit}"
    return f"over 2^{n.bit_length() - 1} bytes"


def tensor_bytes(t: TensorSpec) -> int:
    """Exact Python integers: a shape of any size gives its true byte count."""
    return math.prod(t.shape) * np.dtype(t.dtype).itemsize


def stream_bytes(signature: Signature) -> list[tuple[str, int]]:
    """(what, bytes) one stream allocates from the signature's numbers: every
    graph's inputs and outputs, each state twice (itself and `<name>_next`),
    the feature buffer (a chunk plus `left_pad` frames) and, for fbank/mfcc,
    the frontend's float64 tables (window, mel filters, DCT)."""
    parts = []
    for g in signature.graphs:
        for kind, tensors in (("input", g.inputs), ("output", g.outputs)):
            parts += [(f"{kind} {t.name!r} of graph {g.name!r} {list(t.shape)} {t.dtype}", tensor_bytes(t))
                      for t in tensors]
        parts += [(f"state {s.name!r} of graph {g.name!r} {list(s.shape)} {s.dtype} (and its {s.next_name})",
                   2 * tensor_bytes(s)) for s in g.states]
    fe = signature.frontend
    hop = signature.shift_frames * fe.frame_shift  # samples per encoder step
    parts.append((f"audio buffer (4 hops of {hop} samples, or half a second at {fe.sample_rate} Hz)",
                  max(4 * hop, fe.sample_rate // 2) * 4))
    frames = signature.chunk_frames + fe.left_pad
    parts.append((f"feature buffer ({signature.chunk_frames} chunk + {fe.left_pad} left_pad frames "
                  f"x {fe.feature_dim})", frames * fe.feature_dim * 4))
    if fe.kind != "raw":
        fft = 1 << max(fe.frame_length - 1, 0).bit_length()
        dct = fe.num_mel_bins * fe.num_ceps if fe.kind == "mfcc" else 0
        tables = fe.frame_length + fft // 2 * fe.num_mel_bins + dct
        parts.append((f"frontend tables (frame_length {fe.frame_length}, num_mel_bins {fe.num_mel_bins})",
                      tables * FLOAT64))
    # a negative field (refused by the checks after this one) must not offset a huge one here
    return [(what, max(0, n)) for what, n in parts]


def budget(model_bytes: int) -> int:
    return max(MIN_BUDGET_BYTES, int(model_bytes))


def _first(signature: Signature, graph: str, kind: str) -> TensorSpec:
    tensors = getattr(signature.graph(graph), kind)
    if not tensors:
        raise SignatureError(f"graph {graph!r} declares no {kind}")
    return tensors[0]


def check_consistent(signature: Signature) -> None:
    """The cross-field facts of check 1 (each one a client step that would
    otherwise fail mid-stream, or index past tokens.txt)."""
    sig, fe = signature, signature.frontend
    x = _first(sig, "encoder", "inputs")
    want = sig.chunk_frames * fe.feature_dim
    if math.prod(x.shape) != want:
        raise SignatureError(
            f"encoder input {x.name!r} is declared {list(x.shape)} ({math.prod(x.shape)} values), but a chunk "
            f"is chunk_frames {sig.chunk_frames} x feature dim {fe.feature_dim} = {want} values")
    if sig.decoder == "none":
        return
    if not 0 <= sig.blank_id < sig.vocab_size:
        raise SignatureError(f"blank_id {sig.blank_id} is not a token id (vocab_size {sig.vocab_size})")
    scores = _first(sig, "encoder" if sig.decoder == "ctc" else "joiner", "outputs")
    if not scores.shape or scores.shape[-1] > sig.vocab_size:
        raise SignatureError(f"output {scores.name!r} {list(scores.shape)} scores more token ids than "
                             f"vocab_size {sig.vocab_size} (tokens.txt)")
    if sig.decoder == "transducer":
        y = _first(sig, "decoder", "inputs")
        if y.shape != (1, sig.context_size):
            raise SignatureError(f"decoder input {y.name!r} is declared {list(y.shape)}, but the client feeds "
                                 f"[1, context_size] = [1, {sig.context_size}] tokens")


def check_budget(signature: Signature, model_bytes: int) -> None:
    parts = stream_bytes(signature)
    total, limit = sum(n for _, n in parts), budget(model_bytes)
    if total > limit:
        what, largest = max(parts, key=lambda p: p[1])
        raise SignatureError(
            f"one stream would allocate {human_bytes(total)}, {what} alone {human_bytes(largest)}; a bundle may "
            f"ask for at most {human_bytes(limit)} (max({human_bytes(MIN_BUDGET_BYTES)}, its model files "
            f"{human_bytes(model_bytes)})): the manifest does not describe a real model")


def check_frontend(signature: Signature) -> None:
    """Build the frontend once (tables only, bounded by check_budget first)."""
    from .frontend import StreamingFrontend

    try:
        StreamingFrontend(signature.frontend)
    except (ValueError, OverflowError) as e:
        raise SignatureError(f"frontend: {e}") from None


def check_client(signature: Signature, model_bytes: int) -> None:
    """All three checks, in the order that keeps allocation last."""
    check_consistent(signature)
    check_budget(signature, model_bytes)
    check_frontend(signature)
