"""A bundle opened for inference: model files, state loops, greedy decoder.

    session = ModelSession("dist/demo-conformer-rpi")          # best backend here
    out = session.encode(features[:session.chunk_frames])       # one encoder step
    session.decoder.accept(out); session.text()
    session.reset("utterance")                                   # at an endpoint

Everything comes from the bundle's signature (names, shapes, dtypes, state
scopes, decoder kind); nothing is hard-coded. Each file is sha256-checked by
`Bundle.path` before it is loaded. Torch-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import formats
from .backends import BackendError, backend_available, open_runner
from .decoding import make_decoder, tokens_to_text
from .manifest import Bundle, ManifestError
from .stateloop import StateLoop

# Picked when the user names neither backend nor precision: the formats table's order.
PREFERENCE = formats.preference_order()


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
    if backend is not None and backend not in formats.runnable():
        raise SessionError(f"backend {backend!r} is not one of {formats.runnable()}")
    wanted = [bp for bp in complete if (backend is None or bp[0] == backend)
              and (precision is None or bp[1] == precision)]
    if not wanted:
        raise SessionError(f"the bundle has no {backend or 'any'}/{precision or 'any'} artifact "
                           f"for every graph {graphs}; it has {have}")
    order = formats.preference_order()  # read now: a row registered later takes its place
    ranked = sorted(wanted, key=lambda bp: order.index(bp) if bp in order else len(order))
    if backend is None and check_installed:
        installed = [bp for bp in ranked if backend_available(bp[0])]
        if installed:
            return installed[0]
    return ranked[0]


class ModelSession:
    def __init__(self, bundle_dir: Path | str, backend: str | None = None, precision: str | None = None,
                 threads: int = 1, providers=None):
        self.bundle = Bundle(bundle_dir)  # validates the manifest, checks tokens.txt
        self.signature = self.bundle.signature
        self.tokens = self.bundle.tokens()
        self.backend, self.precision = choose_backend(self.bundle, backend, precision)
        self.threads = threads
        self.provider = None  # the ONNX Runtime execution provider in use (ort/onnx only)
        self.loops: dict[str, StateLoop] = {}
        self.runs: dict[str, object] = {}
        for g in self.signature.graphs:
            art = self.bundle.find(g.name, self.backend, self.precision)
            path = self.bundle.path(art.path)  # sha256-checked
            try:
                run = open_runner(path, g, self.backend, threads, providers=providers)
            except BackendError as e:
                raise SessionError(str(e)) from None
            self.provider = self.provider or getattr(run, "provider", None)
            if g.states:
                self.loops[g.name] = StateLoop(g, run)
                run = self.loops[g.name].step  # same interface: inputs -> outputs
            self.runs[g.name] = run
        enc = self.signature.graph("encoder")
        self.encoder_graph = enc
        self._x = enc.inputs[0]
        self.encoder_output = enc.outputs[0].name
        self.decoder = make_decoder(self.signature, self.runs)

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
        """One encoder step on [chunk_frames, dim] features; returns the
        encoder's first output (log_probs for CTC, encoder_out for a
        transducer) as the graph gives it ([1, T, V] / [1, T, J])."""
        x = np.asarray(chunk_features, dtype=self._x.dtype)
        want = (self.chunk_frames, self.feature_dim)
        if x.shape != want and x.shape != self._x.shape:
            raise ValueError(f"encode() takes features of shape {want}, got {x.shape}")
        return self.runs["encoder"]({self._x.name: x.reshape(self._x.shape)})[self.encoder_output]

    def step(self, chunk_features: np.ndarray) -> list[int]:
        """encode() then feed the decoder; returns the tokens added."""
        return self.decoder.accept(self.encode(chunk_features))

    def text(self) -> str:
        """The transcript; for a head of "none", a summary of the outputs."""
        if hasattr(self.decoder, "summary"):
            return self.decoder.summary()
        return tokens_to_text(self.decoder.tokens, self.tokens)

    def reset(self, scope: str = "utterance") -> list[str]:
        """Return the states of `scope` to their initial values and restart
        the decoder; returns the names of the states reset."""
        done = []
        for name, loop in self.loops.items():
            done += [f"{name}.{s}" for s in loop.reset(scope)]
        self.decoder.reset()
        return done

    def states(self, graph: str = "encoder") -> dict[str, np.ndarray]:
        loop = self.loops.get(graph)
        return dict(loop.states) if loop else {}

    def describe(self) -> str:
        on = f" on {self.provider}" if self.provider else ""
        return (f"{self.bundle.manifest['name']}-{self.signature.family} {self.backend}/{self.precision}{on} "
                f"threads={self.threads} chunk={self.chunk_frames} frames "
                f"({self.chunk_frames * self.signature.frontend.frame_shift / self.sample_rate * 1000:.0f} ms)")


__all__ = ["ModelSession", "SessionError", "ManifestError", "choose_backend", "PREFERENCE"]
