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

from .backends import backend_available
from .manifest import Bundle, ManifestError
from .stream import Model

# Picked when the user names neither backend nor precision: exact fp32 first,
# then the quantised/half-precision files (lower accuracy, checked by token
# agreement only).
PREFERENCE = (("ort", "fp32"), ("onnx", "fp32"), ("tflite", "fp32"), ("ort", "int8"),
              ("onnx", "int8"), ("tflite", "fp16"), ("tflite", "int8"), ("ort", "fp16"), ("onnx", "fp16"))
RUNNABLE = ("onnx", "ort", "tflite")


class SessionError(ValueError):
    """The bundle cannot be run here with the requested backend/precision."""


def choose_backend(bundle: Bundle, backend: str | None = None, precision: str | None = None,
                   check_installed: bool = True) -> tuple[str, str]:
    """The (backend, precision) to run: the user's choice if given (each half
    may be left to the preference order), available for every graph."""
    graphs = [g.name for g in bundle.signature.graphs]
    have = bundle.backends()
    complete = [bp for bp in have if all(
        any(a.graph == g and (a.backend, a.precision) == bp for a in bundle.artifacts) for g in graphs)]
    if backend == "coreml" or (complete and all(b == "coreml" for b, _ in complete)):
        raise SessionError(f"CoreML artifacts run only on Apple devices; this bundle has {have}. "
                           "Build one with --target rpi (or android) to run it here")
    if backend is not None and backend not in RUNNABLE:
        raise SessionError(f"backend {backend!r} is not one of {RUNNABLE}")
    wanted = [bp for bp in complete if (backend is None or bp[0] == backend)
              and (precision is None or bp[1] == precision)]
    if not wanted:
        raise SessionError(f"the bundle has no {backend or 'any'}/{precision or 'any'} artifact "
                           f"for every graph {graphs}; it has {have}")
    ranked = sorted(wanted, key=lambda bp: PREFERENCE.index(bp) if bp in PREFERENCE else len(PREFERENCE))
    if backend is None and check_installed:
        installed = [bp for bp in ranked if backend_available(bp[0])]
        if installed:
            return installed[0]
    return ranked[0]


class ModelSession:
    """One bundle and one stream: a façade over `stream.Model` + `Stream`
    for code that serves a single stream (the demo, the recogniser's
    default). Several streams share one `Model` instead (see stream.py)."""

    def __init__(self, bundle_dir: Path | str, backend: str | None = None, precision: str | None = None,
                 threads: int = 1, providers=None):
        self.model = Model.from_bundle(bundle_dir, backend, precision, threads, providers)
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


__all__ = ["ModelSession", "SessionError", "ManifestError", "choose_backend", "PREFERENCE"]
