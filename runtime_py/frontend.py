"""Kaldi-compatible log-mel filterbank and MFCC features in numpy.

The client on the phone / Raspberry Pi must compute exactly the features the
model was trained on (kaldi / kaldi-native-fbank / kaldifeat conventions),
without torch. Two entry points share one numeric core:

- `compute_features(samples, spec)`: a whole utterance, offline.
- `StreamingFrontend(spec)`: audio arrives in pieces of any size; `accept()`
  returns the frames whose window is complete, `finish()` the rest. The frames
  are the offline ones, whatever the split (see `tests/test_frontend.py`).

Per frame (kaldi's order): take the window's samples, [dither: refused, must be
0], remove the DC offset, pre-emphasise, multiply by the window, zero-pad to a
power of two, power spectrum, triangular mel filters, log floored at float32
epsilon. MFCC adds an orthonormal DCT-II, keeps `num_ceps` and applies
cepstral liftering (Q=22). MFCC uses use_energy=False: C0 is the DCT's C0, not
the log frame energy.

Sample scale: float samples in [-1, 1] are multiplied by `spec.sample_scale`
(32768: the int16 range kaldi was designed for) before any of this.
kaldi-native-fbank's `accept_waveform` applies no scaling of its own: it uses
the numbers it is given, so to reproduce it feed it `samples * sample_scale`.

Numerics: everything is float64 (kaldi uses float32), the result is cast to
float32. float64 keeps results independent of how many frames are batched
together (BLAS/FFT batch paths differ in the last float64 bits, which the cast
to float32 almost always rounds away), which is what makes streaming match
offline.
"""

from __future__ import annotations

import math

import numpy as np

from .signature import FrontendSpec

WINDOWS = ("povey", "hamming", "hanning")
POVEY_EXPONENT = 0.85  # kaldi's povey window: hann ** 0.85
CEPSTRAL_LIFTER = 22.0  # kaldi's default MfccOptions.cepstral_lifter
LOG_FLOOR = float(np.finfo(np.float32).eps)  # kaldi: log(max(x, FLT_EPSILON))
MEL_BREAK_HZ = 700.0
MEL_HIGH_FREQ_Q = 1127.0
# The most frames whose spectra are computed at once. A frame's spectrum costs
# ~10 kB of float64 temporaries (its samples, the pre-emphasis copy, the complex
# FFT, the power): a whole 20 s file at once would take ~20 MB of peak memory,
# blocks of 256 frames ~2.5 MB, and in blocks it is faster too (cache). The mel
# product stays one matmul over all frames (2 kB a frame): in blocks it was 0.7x
# slower with numpy's multi-threaded OpenBLAS on a busy machine.
MAX_BLOCK_FRAMES = 256
# The most frames one accept() turns into features at once: a longer input (a
# whole file) goes through in pieces of this many frames' samples, so neither its
# float64 copy nor its frames and spectra are held whole (the frames are the same
# whatever the split). A piece's float64 temporaries are ~10 kB a frame: for 20 s
# fed whole, numpy's traced peak is 10.8 MiB at 1024 frames, 4.9 MiB at 256 and
# 2.7 MiB at 128 (runtime_py's share of the client's peak RSS, docs/benchmarks.md
# "Memory"). With one BLAS thread 256 was also faster than 1024 (9.7 vs 12.1 ms
# for the 20 s); below 256 the per-piece Python work starts to show.
MAX_ACCEPT_FRAMES = 256


def as_spec(spec) -> FrontendSpec:
    """Accept a FrontendSpec or the equivalent dict (e.g. from manifest.json)."""
    if isinstance(spec, FrontendSpec):
        return spec
    if isinstance(spec, dict):
        try:
            return FrontendSpec(**spec)
        except TypeError as e:
            raise ValueError(f"frontend dict does not match FrontendSpec: {e}") from None
    raise ValueError(f"frontend spec must be a FrontendSpec or a dict, got {type(spec).__name__}")


def mel_scale(freq_hz):
    """kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return MEL_HIGH_FREQ_Q * np.log1p(np.asarray(freq_hz, dtype=np.float64) / MEL_BREAK_HZ)


def window_function(kind: str, length: int) -> np.ndarray:
    """kaldi's FeatureWindowFunction (symmetric: the cosine spans length - 1)."""
    if length < 2:
        raise ValueError(f"frame_length={length} samples is too short; use at least 2")
    a = 2.0 * math.pi / (length - 1)
    hann = 0.5 - 0.5 * np.cos(a * np.arange(length))
    if kind == "povey":
        return hann ** POVEY_EXPONENT
    if kind == "hanning":
        return hann
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(a * np.arange(length))
    raise ValueError(f"window {kind!r} is not supported; use one of {WINDOWS}")


def padded_length(frame_length: int) -> int:
    """kaldi's round_to_power_of_two (always on here)."""
    return 1 << (frame_length - 1).bit_length()


def mel_filterbank(num_bins: int, fft_length: int, sample_rate: float,
                   low_freq: float, high_freq: float) -> np.ndarray:
    """Triangular filters in the mel domain, shape [num_bins, fft_length // 2].

    Like kaldi, the filters cover FFT bins 0 .. fft_length/2 - 1 (the Nyquist
    bin gets no weight) and a bin contributes only strictly inside a triangle.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq = nyquist + high_freq  # kaldi: non-positive means offset from Nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"need 0 <= low_freq ({low_freq}) < high_freq ({high_freq}) <= Nyquist ({nyquist}); "
            "fix low_freq/high_freq in the frontend spec")
    if num_bins < 1:
        raise ValueError(f"num_mel_bins={num_bins} must be >= 1")
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * np.arange(num_bins)[:, None]
    center, right = left + delta, left + 2 * delta
    mel = mel_scale(np.arange(fft_length // 2) * (sample_rate / fft_length))[None, :]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = np.where(mel <= center, rising, falling)
    inside = (mel > left) & (mel < right)
    return np.where(inside, weights, 0.0)


def dct_matrix(num_ceps: int, num_bins: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0 .. num_ceps-1 (kaldi's ComputeDctMatrix)."""
    if not 1 <= num_ceps <= num_bins:
        raise ValueError(f"num_ceps={num_ceps} must be between 1 and num_mel_bins={num_bins}")
    k = np.arange(num_ceps)[:, None]
    n = np.arange(num_bins)[None, :]
    m = math.sqrt(2.0 / num_bins) * np.cos(math.pi / num_bins * (n + 0.5) * k)
    m[0, :] = math.sqrt(1.0 / num_bins)
    return m


def lifter_coefficients(num_ceps: int, q: float = CEPSTRAL_LIFTER) -> np.ndarray:
    return 1.0 + 0.5 * q * np.sin(math.pi * np.arange(num_ceps) / q)


def num_frames(num_samples: int, spec: FrontendSpec, flush: bool = True) -> int:
    """kaldi's NumFrames: frames for `num_samples`, all of them when `flush`,
    else only those whose window lies inside the samples received so far."""
    length, shift = spec.frame_length, spec.frame_shift
    if spec.snip_edges:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    n = (num_samples + shift // 2) // shift
    if flush:
        return n
    while n > 0 and first_sample_of_frame(n - 1, spec) + length > num_samples:
        n -= 1
    return n


def first_sample_of_frame(frame: int, spec: FrontendSpec) -> int:
    """Index of a frame's first sample; negative before the start when
    snip_edges=False (kaldi centres frame f on f*shift + shift/2)."""
    if spec.snip_edges:
        return frame * spec.frame_shift
    midpoint = frame * spec.frame_shift + spec.frame_shift // 2
    return midpoint - spec.frame_length // 2


def reflect_index(index: np.ndarray, total: int) -> np.ndarray:
    """Map indices outside [0, total) back inside by kaldi's mirror rule
    (-1 -> 0, total -> total-1), repeated as often as needed (closed form)."""
    m = np.mod(index, 2 * total)
    return np.where(m >= total, 2 * total - 1 - m, m)


class _FeatureCore:
    """Precomputed tables and the per-frame maths, shared by both entry points."""

    def __init__(self, spec):
        spec = as_spec(spec)
        if spec.dither != 0.0:
            raise ValueError(
                f"dither={spec.dither}: this frontend is deterministic and supports dither=0 only "
                "(models are exported with dither off); set dither to 0")
        if spec.frame_shift < 1 or spec.frame_length < spec.frame_shift:
            raise ValueError(
                f"need frame_length ({spec.frame_length}) >= frame_shift ({spec.frame_shift}) >= 1 samples")
        if spec.window not in WINDOWS:
            raise ValueError(f"window {spec.window!r} is not supported; use one of {WINDOWS}")
        self.spec = spec
        if spec.kind == "raw":  # samples pass through: one 1-sample "frame" each
            self.fft_length, self.window, self.filters_t, self.dct_t = 1, None, None, None
            return
        self.fft_length = padded_length(spec.frame_length)
        self.window = window_function(spec.window, spec.frame_length)
        self.filters_t = np.ascontiguousarray(mel_filterbank(
            spec.num_mel_bins, self.fft_length, spec.sample_rate, spec.low_freq, spec.high_freq).T)
        if spec.kind == "mfcc":
            self.dct_t = np.ascontiguousarray(
                (dct_matrix(spec.num_ceps, spec.num_mel_bins) * lifter_coefficients(spec.num_ceps)[:, None]).T)
        else:
            self.dct_t = None

    @property
    def dim(self) -> int:
        return self.spec.feature_dim

    def features(self, frames: np.ndarray) -> np.ndarray:
        """[n, frame_length] float64 samples (already scaled) -> [n, dim] float32."""
        spec = self.spec
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if spec.kind == "raw":
            return np.asarray(frames, dtype=np.float32).reshape(len(frames), 1)
        power = np.empty((len(frames), self.fft_length // 2))
        for i in range(0, len(frames), MAX_BLOCK_FRAMES):
            power[i: i + MAX_BLOCK_FRAMES] = self.power(frames[i: i + MAX_BLOCK_FRAMES])
        mel = power @ self.filters_t  # one matmul: a multi-threaded BLAS pays a wake-up per call
        del power
        out = np.log(np.maximum(mel, LOG_FLOOR))
        if self.dct_t is not None:
            out = out @ self.dct_t
        return out.astype(np.float32)

    def power(self, frames: np.ndarray) -> np.ndarray:
        """[n, frame_length] samples -> [n, fft_length / 2] power spectrum (float64)."""
        spec = self.spec
        x = np.array(frames, dtype=np.float64, order="C")  # private copy, modified in place
        if spec.remove_dc_offset:
            x -= x.mean(axis=1, keepdims=True)
        if spec.preemphasis != 0.0:
            # kaldi runs i = n-1 .. 1 with the original x[i-1], then x[0] -= c*x[0]
            x[:, 1:] -= spec.preemphasis * x[:, :-1].copy()
            x[:, 0] *= 1.0 - spec.preemphasis
        x *= self.window
        spectrum = np.fft.rfft(x, n=self.fft_length, axis=1)[:, : self.fft_length // 2]
        return spectrum.real ** 2 + spectrum.imag ** 2


def _check_samples(samples) -> np.ndarray:
    return _valid_samples(samples).astype(np.float64, copy=False)


def _valid_samples(samples) -> np.ndarray:
    """The samples as an array, checked (1-D, real floats), not converted."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise ValueError(
            f"samples must be 1-D mono, got shape {a.shape}; downmix first (runtime_py.audio.to_mono_float)")
    if a.dtype.kind not in "fc" and a.size:
        raise ValueError(
            f"samples must be floats in [-1, 1], got dtype {a.dtype}; "
            "convert integer PCM with runtime_py.audio.to_mono_float")
    if a.dtype.kind == "c":
        raise ValueError("samples must be real, got complex values")
    return a


def _gather(buffer: np.ndarray, buffer_start: int, first: int, count: int,
            spec: FrontendSpec, total: int | None) -> np.ndarray:
    """Frames first .. first+count-1 as a [count, frame_length] array.

    `buffer` holds absolute samples buffer_start .. buffer_start+len-1. Frames
    lying inside the buffer are a strided view (no copy, no Python loop);
    the few frames at the utterance edges use mirrored indices (`total` is the
    utterance length, known for the end edge only once the input is finished).
    """
    length, shift = spec.frame_length, spec.frame_shift
    if count <= 0:
        return np.zeros((0, length))
    end = buffer_start + len(buffer)
    # the contiguous run of frames fully inside [buffer_start, end)
    lo = first
    while lo < first + count and first_sample_of_frame(lo, spec) < buffer_start:
        lo += 1
    hi = first + count
    while hi > lo and first_sample_of_frame(hi - 1, spec) + length > end:
        hi -= 1
    parts = []

    def edge(f0, f1):
        if f1 <= f0:
            return
        if total is None and any(first_sample_of_frame(f, spec) + length > end for f in (f0, f1 - 1)):
            raise AssertionError("frame needs samples not yet received")
        idx = np.array([first_sample_of_frame(f, spec) for f in range(f0, f1)])[:, None] + np.arange(length)
        n = total if total is not None else end
        idx = reflect_index(idx, n) - buffer_start
        if idx.min() < 0:
            raise AssertionError("frame needs samples already discarded")
        parts.append(buffer[idx])

    edge(first, lo)
    if hi > lo:
        view = np.lib.stride_tricks.sliding_window_view(buffer, length)
        s0 = first_sample_of_frame(lo, spec) - buffer_start
        parts.append(view[s0: s0 + (hi - lo - 1) * shift + 1: shift])
    edge(max(hi, lo), first + count)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)  # a view when it can: no copy


def compute_features(samples: np.ndarray, spec) -> np.ndarray:
    """Features of a whole utterance: [num_frames, feature_dim] float32."""
    core = _FeatureCore(spec)
    x = _check_samples(samples) * core.spec.sample_scale
    n = num_frames(len(x), core.spec, flush=True)
    return core.features(_gather(x, 0, 0, n, core.spec, total=len(x)))


class StreamingFrontend:
    """Features of a stream fed in pieces of any size (0 and 1 samples included).

    accept(samples) returns the frames whose whole window has arrived (they
    equal the offline frames); finish() returns the remaining frames, which
    with snip_edges=False reach past the end and use mirrored samples, exactly
    like kaldi's OnlineFbank after InputFinished(). reset() starts a new stream.
    """

    def __init__(self, spec):
        self._core = _FeatureCore(spec)
        self.spec = self._core.spec
        self.reset()

    @property
    def dim(self) -> int:
        return self._core.dim

    @property
    def num_frames_emitted(self) -> int:
        return self._next_frame

    @property
    def num_samples_received(self) -> int:
        return self._received

    def reset(self) -> None:
        self._buffer = np.zeros(0)  # samples from absolute index _buffer_start on
        self._buffer_start = 0
        self._received = 0
        self._next_frame = 0
        self._finished = False

    def accept(self, samples) -> np.ndarray:
        if self._finished:
            raise ValueError("accept() after finish(): call reset() to start a new stream")
        a = _valid_samples(samples)
        step = MAX_ACCEPT_FRAMES * self.spec.frame_shift
        if len(a) <= step:
            return self._accept(a)
        return np.concatenate([self._accept(a[i: i + step]) for i in range(0, len(a), step)])

    def _accept(self, samples: np.ndarray) -> np.ndarray:
        if len(samples):
            x = np.multiply(samples, self.spec.sample_scale, dtype=np.float64)
            self._buffer = np.concatenate([self._buffer, x])
            self._received += len(x)
        return self._emit(num_frames(self._received, self.spec, flush=False), total=None)

    def finish(self) -> np.ndarray:
        """Emit the frames that need the end of the stream; then reset() to reuse."""
        if self._finished:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._finished = True
        return self._emit(num_frames(self._received, self.spec, flush=True), total=self._received)

    def _emit(self, upto: int, total: int | None) -> np.ndarray:
        count = upto - self._next_frame
        if count <= 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        frames = _gather(self._buffer, self._buffer_start, self._next_frame, count, self.spec, total)
        feats = self._core.features(frames)
        self._next_frame = upto
        # Keep only what later frames can need: from the next frame's first
        # sample on (a finish() mirror never reaches further back: the last
        # frame's centre is <= the utterance length).
        keep_from = max(0, first_sample_of_frame(self._next_frame, self.spec))
        drop = min(keep_from - self._buffer_start, len(self._buffer))
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
        return feats
