"""Modified beam search for a stateless-decoder transducer, chunk by chunk.

The search icefall and sherpa-onnx call `modified_beam_search`: each encoder
frame extends every hypothesis by at most one symbol. For every kept
hypothesis the joiner scores all tokens; the `beam` best (hypothesis, token)
pairs over all of them survive, blank keeping the hypothesis as it is and any
other token appending it; hypotheses that end up with the same tokens are
merged (their probabilities added). The kept hypotheses carry over from one
chunk to the next, so a stream decodes exactly as one call over all frames.

The best hypothesis is the one with the highest log-probability per symbol
(the start context counted), as icefall picks it. Its tokens can change from
one chunk to the next: a partial result may be revised, a final one is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # emitted so far (the start context excluded)
    frames: tuple[int, ...]  # encoder frame of each token
    log_prob: float


class ModifiedBeamSearch:
    """`decoder(y [1, context] int64) -> [1, J]` and `joiner(enc [1, J], dec [1, J])
    -> logits [1, V]`: the same callables as TransducerGreedy."""

    def __init__(self, decoder, joiner, context_size: int, blank_id: int = 0, beam: int = 4,
                 start: list[int] | None = None):
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        self.decoder, self.joiner = decoder, joiner
        self.context_size, self.blank_id, self.beam = context_size, blank_id, beam
        self.start = tuple(start) if start is not None else (blank_id,) * context_size
        self.reset()

    def reset(self) -> None:
        self.hyps: list[Hypothesis] = [Hypothesis((), (), 0.0)]
        self._t = 0
        self._dec_cache: dict[tuple[int, ...], np.ndarray] = {}

    # -- what a client reads -------------------------------------------------------------
    def best(self) -> Hypothesis:
        norm = lambda h: h.log_prob / (len(h.tokens) + self.context_size or 1)  # noqa: E731
        return max(self.hyps, key=norm)

    @property
    def tokens(self) -> list[int]:
        return list(self.best().tokens)

    @property
    def frames(self) -> list[int]:
        return list(self.best().frames)

    # -- the search ---------------------------------------------------------------------
    def _context(self, tokens: tuple[int, ...]) -> tuple[int, ...]:
        return (self.start + tokens)[-self.context_size:] if self.context_size else ()

    def _dec_out(self, context: tuple[int, ...]) -> np.ndarray:
        if context not in self._dec_cache:
            y = np.asarray([context], dtype=np.int64)
            self._dec_cache[context] = np.asarray(self.decoder(y), dtype=np.float32)
        return self._dec_cache[context]

    def _frame(self, frame: np.ndarray) -> None:
        scores = []
        for h in self.hyps:
            logits = np.asarray(self.joiner(frame[None, :], self._dec_out(self._context(h.tokens))),
                                dtype=np.float64).reshape(-1)
            logp = logits - np.logaddexp.reduce(logits)  # log-softmax (idempotent on log-probs)
            scores.append(h.log_prob + logp)
        flat = np.concatenate(scores)
        vocab = scores[0].size
        top = np.argsort(-flat, kind="stable")[: self.beam]
        merged: dict[tuple[int, ...], Hypothesis] = {}
        for k in top.tolist():
            h, label, lp = self.hyps[k // vocab], k % vocab, float(flat[k])
            if label == self.blank_id:
                new = Hypothesis(h.tokens, h.frames, lp)
            else:
                new = Hypothesis(h.tokens + (label,), h.frames + (self._t,), lp)
            old = merged.get(new.tokens)
            if old is not None:  # the same tokens by two paths: one hypothesis, both probabilities
                new = Hypothesis(old.tokens, old.frames, float(np.logaddexp(old.log_prob, new.log_prob)))
            merged[new.tokens] = new
        self.hyps = list(merged.values())
        live = {self._context(h.tokens) for h in self.hyps}  # keep the decoder outputs still needed
        self._dec_cache = {c: v for c, v in self._dec_cache.items() if c in live}
        self._t += 1

    def accept(self, encoder_out: np.ndarray) -> list[int]:
        """encoder_out [1, T, J] or [T, J]; returns the best hypothesis's tokens
        past what it shared with the previous best (a revision replaces them)."""
        before = self.best().tokens
        enc = np.asarray(encoder_out, dtype=np.float32).reshape(-1, encoder_out.shape[-1])
        for frame in enc:
            self._frame(frame)
        after = self.best().tokens
        same = 0
        while same < min(len(before), len(after)) and before[same] == after[same]:
            same += 1
        return list(after[same:])
