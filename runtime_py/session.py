"""A bundle opened for one stream, and the choice of backend.

    session = ModelSession("dist/demo-conformer-rpi")          # best backend here
    out = session.encode(features[:session.chunk_frames])       # one encoder step
    session.decoder.accept(out); session.text()
    session.reset("utterance")                                   # at an endpoint

ModelSession is `stream.Model.from_bundle(...)` plus one `Stream`; the loop
itself lives in stream.py.

Everything comes from the bundle's signature (names, shapes, dtypes, state
scopes, decoder kind); nothing is hard-coded. Each file is sha256-checked by
`Bundle.path` before it is loaded. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .manifest import ManifestError
from .stream import Model, SessionError, choose_backend  # noqa: F401 - re-exported


class ModelSession:
    """One bundle and one stream: a façade over `stream.Model` + `Stream`
    for code that serves a single stream (the demo, the recogniser's
    default). Several streams share one `Model` instead (see stream.py)."""

    def __init__(self, bundle_dir: Path | str, backend: str | None = None, precision: str | None = None,
                 threads: int = 1, providers=None, search: str = "greedy", beam: int = 4):
        self.model = Model.from_bundle(bundle_dir, backend, precision, threads, providers, search=search, beam=beam)
        self.bundle = self.model.bundle
        self.signature = self.model.signature
        self.tokens = self.model.tokens
        self.backend, self.precision = self.model.backend, self.model.precision
        self.threads = threads
        self.provider = self.model.provider  # the ONNX Runtime execution provider in use (ort/onnx only)
        self.stream = self.model.create_stream()
        self.encoder_graph = self.model.encoder
        self.encoder_output = self.encoder_graph.outputs[0].name

    @property
    def decoder(self):
        return self.stream.decoder

    # -- shapes, from the signature -----------------------------------------------
    @property
    def chunk_frames(self) -> int:
        return self.signature.chunk_frames

    @property
    def shift_frames(self) -> int:
        return self.signature.shift_frames

    @property
    def feature_dim(self) -> int:
        return self.signature.frontend.feature_dim

    @property
    def sample_rate(self) -> int:
        return self.signature.frontend.sample_rate

    # -- running -------------------------------------------------------------------
    def encode(self, chunk_features: np.ndarray) -> np.ndarray:
        """One encoder step on [chunk_frames, dim] features, not decoded;
        returns the encoder's first output (log_probs for CTC, encoder_out
        for a transducer) as the graph gives it ([1, T, V] / [1, T, J])."""
        return self.stream.step(chunk_features, decode=False)[self.encoder_output]

    def step(self, chunk_features: np.ndarray) -> list[int]:
        """One encoder step, decoded; returns the tokens added."""
        before = len(self.stream.tokens)
        self.stream.step(chunk_features)
        return self.stream.tokens[before:]

    def text(self) -> str:
        """The transcript; for a head of "none", a summary of the outputs."""
        return self.stream.text

    def reset(self, scope: str = "utterance") -> list[str]:
        """Return the states of `scope` to their initial values and restart
        the decoder; returns the names of the states reset."""
        return self.stream.reset(scope)

    def states(self, graph: str = "encoder") -> dict[str, np.ndarray]:
        loop = self.stream.loops.get(graph)
        return dict(loop.states) if loop else {}

    def describe(self) -> str:
        on = f" on {self.provider}" if self.provider else ""
        return (f"{self.bundle.manifest['name']}-{self.signature.family} {self.backend}/{self.precision}{on} "
                f"threads={self.threads} chunk={self.chunk_frames} frames "
                f"({self.chunk_frames * self.signature.frontend.frame_shift / self.sample_rate * 1000:.0f} ms)")


__all__ = ["ModelSession", "SessionError", "ManifestError", "choose_backend"]
