"""The loop being timed: what a device does per chunk.

`Pipeline` is the encoder step with its states carried (runtime_py's
StateLoop), then greedy decoding (CTC argmax, or the transducer's
decoder/joiner calls on the same backend); it counts the calls per graph.
When runtime_py's stream primitive lands (issue 14 §1), this class is the one
place that switches to it.

`client_pass` is one end-to-end pass of our client over audio: the frontend
over the padded samples, then the pipeline chunk by chunk, each chunk timed.
"""

from __future__ import annotations

import time

import numpy as np


class Pipeline:
    def __init__(self, signature, raw_runs: dict, max_symbols_per_frame: int | None = None):
        self.signature = signature
        self.raw_runs = raw_runs
        self.max_symbols = max_symbols_per_frame  # None: the client's default (runtime_py.decoding)
        self.calls = {g: 0 for g in raw_runs}
        self.reset()

    def _counted(self, name):
        run = self.raw_runs[name]

        def counted(feeds):
            self.calls[name] += 1
            return run(feeds)
        return counted

    def reset(self) -> None:
        from runtime_py.decoding import make_decoder
        from runtime_py.stateloop import stepper

        self.runs = {g.name: stepper(g, self._counted(g.name)) for g in self.signature.graphs}
        enc = self.signature.graph("encoder")
        self.x_name, self.out_name = enc.inputs[0].name, enc.outputs[0].name
        self.decoder = make_decoder(self.signature, self.runs)  # a transducer runs its decoder here
        if self.max_symbols is not None and hasattr(self.decoder, "max_symbols"):
            self.decoder.max_symbols = self.max_symbols
        self.calls = {g: 0 for g in self.raw_runs}

    def step(self, chunk: np.ndarray) -> None:
        self.decoder.accept(self.runs["encoder"]({self.x_name: chunk})[self.out_name])


def padded(audio: np.ndarray, signature) -> np.ndarray:
    """The utterance with the client's tail padding (runtime_py.recognizer's rule)."""
    from runtime_py.recognizer import tail_padding_samples

    fe = signature.frontend
    pad = tail_padding_samples(len(audio), fe, signature.chunk_frames, signature.shift_frames)
    return np.concatenate([audio, np.zeros(pad, np.float32)])


def client_pass(pipe: Pipeline, audio: np.ndarray) -> dict:
    """Frontend + pipeline over `audio` (float samples in [-1, 1]) from fresh
    states: {"chunk_s": per-chunk seconds, "frontend_s", "e2e_s"}."""
    from runtime_py.frontend import compute_features
    from targets.golden import feature_chunks

    sig = pipe.signature
    clock = time.perf_counter
    pipe.reset()
    t0 = clock()
    feats = compute_features(padded(audio, sig), sig.frontend)
    shape = sig.graph("encoder").inputs[0].shape
    chunks = [c.reshape(shape) for c in feature_chunks(feats, sig)]
    t1 = clock()
    times = np.empty(len(chunks))
    for i, c in enumerate(chunks):
        ts = clock()
        pipe.step(c)
        times[i] = clock() - ts
    return {"chunk_s": times, "frontend_s": t1 - t0, "e2e_s": clock() - t0,
            "tokens": list(getattr(pipe.decoder, "tokens", []))}
