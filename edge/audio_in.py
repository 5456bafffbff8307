"""Audio-in models: any streaming model (a built-in family or edge.declare's)
with its frontend inside the encoder graph.

    from edge.audio_in import audio_in
    model = audio_in(load_or_init("conformer")[0])   # or audio_in(edge.declare(...))
    export_onnx(model, "out/")                        # encoder.onnx takes PCM

The wrapped encoder takes one call's PCM samples in [-1, 1]
([1, samples_per_call, 1]: one encoder shift; a raw-sample input is [batch,
samples, 1] as for every raw model here) and keeps every sample and frame
of history its features need as states like any other cache (named input +
`<name>_next`, zero initial value, reset scope utterance):
`audio_samples` (the window overlap), `audio_frames` (the chunk's right
context and the frames a call cannot complete yet) and `audio_calls` (calls
since the utterance began, saturating: it picks kaldi's mirrored first
frames on the first call and holds the encoder's states at their initial
values during the warmup calls). The layout and its arithmetic are in
runtime_py/audio_in.py; the features are edge/graph_fbank.py's. The
decoder and joiner of a transducer are the model's own, unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from runtime_py.audio_in import (AUDIO_IN_KEY, INPUT_NAME, STATE_CALLS, STATE_FRAMES, STATE_SAMPLES, AudioInPlan)
from runtime_py.frontend import first_sample_of_frame

from .families.base import StreamingModel
from .graph_fbank import GraphFbank
from .signature import FrontendSpec, GraphSpec, Signature, StateSpec, TensorSpec


def frame_indices(plan: AudioInPlan, first_call: bool) -> np.ndarray:
    """[S, frame_length] indices into [history samples | this call's samples]
    of the S frames a call computes. first_call: kaldi's snip_edges=False
    mirror for frames whose window starts before the stream (-1 -> 0, -2 ->
    1, ...); rows of frames before frame 0 (warmup only) stay unmirrored."""
    fe, h = plan.frontend, plan.history_samples
    rows = []
    for s in range(plan.shift_frames):
        frame = plan.first_frame(0) + s
        start = first_sample_of_frame(frame, fe)  # relative to this call's first sample (call 0: the stream's)
        idx = start + np.arange(fe.frame_length)
        if first_call and frame >= 0 and not fe.snip_edges:
            idx = np.where(idx < 0, -idx - 1, idx)
        rows.append(idx + h)
    return np.stack(rows).astype(np.int64)


class AudioInEncoder(nn.Module):
    """forward(audio, audio_samples, audio_frames, audio_calls, *encoder states)
    -> (*encoder outputs, the three frontend states' next values, *encoder next states)."""

    def __init__(self, encoder: nn.Module, plan: AudioInPlan):
        super().__init__()
        self.encoder = encoder
        self.plan = plan
        self.fbank = GraphFbank(plan.frontend)  # named FRONTEND_SCOPE: quantisers keep its nodes in float
        self.register_buffer("index", torch.from_numpy(frame_indices(plan, first_call=False)))
        self.register_buffer("index_first", torch.from_numpy(frame_indices(plan, first_call=True)))

    def frontend(self, audio, samples, frames, calls):
        """-> (the kept and new frames [B, history_frames + S, dim], the
        frontend states' next values). Every intermediate is a variable named
        fbank_*: a traced graph names its ops after them, which is how
        targets/coreml.py keeps these ops in float32 in an fp16 model."""
        p = self.plan
        fbank_pcm = audio[:, :, 0]
        fbank_buf = torch.cat([samples, fbank_pcm], dim=1)  # [B, history + N]
        fbank_first = (calls < 0.5).reshape(-1, 1, 1)
        fbank_mirrored = fbank_buf[:, self.index_first]
        fbank_plain = fbank_buf[:, self.index]
        fbank_windows = torch.where(fbank_first, fbank_mirrored, fbank_plain)  # [B, S, frame_length]
        fbank_one = calls[:1] * 0.0 + 1.0  # [1] equal to 1, computed from an input: see GraphFbank
        fbank_new = self.fbank(fbank_windows, fbank_one)
        fbank_feats = torch.cat([frames, fbank_new], dim=1)
        fbank_samples_next = fbank_buf[:, fbank_buf.shape[1] - p.history_samples:]
        fbank_frames_next = fbank_feats[:, p.shift_frames:]
        fbank_calls_next = torch.clamp(calls + 1.0, max=float(p.warmup_calls))
        return fbank_feats, (fbank_samples_next, fbank_frames_next, fbank_calls_next)

    def forward(self, audio, samples, frames, calls, *states):
        p = self.plan
        feats, own = self.frontend(audio, samples, frames, calls)
        outs = self.encoder(feats[:, : p.chunk_frames], *states)
        n_out = len(outs) - len(states)
        ready = (calls >= p.warmup_calls - 0.5).reshape(())  # this call completes an encoder step
        nexts = [_hold(new, old, ready) for new, old in zip(outs[n_out:], states)]
        return tuple(outs[:n_out]) + own + tuple(nexts)


def _hold(new: torch.Tensor, old: torch.Tensor, ready: torch.Tensor) -> torch.Tensor:
    """The state's next value: `new` once the call completes an encoder step,
    else `old` (the warmup calls). new * r + old * (1 - r) with r 0 or 1 is
    exact (x * 1 = x, x * 0 = 0, x + 0 = x) and a 0-d r broadcasts (the graph
    is batch 1); onnx2tf mis-shaped the transducer's LSTM states behind a
    Where. A state of rank >= 4 is blended flat: onnx2tf keeps a conv cache
    computed in the graph channels-last but the state input as declared, and
    cannot add the two (the Zipformer's embed_states: "Dimensions must be
    equal, but are 3 and 128", [1, 3, 19, 128] and [1, 128, 3, 19])."""
    r, not_r = ready.to(new.dtype), (~ready).to(old.dtype)
    if new.dim() < 4:  # flat, the transducer's LSTM states [layers, 1, hidden] lost 7.4 in onnx2tf
        return new * r + old * not_r
    return (new.reshape(-1) * r + old.reshape(-1) * not_r).reshape(old.shape)


class AudioInFrontend(nn.Module):
    """The in-graph frontend alone (measurements, tests): forward(audio,
    samples, frames, calls) -> (this call's S new frames [B, S, dim], the
    three states' next values)."""

    def __init__(self, plan: AudioInPlan):
        super().__init__()
        self.inner = AudioInEncoder(nn.Identity(), plan)
        self.shift = plan.shift_frames

    def forward(self, audio, samples, frames, calls):
        feats, own = self.inner.frontend(audio, samples, frames, calls)
        return (feats[:, feats.shape[1] - self.shift:],) + own


class AudioInModel(StreamingModel):
    """`base` with its frontend in the encoder graph (see the module doc)."""

    def __init__(self, base: StreamingModel):
        super().__init__(getattr(base, "config", None))
        sig = base.signature()
        if AudioInPlan.of(sig) is not None:
            raise ValueError("this model already takes audio (an audio-in model)")
        self.base = base.eval()
        self.family = sig.family
        self.plan = AudioInPlan.for_features(sig.frontend, sig.chunk_frames, sig.shift_frames)
        self.features_signature = sig
        self._signature = self._derive(sig)

    def _derive(self, sig: Signature) -> Signature:
        p, enc = self.plan, sig.graph("encoder")
        dim = sig.frontend.feature_dim
        own = (StateSpec(STATE_SAMPLES, (1, p.history_samples), doc=(
                   "the last samples of the previous call: this call's first windows reach back into them")),
               StateSpec(STATE_FRAMES, (1, p.history_frames, dim), doc=(
                   f"{sig.frontend.kind} frames kept for the next chunk (its right context and the frames "
                   "computed ahead)")),
               StateSpec(STATE_CALLS, (1,), doc=(
                   f"calls since the utterance began, saturating at {p.warmup_calls}: the first call mirrors the "
                   f"first frames (kaldi), the first {p.warmup_calls} complete no encoder step")))
        x = TensorSpec(INPUT_NAME, (1, p.samples_per_call, 1), doc=(
            f"{p.samples_per_call} PCM samples in [-1, 1] ({1000 * p.samples_per_call / sig.frontend.sample_rate:g} "
            f"ms at {sig.frontend.sample_rate} Hz): one call"))
        encoder = replace(enc, inputs=(x,), states=own + tuple(enc.states), dynamic_batch=False,
                          doc=(enc.doc + " " if enc.doc else "") + f"{sig.frontend.kind} frontend inside")
        graphs = tuple(encoder if g.name == "encoder" else g for g in sig.graphs)
        raw = FrontendSpec.raw(sig.frontend.sample_rate, sample_scale=1.0)
        extra = {**(sig.extra or {}), AUDIO_IN_KEY: p.record()}
        return replace(sig, frontend=raw, chunk_frames=p.samples_per_call, shift_frames=p.samples_per_call,
                       subsampling=sig.subsampling * sig.frontend.frame_shift, graphs=graphs, extra=extra)

    # -- StreamingModel ------------------------------------------------------------
    def signature(self) -> Signature:
        return self._signature

    def graph_module(self, name: str) -> nn.Module:
        inner = self.base.graph_module(name)
        if name != "encoder":
            return inner
        return AudioInEncoder(inner, self.plan)

    def forward(self, feats, lengths):
        raise NotImplementedError("an audio-in model streams only; the offline forward is the base model's")

    @property
    def vocab_size(self) -> int:
        return self._signature.vocab_size

    @property
    def max_duration_s(self):
        return getattr(self.base, "max_duration_s", None)


def audio_in(model: StreamingModel) -> AudioInModel:
    """The model with its frontend in the encoder graph (see the module doc)."""
    return AudioInModel(model)


__all__ = ["AudioInModel", "AudioInEncoder", "AudioInFrontend", "audio_in", "frame_indices"]
