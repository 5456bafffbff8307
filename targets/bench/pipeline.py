"""The loop being timed: what a device does per chunk, through runtime_py's
one stream primitive (runtime_py.stream: a Model shared by Streams).

`Pipeline` wraps each graph's runner to count its calls, loads them as one
`Model` and gives a fresh `Stream` per pass: the encoder step with its states
carried, then greedy decoding (CTC argmax, or the transducer's decoder/joiner
calls on the same backend). `client_pass` is one end-to-end pass over audio:
the stream's frontend and tail padding, then one timed chunk at a time.
"""

from __future__ import annotations

import time

import numpy as np


SEARCHES = ("client", "sherpa", "beam")
BEAM = 4  # modified beam search's hypotheses, as icefall's and sherpa-onnx's default


class Pipeline:
    """search="client": runtime_py's greedy search as the client runs it.
    search="sherpa": sherpa-onnx's (targets.sherpa.client): at most one
    symbol per frame, and the decoder context starts at [-1, ..., blank],
    so our client on sherpa's files runs the very same search.
    search="beam": the client's modified beam search (BEAM hypotheses)."""

    def __init__(self, signature, raw_runs: dict, search: str = "client"):
        from runtime_py.stream import Model

        if search not in SEARCHES:
            raise ValueError(f"search {search!r} must be one of {SEARCHES}")
        self.signature = signature
        self.raw_runs = raw_runs
        self.search = search
        self.calls = {g: 0 for g in raw_runs}
        from targets.sherpa.contract import SHERPA_MAX_SYMBOLS

        symbols = {"max_symbols_per_frame": SHERPA_MAX_SYMBOLS} if search == "sherpa" else {}
        if search == "beam":
            symbols = {"search": "modified_beam_search", "beam": BEAM}
        self.model = Model(signature, {g: self._counted(g) for g in raw_runs}, batch=False, **symbols)
        self.reset()

    def _counted(self, name):
        run = self.raw_runs[name]

        def counted(feeds):
            self.calls[name] += 1
            return run(feeds)
        return counted

    def reset(self) -> None:
        """A fresh stream (initial states, empty decoder) and zeroed call counts."""
        self.stream = self.model.create_stream()
        if self.search == "sherpa":
            from targets.sherpa import contract

            contract.sherpa_start(self.stream.decoder)
        self.calls = {g: 0 for g in self.raw_runs}

    @property
    def decoder(self):
        return self.stream.decoder

    def step(self, chunk: np.ndarray) -> None:
        self.stream.step(chunk)


def client_pass(pipe: Pipeline, audio: np.ndarray) -> dict:
    """Frontend + pipeline over `audio` (float samples in [-1, 1]) from a fresh
    stream: {"chunk_s": per-chunk seconds, "frontend_s", "e2e_s", "tokens"}."""
    clock = time.perf_counter
    pipe.reset()
    s = pipe.stream
    t0 = clock()
    s.accept_waveform(pipe.signature.frontend.sample_rate, audio)
    s.input_finished()  # the client's tail padding (runtime_py.stream's one rule)
    t1 = clock()
    times = []
    while s.is_ready():
        ts = clock()
        pipe.model.decode_streams([s])
        times.append(clock() - ts)
    return {"chunk_s": np.asarray(times), "frontend_s": t1 - t0, "e2e_s": clock() - t0, "tokens": list(s.tokens)}
