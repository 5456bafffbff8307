"""One loaded model, many streams: the only loop that steps a model.

    model = Model.from_bundle("dist/demo-conformer-rpi")   # or Model(signature, runs, tokens)
    a, b = model.create_stream(), model.create_stream()      # each owns its states and decoder
    a.accept_waveform(16000, samples_a); a.input_finished()  # audio in: frontend + tail padding
    b.accept_waveform(16000, samples_b); b.input_finished()
    while model.decode_streams([a, b]):                      # one ready chunk of each, batched if allowed
        pass
    print(a.text, b.text)

    # chunk level (parity, verify, golden files, evaluate): chunks you cut yourself
    s = model.create_stream()
    outputs = s.step(chunk)          # [1, chunk_frames, dim] -> the encoder's outputs; tokens decoded
    s.tokens, s.text, s.reset("utterance")

`Model` holds the signature and one `run(feeds) -> dict` per graph (a bundle's
files through `backends.open_runner`, PyTorch reference runners, golden files:
anything). A `Stream` owns its encoder states (a `StateLoop`), the states of
any other graph that has some, its greedy decoder, its feature buffer and,
once audio is fed, its frontend. Endpointing, VAD, resampling and overrun
handling sit one level up, in `recognizer.StreamingRecognizer` (which drives
one Stream).

Batching: `decode_streams` runs one chunk of every ready stream. When the
encoder graph was exported with a dynamic batch axis (`GraphSpec.dynamic_batch`,
recorded in the signature) and the model was opened with `batch=True` (the
default where the backend takes any batch: ONNX Runtime and Python runners),
the chunks and states are concatenated along axis 0 (inputs, outputs) and each
state's declared `batch_axis` (in `batch_groups` blocks for a layer-major
cache, see StateSpec), run once, and split back. Otherwise each stream
runs on its own. Either way each stream's decoder (CTC argmax, or the
transducer's decoder/joiner calls) runs per stream.

Tail padding: an utterance ends with zeros, at least TAIL_PADDING_S and more
if needed so its last real frame lands in a complete chunk
(`tail_padding_samples`). The client, the golden files and the WER tool use
this one rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import formats
from .audio_in import AudioInPlan, warmup_calls
from .backends import backend_available
from .decoding import MAX_SYMBOLS_PER_FRAME, SEARCHES, make_decoder, tokens_to_text
from .frontend import StreamingFrontend, num_frames
from .signature import Signature
from .stateloop import RolloutError, RunFn, StateLoop

TAIL_PADDING_S = 0.3  # seconds of zeros at least, appended when an utterance ends


def tail_padding_samples(num_samples: int, spec, chunk_frames: int, shift_frames: int,
                         min_seconds: float = TAIL_PADDING_S) -> int:
    """Zeros appended to an utterance of `num_samples` at its end: at least
    `min_seconds`, and enough that the complete chunks of the padded
    features (kaldi flush at the end) cover every frame of the real audio.
    A reference reproduces the client's features with
    `compute_features(concat(audio, zeros(pad)))` and its complete chunks."""
    if num_samples <= 0:
        return 0
    pad = int(round(min_seconds * spec.sample_rate))
    real = num_frames(num_samples, spec, flush=True)
    while True:
        total = num_frames(num_samples + pad, spec, flush=True)
        steps = (total - chunk_frames) // shift_frames + 1 if total >= chunk_frames else 0
        if steps * shift_frames >= real:
            return pad
        pad += spec.frame_shift


def signature_tail_padding(signature: Signature, num_samples: int, min_seconds: float = TAIL_PADDING_S) -> int:
    """tail_padding_samples for a model's signature; an audio-in graph
    (runtime_py.audio_in) also needs whole calls and its warmup calls."""
    plan = AudioInPlan.of(signature)
    if plan is not None:
        pad = tail_padding_samples(num_samples, plan.frontend, plan.chunk_frames, plan.shift_frames, min_seconds)
        return plan.tail_padding(num_samples, pad)
    return tail_padding_samples(num_samples, signature.frontend, signature.chunk_frames, signature.shift_frames,
                                min_seconds)


def feature_chunks(features: np.ndarray, signature: Signature) -> list[np.ndarray]:
    """[frames, dim] -> encoder inputs [1, chunk_frames, dim], stepping by
    shift, after the frontend's left_pad zero frames: what a Stream fed these
    features runs."""
    chunk, shift = signature.chunk_frames, signature.shift_frames
    pad = signature.frontend.left_pad
    if pad:
        features = np.concatenate([np.zeros((pad, features.shape[1]), features.dtype), features])
    return [features[None, i:i + chunk] for i in range(0, features.shape[0] - chunk + 1, shift)]


def stack(arrays: list[np.ndarray], axis: int, groups: int = 1) -> np.ndarray:
    """Streams' tensors as one batch along `axis`, in `groups` blocks (see
    StateSpec.batch_groups): [g0 of every stream, g1 of every stream, ...]."""
    if groups == 1:
        return np.concatenate(arrays, axis=axis)
    shape = arrays[0].shape
    split = [a.reshape(shape[:axis] + (groups, shape[axis] // groups) + shape[axis + 1:]) for a in arrays]
    out = np.concatenate(split, axis=axis + 1)
    return out.reshape(shape[:axis] + (-1,) + shape[axis + 1:])


def unstack(array: np.ndarray, n: int, axis: int, groups: int = 1) -> list[np.ndarray]:
    """The inverse of stack: n streams' tensors from one batch."""
    if groups == 1:
        return np.split(array, n, axis=axis)
    shape = array.shape
    grouped = array.reshape(shape[:axis] + (groups, shape[axis] // groups) + shape[axis + 1:])
    return [p.reshape(shape[:axis] + (-1,) + shape[axis + 1:]) for p in np.split(grouped, n, axis=axis + 1)]


class SessionError(ValueError):
    """The bundle cannot be run here with the requested backend/precision."""


def choose_backend(bundle, backend: str | None = None, precision: str | None = None,
                   check_installed: bool = True) -> tuple[str, str]:
    """The (backend, precision) to run: the user's choice if given (each half
    may be left to the preference order; `backend` may name both, as
    'ort:int8'), available for every graph."""
    if backend is not None:  # 'ort:int8', the form every CLI takes; coreml passes to its own message below
        try:
            backend, precision = formats.split_artifact(backend, precision, backends=formats.backends())
        except ValueError as e:
            raise SessionError(str(e)) from None
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


class Model:
    """A loaded model: the signature and one `run(feeds) -> dict` per graph.
    Shared by any number of streams; holds no per-stream state."""

    def __init__(self, signature: Signature, runs: dict[str, RunFn], tokens: list[str] | None = None,
                 batch: bool | None = None, max_symbols_per_frame: int = MAX_SYMBOLS_PER_FRAME,
                 search: str = "greedy", beam: int = 4, **info):
        """batch: run ready streams as one batch in decode_streams. None: when
        the encoder graph declares a dynamic batch axis. max_symbols_per_frame:
        the transducer's greedy search (sherpa-onnx uses 1). search: a
        transducer's "greedy" or "modified_beam_search" with `beam`
        hypotheses (runtime_py.decoding.SEARCHES). `info` (backend,
        precision, provider, bundle, threads) is kept as attributes."""
        missing = [g.name for g in signature.graphs if g.name not in runs]
        if missing:
            raise ValueError(f"no runner for graph(s) {missing}")
        self.signature = signature
        self.runs = dict(runs)
        self.tokens = list(tokens or [])
        self.max_symbols_per_frame = max_symbols_per_frame
        if search not in SEARCHES:
            raise ValueError(f"search {search!r} must be one of {SEARCHES}")
        self.search, self.beam = search, beam
        self.encoder = signature.graph("encoder")
        can = getattr(self.encoder, "dynamic_batch", False)
        if batch and not can:
            raise ValueError("batch=True needs an encoder exported with a dynamic batch axis "
                             "(edge export's batch option); this one is batch-1")
        self.batch = can if batch is None else bool(batch)
        self.backend = info.pop("backend", None)
        self.precision = info.pop("precision", None)
        self.provider = info.pop("provider", None)
        self.bundle = info.pop("bundle", None)
        self.threads = info.pop("threads", 1)
        if info:
            raise TypeError(f"unexpected arguments {sorted(info)}")

    @classmethod
    def from_bundle(cls, bundle_dir: Path | str, backend: str | None = None, precision: str | None = None,
                    threads: int = 1, providers=None, batch: bool | None = None, search: str = "greedy",
                    beam: int = 4) -> "Model":
        """A bundle's artifacts (sha256-checked), on the best backend here
        unless one is named: backend="ort" (with or without precision="int8")
        or backend="ort:int8", as the CLIs take it (see choose_backend)."""
        from .backends import MISMATCH, BackendError, IOMismatch, open_runner
        from .manifest import Bundle

        bundle = Bundle(bundle_dir)  # validates the manifest, checks tokens.txt
        backend, precision = choose_backend(bundle, backend, precision)
        runs, provider = {}, None
        for g in bundle.signature.graphs:
            path = bundle.path(bundle.find(g.name, backend, precision).path)  # sha256-checked
            try:  # the runner checks the file's own I/O against the graph: before any state exists
                runs[g.name] = open_runner(path, g, backend, threads, providers=providers)
            except IOMismatch as e:
                raise SessionError(f"{MISMATCH} {e}") from None
            except BackendError as e:
                raise SessionError(str(e)) from None
            provider = provider or getattr(runs[g.name], "provider", None)
        if batch is None:  # LiteRT runners reshape to the declared (batch-1) shapes
            batch = backend != "tflite" and getattr(bundle.signature.graph("encoder"), "dynamic_batch", False)
        return cls(bundle.signature, runs, bundle.tokens(), batch=batch, search=search, beam=beam, backend=backend,
                   precision=precision, provider=provider, bundle=bundle, threads=threads)

    def create_stream(self) -> "Stream":
        return Stream(self)

    def decode_chunks(self, chunks) -> list[int]:
        """Tokens of encoder chunks [1, chunk_frames, dim] run through a fresh stream."""
        s = self.create_stream()
        for c in chunks:
            s.step(c)
        return list(s.tokens)

    def decode_streams(self, streams: list["Stream"]) -> list["Stream"]:
        """Run one chunk of each ready stream (batched when self.batch);
        returns the streams that ran (empty: none was ready)."""
        ready = [s for s in streams if s.is_ready()]
        if len(ready) < 2 or not self.batch:
            for s in ready:
                s.step(s._take_chunk())
            return ready
        chunks = [s._take_chunk() for s in ready]
        feeds = [s.loop.feeds({s._x.name: s._shape(c)}) for s, c in zip(ready, chunks)]
        enc = self.encoder
        axes = {t.name: (0, 1) for t in enc.inputs} | {st.name: (st.batch_axis, st.batch_groups) for st in enc.states}
        stacked = {n: stack([f[n] for f in feeds], *ax) for n, ax in axes.items()}
        try:
            result = self.runs["encoder"](stacked)
        except Exception as e:  # noqa: BLE001 - a user's model raises its own types
            at = ", ".join(str(s.chunks) for s in ready)
            raise RolloutError(f"graph 'encoder': the model raised on a batch of {len(ready)} streams at "
                               f"chunks {at}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
        out_axes = {t.name: (0, 1) for t in enc.outputs} | {st.next_name: (st.batch_axis, st.batch_groups)
                                                             for st in enc.states}
        split = {n: unstack(np.asarray(result[n]), len(ready), *ax) for n, ax in out_axes.items()}
        for i, (s, c) in enumerate(zip(ready, chunks)):
            s._finish(c, {n: parts[i] for n, parts in split.items()})
        return ready


class Stream:
    """One stream's states, decoder and feature buffer over a shared Model."""

    def __init__(self, model: Model):
        self.model = model
        sig = self.signature = model.signature
        self.loop = StateLoop(model.encoder, model.runs["encoder"])
        self.loops = {"encoder": self.loop}
        runs = {}
        for g in sig.graphs[1:]:  # a transducer's decoder/joiner may carry states: per stream too
            if g.states:
                self.loops[g.name] = StateLoop(g, model.runs[g.name])
                runs[g.name] = self.loops[g.name].step
            else:
                runs[g.name] = model.runs[g.name]
        self.decoder = make_decoder(sig, runs, model.max_symbols_per_frame, model.search, model.beam)
        self._x = model.encoder.inputs[0]
        self.output_name = model.encoder.outputs[0].name  # the output decoded
        self._frontend: StreamingFrontend | None = None
        self.chunks = 0  # chunks run since the stream began (named in errors)
        # an audio-in graph's first calls after a reset complete no encoder step: not decoded
        self.warmup_calls = warmup_calls(sig)
        self._calls_since_reset = 0
        self.outputs: dict | None = None  # the last chunk's encoder outputs
        self.last_chunk: np.ndarray | None = None  # and its features [chunk_frames, dim]
        self._clear_features()

    # -- input ---------------------------------------------------------------------
    @property
    def frontend(self) -> StreamingFrontend:
        if self._frontend is None:
            self._frontend = StreamingFrontend(self.signature.frontend)
        return self._frontend

    def accept_waveform(self, sample_rate: int, samples) -> None:
        """Float samples in [-1, 1] at the model's rate, any block size."""
        if int(sample_rate) != self.signature.frontend.sample_rate:
            raise ValueError(f"audio at {sample_rate} Hz, the model needs {self.signature.frontend.sample_rate} Hz; "
                             "resample it (StreamingRecognizer does)")
        self.accept_features(self.frontend.accept(np.asarray(samples, dtype=np.float32)))

    def input_finished(self, min_tail_s: float = TAIL_PADDING_S) -> None:
        """The utterance ended: tail padding, then the frontend's last frames."""
        received = self.frontend.num_samples_received
        if received == 0:
            return
        pad = signature_tail_padding(self.signature, received, min_tail_s)
        self.accept_features(self.frontend.accept(np.zeros(pad, dtype=np.float32)))
        self.accept_features(self.frontend.finish())

    def accept_features(self, features: np.ndarray) -> None:
        """Feature frames [n, dim] (the frontend's output)."""
        if len(features):
            self._feats = np.concatenate([self._feats, np.asarray(features, np.float32)])

    @property
    def buffered_frames(self) -> int:
        """Feature frames waiting for a chunk (bounded: less than chunk_frames
        after every chunk has been decoded)."""
        return len(self._feats)

    def is_ready(self) -> bool:
        return len(self._feats) >= self.signature.chunk_frames

    def _take_chunk(self) -> np.ndarray:
        chunk = self._feats[: self.signature.chunk_frames]
        self._feats = self._feats[self.signature.shift_frames:]
        return chunk

    def _clear_features(self) -> None:
        fe = self.signature.frontend  # left_pad: zeros a raw-sample model's window holds before the start
        self._feats = np.zeros((fe.left_pad, fe.feature_dim), dtype=np.float32)

    # -- running -------------------------------------------------------------------
    def _shape(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk, dtype=self._x.dtype)
        want = (self.signature.chunk_frames, self.signature.frontend.feature_dim)
        if x.shape != want and x.shape != self._x.shape:
            raise ValueError(f"a chunk has shape {want} or {self._x.shape}, got {x.shape}")
        return x.reshape(self._x.shape)

    def step(self, chunk: np.ndarray, decode: bool = True) -> dict:
        """One encoder step on a chunk ([chunk_frames, dim] or the graph's
        shape), states carried; its outputs are decoded unless decode=False.
        Returns the encoder's outputs. An exception from the model becomes a
        RolloutError naming the chunk."""
        x = self._shape(chunk)
        try:
            result = self.loop.run(self.loop.feeds({self._x.name: x}))
        except Exception as e:  # noqa: BLE001 - a user's model raises its own types
            raise RolloutError(f"graph 'encoder': the model raised at chunk {self.chunks} (after {self.chunks} "
                               f"chunks of this stream): {type(e).__name__}: "
                               f"{' '.join(str(e).split())[:300]}") from None
        return self._finish(chunk, result, decode)

    def _finish(self, chunk: np.ndarray, result: dict, decode: bool = True) -> dict:
        out = self.loop.absorb(result)
        self.chunks += 1
        self.outputs = out
        self.last_chunk = np.asarray(chunk).reshape(self.signature.chunk_frames, -1)
        self._calls_since_reset += 1
        if decode and self._calls_since_reset > self.warmup_calls:
            self.decoder.accept(out[self.output_name])
        return out

    # -- results and reset -----------------------------------------------------------
    @property
    def tokens(self) -> list[int]:
        return self.decoder.tokens

    @property
    def text(self) -> str:
        """The transcript; for a head of "none", a summary of the outputs."""
        if hasattr(self.decoder, "summary"):
            return self.decoder.summary()
        return tokens_to_text(self.decoder.tokens, self.model.tokens)

    @property
    def states(self) -> dict[str, np.ndarray]:
        """The encoder's current states (by name)."""
        return self.loop.states

    def reset(self, scope: str = "utterance") -> list[str]:
        """Return the states of `scope` to their initial values, restart the
        decoder, the frontend and the feature buffer; returns the names of
        the states reset ("graph.state")."""
        done = []
        for name, loop in self.loops.items():
            done += [f"{name}.{s}" for s in loop.reset(scope)]
        self.decoder.reset()
        self._calls_since_reset = 0  # an audio-in graph's frontend states are utterance-scoped: warmup again
        if self._frontend is not None:
            self._frontend.reset()
        self._clear_features()
        return done


__all__ = ["Model", "Stream", "TAIL_PADDING_S", "tail_padding_samples", "signature_tail_padding", "feature_chunks",
           "RolloutError", "stack", "unstack"]
