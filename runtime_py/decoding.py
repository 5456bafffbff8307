"""Greedy decoding for CTC and transducer models, chunk by chunk (a
transducer's beam search is in beam_search.py).

Both decoders keep their own small state (the previous CTC label; the
transducer's token context and decoder output) so they can be fed one encoder
chunk at a time and report a partial result after every chunk.
"""

from __future__ import annotations

import numpy as np

from .signature import Signature

MAX_SYMBOLS_PER_FRAME = 3  # a transducer emitting more per 40 ms frame is diverging


class CtcGreedy:
    def __init__(self, blank_id: int = 0):
        self.blank_id = blank_id
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []
        self.frames: list[int] = []  # encoder frame index of each token
        self._prev = self.blank_id
        self._t = 0

    def accept(self, log_probs: np.ndarray) -> list[int]:
        """log_probs [1, T, V] or [T, V]; returns the tokens added."""
        lp = np.asarray(log_probs).reshape(-1, log_probs.shape[-1])
        added = []
        for label in lp.argmax(axis=-1).tolist():
            if label != self.blank_id and label != self._prev:
                self.tokens.append(label)
                self.frames.append(self._t)
                added.append(label)
            self._prev = label
            self._t += 1
        return added


class TransducerGreedy:
    """Greedy search over a stateless-decoder transducer.

    `decoder(y [1, context] int64) -> [1, J]` and `joiner(enc [1, J], dec [1, J])
    -> logits [1, V]` are plain callables, so any backend can be plugged in.
    `start`: the context before the first token, as the model was trained
    (Signature.start_context(); default all blank)."""

    def __init__(self, decoder, joiner, context_size: int, blank_id: int = 0,
                 max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME, start: list[int] | None = None):
        self.decoder, self.joiner = decoder, joiner
        self.context_size, self.blank_id = context_size, blank_id
        self.max_symbols = max_symbols_per_frame
        self.start = list(start) if start is not None else [blank_id] * context_size
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []
        self.frames: list[int] = []
        self._t = 0
        self._context = list(self.start)
        self._dec_out = self._run_decoder()

    def _run_decoder(self) -> np.ndarray:
        y = np.asarray([self._context], dtype=np.int64)
        return np.asarray(self.decoder(y), dtype=np.float32)

    def accept(self, encoder_out: np.ndarray) -> list[int]:
        """encoder_out [1, T, J] or [T, J]; returns the tokens added."""
        enc = np.asarray(encoder_out, dtype=np.float32).reshape(-1, encoder_out.shape[-1])
        added = []
        for frame in enc:
            for _ in range(self.max_symbols):
                logits = np.asarray(self.joiner(frame[None, :], self._dec_out))
                label = int(logits.reshape(-1).argmax())
                if label == self.blank_id:
                    break
                self.tokens.append(label)
                self.frames.append(self._t)
                added.append(label)
                self._context = self._context[1:] + [label]
                self._dec_out = self._run_decoder()
            self._t += 1
        return added


class PassThrough:
    """The head "none" (VAD, keyword spotting, embeddings): nothing to decode;
    the app reads each chunk's outputs. Keeps the last `keep` of them."""

    def __init__(self, keep: int = 100, name: str = "output"):
        self.keep, self.name = keep, name
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []  # never any: the client's text stays empty
        self.frames: list[int] = []
        self.outputs: list[np.ndarray] = []
        self.chunks = 0

    def accept(self, output: np.ndarray) -> list[int]:
        self.outputs = (self.outputs + [np.asarray(output)])[-self.keep:]
        self.chunks += 1
        return []

    def summary(self) -> str:
        """What a person reads instead of a transcript: the output over the
        chunks kept (e.g. a VAD's speech probability)."""
        if not self.outputs:
            return ""
        v = np.stack([np.asarray(o, np.float64).ravel() for o in self.outputs])
        shape = list(np.asarray(self.outputs[-1]).shape)
        return (f"{self.name} {shape}: {self.chunks} chunks, last {_short(v[-1])}, "
                f"mean {_short(v.mean(axis=0))}, max {_short(v.max(axis=0))}")


def _short(v: np.ndarray) -> str:
    return f"{v[0]:.3g}" if v.size == 1 else "[" + ", ".join(f"{x:.3g}" for x in v[:4]) + (", ...]" if v.size > 4 else "]")


def tokens_to_text(ids: list[int], tokens: list[str]) -> str:
    """Join token symbols; '▁' (U+2581) marks a word start, as in sentencepiece."""
    text = "".join(tokens[i] for i in ids)
    return " ".join(text.replace("\u2581", " ").split())


def word_vocabulary(tokens: list[str], blank_id: int = 0) -> list[str] | None:
    """The words a model can output when every token but the blank is a
    whole word ('▁word'), as in the shipped command-word models; None for
    sub-word or character vocabularies, which can spell anything."""
    words = [t for i, t in enumerate(tokens) if i != blank_id]
    if not words or not all(t.startswith("\u2581") and len(t) > 1 for t in words):
        return None
    return [t[1:] for t in words]


SEARCHES = ("greedy", "modified_beam_search")  # a transducer's; CTC and "none" decode greedily


def make_decoder(signature: Signature, runs: dict | None = None,
                 max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME, search: str = "greedy", beam: int = 4):
    """The decoder a signature calls for. For a transducer, `runs` maps
    'decoder' and 'joiner' to `run(feeds) -> dict` callables, and `search`
    picks greedy or modified beam search (`beam` hypotheses)."""
    if search not in SEARCHES:
        raise ValueError(f"search {search!r} must be one of {SEARCHES}")
    if signature.decoder == "ctc":
        return CtcGreedy(signature.blank_id)
    if signature.decoder == "none":
        return PassThrough(name=signature.graph("encoder").outputs[0].name)
    if not runs or not {"decoder", "joiner"} <= set(runs):
        raise ValueError("a transducer needs 'decoder' and 'joiner' runners")
    dec_g, join_g = signature.graph("decoder"), signature.graph("joiner")
    dec_in, dec_out = dec_g.inputs[0].name, dec_g.outputs[0].name
    j_enc, j_dec = (t.name for t in join_g.inputs)
    j_out = join_g.outputs[0].name
    decoder = lambda y: runs["decoder"]({dec_in: y})[dec_out]  # noqa: E731
    joiner = lambda e, d: runs["joiner"]({j_enc: e, j_dec: d})[j_out]  # noqa: E731
    if search == "modified_beam_search":
        from .beam_search import ModifiedBeamSearch

        return ModifiedBeamSearch(decoder, joiner, signature.context_size, signature.blank_id, beam,
                                  start=signature.start_context())
    return TransducerGreedy(decoder, joiner, signature.context_size, signature.blank_id,
                            max_symbols_per_frame, start=signature.start_context())


def agreement(ref: list, hyp: list) -> float:
    """1 - edit distance / reference length, clamped at 0 (1.0 for two empty sequences)."""
    if not ref:
        return 1.0 if not hyp else 0.0
    return max(0.0, 1.0 - edit_distance(ref, hyp) / len(ref))


def edit_distance(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]
