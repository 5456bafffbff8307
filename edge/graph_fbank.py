"""Kaldi fbank / MFCC as a PyTorch module made of matmuls and constants, so
it exports to every backend (ONNX Runtime, TFLite via ONNX, CoreML from
PyTorch): no FFT op, no data-dependent shapes.

It computes what runtime_py.frontend computes (the streaming-exact numpy
reference, which matches kaldi-native-fbank), per frame:
- samples times the frontend's sample_scale;
- remove the DC offset, pre-emphasis (kaldi's order: x[i] -= c x[i-1] for
  i >= 1 on the original samples, then x[0] -= c x[0]), the window, and the
  real DFT of the zero-padded frame: all linear in the frame's samples, so
  they are one constant [frame_length, 2 * fft_length/2] matrix (cos | -sin
  columns), composed in float64 and stored as float32 (as an fp16-exact
  part plus a remainder, see GraphFbank). One rounding of the composite
  instead of four roundings of the steps;
- power spectrum re^2 + im^2 over bins 0 .. fft_length/2 - 1 (the mel
  filters give the Nyquist bin no weight, as in kaldi);
- mel filterbank (constant), log floored at FLT_EPSILON (kaldi's floor);
- MFCC: the DCT with cepstral liftering folded into one constant.

The numpy reference works in float64; this module in float32 (what the
phones run). The difference is the float32 rounding of the DFT sums,
relative to the frame's energy: a mel bin far below the frame's loudest
(quiet high bands, near-silence) carries a larger relative error, so its log
differs most. tests/test_audio_in.py measures it against the numpy frontend
and against kaldi-native-fbank.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from runtime_py.frontend import LOG_FLOOR, _FeatureCore, as_spec


def frame_transform(spec) -> np.ndarray:
    """The float64 matrix taking a frame's (scaled) samples to [re | im] of its
    DFT bins 0 .. fft_length/2 - 1, after DC removal, pre-emphasis and window."""
    core = _FeatureCore(spec)
    n, nfft = spec.frame_length, core.fft_length
    m = np.eye(n)
    if spec.remove_dc_offset:
        m = m - np.full((n, n), 1.0 / n)  # row i of the operator: x_i - mean(x)
    if spec.preemphasis != 0.0:
        pre = np.eye(n)
        pre[np.arange(1, n), np.arange(n - 1)] = -spec.preemphasis
        pre[0, 0] = 1.0 - spec.preemphasis
        m = pre @ m
    m = core.window[:, None] * m  # y = diag(w) P D x
    k = np.arange(nfft // 2)
    angle = 2.0 * math.pi * np.outer(np.arange(n), k) / nfft  # [n, bins]: zero padding adds nothing
    dft = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)
    return m.T @ dft  # frames [.., n] @ this -> [.., 2 * bins]


def split_fp16(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) float32 with hi exactly representable in float16 and hi + lo
    the table to ~2**-22: a converter that stores constants in float16 (TFLite
    fp16) rounds lo only, whose error is 2**-11 of a 2**-11 remainder."""
    hi = table.astype(np.float16).astype(np.float32)
    return hi, (table - hi.astype(np.float64)).astype(np.float32)


class GraphFbank(nn.Module):
    """frames [B, F, frame_length] of samples in [-1, 1] -> features [B, F, dim].

    forward(frames, one): `one` is a tensor equal to 1 computed from a graph
    input. The DFT and mel tables are rebuilt per call as hi + lo * one, so no
    converter can fold them into one constant: TFLite's fp16 mode would round
    the DFT table to float16 (measured: log-mel off by up to 1.24, the leakage
    of 2**-11 errors over 400 taps buries the quiet bins) and its dynamic-range
    int8 would quantise it; a table computed in the graph is neither. Costs
    two elementwise ops over the tables per call."""

    def __init__(self, spec):
        super().__init__()
        spec = as_spec(spec)
        core = _FeatureCore(spec)  # validates the spec (window, dither 0, ...)
        self.spec = spec
        self.bins = core.fft_length // 2
        self.scale = float(spec.sample_scale)  # applied to the samples: 32768 is exact, and keeps the table < 2
        for name, table in (("transform", frame_transform(spec)), ("mel", core.filters_t)):
            hi, lo = split_fp16(np.asarray(table, np.float64))
            self.register_buffer(f"{name}_hi", torch.from_numpy(hi))
            self.register_buffer(f"{name}_lo", torch.from_numpy(lo))
        dct = core.dct_t if core.dct_t is not None else np.zeros((0, 0))
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)))

    def forward(self, fbank_frames: torch.Tensor, fbank_one: torch.Tensor) -> torch.Tensor:
        # variables named fbank_*: see AudioInEncoder.frontend (CoreML keeps these ops in float32)
        fbank_transform = self.transform_hi + self.transform_lo * fbank_one
        fbank_melbank = self.mel_hi + self.mel_lo * fbank_one
        fbank_scaled = fbank_frames * self.scale
        fbank_spectrum = torch.matmul(fbank_scaled, fbank_transform)
        fbank_re = fbank_spectrum[..., : self.bins]
        fbank_im = fbank_spectrum[..., self.bins:]
        fbank_re2 = fbank_re * fbank_re
        fbank_im2 = fbank_im * fbank_im
        fbank_power = fbank_re2 + fbank_im2
        fbank_mel = torch.matmul(fbank_power, fbank_melbank)
        fbank_floored = torch.clamp(fbank_mel, min=LOG_FLOOR)
        fbank_log = torch.log(fbank_floored)
        if self.spec.kind == "mfcc":
            fbank_log = torch.matmul(fbank_log, self.dct)
        return fbank_log


__all__ = ["GraphFbank", "frame_transform", "split_fp16"]
