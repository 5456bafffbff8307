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
  columns), composed in float64 and stored as float32. One rounding of the
  composite instead of four roundings of the steps;
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


class GraphFbank(nn.Module):
    """frames [B, F, frame_length] of samples in [-1, 1] -> features [B, F, dim]."""

    def __init__(self, spec):
        super().__init__()
        spec = as_spec(spec)
        core = _FeatureCore(spec)  # validates the spec (window, dither 0, ...)
        self.spec = spec
        self.bins = core.fft_length // 2
        # sample_scale folded into the transform: a power of two (32768) is exact, others round once
        self.register_buffer("transform", torch.from_numpy(
            (frame_transform(spec) * spec.sample_scale).astype(np.float32)))
        self.register_buffer("mel", torch.from_numpy(core.filters_t.astype(np.float32)))
        dct = core.dct_t if core.dct_t is not None else np.zeros((0, 0))
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)))

    def forward(self, fbank_frames: torch.Tensor) -> torch.Tensor:
        # variables named fbank_*: see AudioInEncoder.frontend (CoreML keeps these ops in float32)
        fbank_spectrum = torch.matmul(fbank_frames, self.transform)
        fbank_re = fbank_spectrum[..., : self.bins]
        fbank_im = fbank_spectrum[..., self.bins:]
        fbank_re2 = fbank_re * fbank_re
        fbank_im2 = fbank_im * fbank_im
        fbank_power = fbank_re2 + fbank_im2
        fbank_mel = torch.matmul(fbank_power, self.mel)
        fbank_floored = torch.clamp(fbank_mel, min=LOG_FLOOR)
        fbank_log = torch.log(fbank_floored)
        if self.spec.kind == "mfcc":
            fbank_log = torch.matmul(fbank_log, self.dct)
        return fbank_log


__all__ = ["GraphFbank", "frame_transform"]
