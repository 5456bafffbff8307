"""Audio input for the client: WAV files, microphone blocks, resampling.

Everything is turned into float32 mono samples in [-1, 1] at the model's
sample rate, which is what `runtime_py.frontend` expects.

- `read_wav` / `parse_wav`: a small RIFF parser (the stdlib `wave` module
  cannot read float WAVs): PCM 8/16/24/32-bit, float 32/64-bit,
  WAVE_FORMAT_EXTENSIBLE, any channel count (averaged to mono).
- `to_mono_float`: the same conversion for microphone callback blocks.
- `resample` / `StreamingResampler`: Kaiser-windowed sinc, polyphase, for
  rational ratios (8000, 22050, 44100, 48000 -> 16000 ...). The streaming
  version returns exactly the offline output, only later (see its docstring).
- `write_wav`: 16-bit PCM, for tests and golden files.
"""

from __future__ import annotations

import math
import struct
import warnings
import wave

import numpy as np

# -- WAV constants ----------------------------------------------------------
FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
# WAVE_FORMAT_EXTENSIBLE sub-format GUIDs: the format code, then this tail.
KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
PCM_WIDTHS = (1, 2, 3, 4)  # bytes per sample
FLOAT_WIDTHS = (4, 8)
FMT_MIN_SIZE = 16
EXTENSIBLE_MIN_SIZE = 40
UNKNOWN_SIZE = 0xFFFFFFFF  # written by streaming encoders that cannot seek back

# -- narrowband detection -------------------------------------------------
NARROWBAND_HZ = 4000  # telephone / 8 kHz audio has nothing above this
NARROWBAND_FRACTION = 1e-6  # energy share above ~4.2 kHz below which audio counts as narrowband
# (measured: the shipped 16 kHz samples hold 6e-4..3e-2 of their energy there,
# the same samples through 8 kHz and back 1e-10)

# -- resampler constants ----------------------------------------------------
ZERO_CROSSINGS = 20  # sinc lobes on each side: longer = sharper transition band
ROLLOFF = 0.92  # cutoff as a fraction of the lower Nyquist: room for the transition band
KAISER_BETA = 8.0  # about 80 dB stop-band attenuation
MAX_PHASES = 4096  # refuse ratios whose reduced numerator would need a huge table
BATCH_OUTPUTS = 1024  # outputs per vectorised step: bounds memory, stays in cache


class WavError(ValueError):
    """The bytes are not a WAV file this reader supports."""


# -- WAV reading -------------------------------------------------------------
def read_wav(path) -> tuple[np.ndarray, int]:
    """Read a WAV file: (float32 mono samples in [-1, 1], sample rate).

    Float WAVs are returned as stored (values outside [-1, 1], NaN or Inf are
    not touched: see `sanitize`). A data chunk cut short (declared larger than
    the file) yields the complete frames present and a warning.
    """
    with open(path, "rb") as f:
        data = f.read()
    return parse_wav(data, name=str(path))


def parse_wav(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """`read_wav` on the bytes of a file."""
    if len(data) == 0:
        raise WavError(f"{name}: the file is empty")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        kind = sniff_format(data)
        if kind:  # a compressed file, whatever its name says
            stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "audio"
            raise WavError(f"{name}: this is {kind}, not WAV; convert it with sox/ffmpeg: "
                           f"ffmpeg -i '{name}' -ac 1 -ar 16000 '{stem}-16k.wav'  (or: sox '{name}' -c 1 -r 16000 "
                           f"'{stem}-16k.wav')")
        raise WavError(f"{name}: not a RIFF/WAVE file (header {data[:12]!r})")
    fmt = None
    pcm = None  # (bytes, truncated)
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos: pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body_start = pos + 8
        body = data[body_start: body_start + size]
        short = len(body) < size
        if chunk_id == b"fmt ":
            if short or size < FMT_MIN_SIZE:
                raise WavError(f"{name}: fmt chunk is truncated ({len(body)} of {max(size, FMT_MIN_SIZE)} bytes)")
            fmt = _parse_fmt(body, name)
        elif chunk_id == b"data" and pcm is None:
            pcm = (body, short and size != UNKNOWN_SIZE)
        if short:
            break  # nothing can follow a chunk that runs past the end
        pos = body_start + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise WavError(f"{name}: no fmt chunk")
    if pcm is None:
        raise WavError(f"{name}: no data chunk")
    fmt_code, channels, rate, width = fmt
    body, truncated = pcm
    frame_bytes = channels * width
    frames = len(body) // frame_bytes
    if truncated:
        if frames == 0:
            raise WavError(f"{name}: the data chunk is truncated and holds no complete frame")
        warnings.warn(f"{name}: data chunk is truncated; using the {frames} complete frames present",
                      stacklevel=2)
    elif len(body) % frame_bytes:
        warnings.warn(f"{name}: data chunk ends with a partial frame; it is ignored", stacklevel=2)
    raw = body[: frames * frame_bytes]
    samples = _decode(raw, fmt_code, width).reshape(frames, channels)
    return _downmix(samples), rate


def sniff_format(data: bytes) -> str | None:
    """The compressed audio format a file's first bytes announce (MP3, FLAC,
    Ogg, MP4/M4A), or None."""
    if data[:3] == b"ID3":
        return "MP3"
    if len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0 and (data[1] & 0x06) != 0:
        return "MP3"  # an MPEG audio frame sync with a valid layer (AAC ADTS has layer bits 00)
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "Ogg (Vorbis/Opus)"
    if data[4:8] == b"ftyp":
        return "MP4/M4A (AAC)"
    return None


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, int]:
    """-> (format code PCM/FLOAT, channels, sample rate, bytes per sample)."""
    code, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body, 0)
    if code == FORMAT_EXTENSIBLE:
        if len(body) < EXTENSIBLE_MIN_SIZE:
            raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE fmt chunk is {len(body)} bytes, needs {EXTENSIBLE_MIN_SIZE}")
        guid = body[24:40]
        code = struct.unpack_from("<H", guid, 0)[0]
        if guid[2:] != KSDATAFORMAT_TAIL:
            raise WavError(f"{name}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format {guid.hex()}")
    if code not in (FORMAT_PCM, FORMAT_FLOAT):
        raise WavError(f"{name}: unsupported format code 0x{code:04x}; convert to PCM or float WAV")
    if channels == 0:
        raise WavError(f"{name}: the fmt chunk declares zero channels")
    if rate == 0:
        raise WavError(f"{name}: the fmt chunk declares a sample rate of 0")
    # The container width comes from block_align (samples with e.g. 20 valid
    # bits are stored left-justified in 3 bytes); bits must agree with it.
    if block_align == 0 or block_align % channels:
        raise WavError(f"{name}: block_align {block_align} is not a multiple of {channels} channels")
    width = block_align // channels
    if bits == 0 or (bits + 7) // 8 != width:
        raise WavError(f"{name}: {bits} bits per sample do not fit a {width}-byte container")
    allowed = PCM_WIDTHS if code == FORMAT_PCM else FLOAT_WIDTHS
    if width not in allowed:
        kind = "PCM" if code == FORMAT_PCM else "float"
        raise WavError(f"{name}: {8 * width}-bit {kind} is not supported (have {[8 * w for w in allowed]})")
    return code, channels, rate, width


def _decode(raw: bytes, code: int, width: int) -> np.ndarray:
    """Little-endian samples -> float64 in [-1, 1) (floats as stored)."""
    if code == FORMAT_FLOAT:
        return np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2") / 32768.0
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)  # sign-extend 24 bits
        return v / float(1 << 23)
    return np.frombuffer(raw, dtype="<i4") / float(1 << 31)


def _downmix(samples: np.ndarray) -> np.ndarray:
    """[frames, channels] float64 -> float32 mono (channel average)."""
    if samples.shape[1] == 1:
        return samples[:, 0].astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf in float WAVs: NaN, left to sanitize()
        return samples.mean(axis=1).astype(np.float32)


def sanitize(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf by 0 (a corrupt float WAV must not poison the model's
    state). Returns (clean copy, number of samples replaced)."""
    samples = np.asarray(samples)
    bad = ~np.isfinite(samples)
    count = int(bad.sum())
    if count == 0:
        return samples.copy(), 0
    out = samples.copy()
    out[bad] = 0
    return out, count


def to_mono_float(block, channel_axis: int = 1) -> np.ndarray:
    """A microphone block -> float32 mono in [-1, 1].

    int16 / int32 / int8 are scaled by their full range, uint8 is centred on
    128, floats are kept as they are. A 2-D block is [frames, channels] by
    default (channel_axis=1, as sounddevice delivers it) and is averaged.
    """
    a = np.asarray(block)
    if a.ndim == 2:
        if channel_axis not in (0, 1, -1, -2):
            raise ValueError(f"channel_axis must be 0 or 1 for a 2-D block, got {channel_axis}")
        if a.shape[channel_axis] == 0:
            raise ValueError(f"block of shape {a.shape} has zero channels")
        a = np.moveaxis(a, channel_axis, 1)
    elif a.ndim != 1:
        raise ValueError(f"block must be 1-D or 2-D [frames, channels], got shape {a.shape}")
    scale = {np.dtype(np.int16): 1 / 32768.0, np.dtype(np.int32): 1 / 2.0 ** 31,
             np.dtype(np.int8): 1 / 128.0}
    if a.dtype == np.uint8:
        x = (a.astype(np.float64) - 128.0) / 128.0
    elif a.dtype in scale:
        x = a.astype(np.float64) * scale[a.dtype]
    elif a.dtype.kind == "f":
        x = a
    else:
        raise ValueError(
            f"unsupported sample dtype {a.dtype}; use int16, int32, int8, uint8, float32 or float64")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return np.asarray(x, dtype=np.float32)


# -- WAV writing -------------------------------------------------------------
def is_narrowband(samples, rate: int, max_seconds: float = 30.0) -> bool:
    """True for audio with (next to) no energy above 4 kHz: recorded at 8 kHz
    (telephone, some Bluetooth headsets), possibly resampled up since. A
    model trained on 16 kHz wideband speech makes more errors on it.
    Silence is not called narrowband."""
    if rate <= 2 * NARROWBAND_HZ:
        return True
    x = np.asarray(samples, dtype=np.float64)[: int(max_seconds * rate)]
    n = 512
    if len(x) < 2 * n:
        return False
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2] * np.hanning(n)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
    total = power.sum()
    if total < 1e-6 * len(frames):  # (near) digital silence
        return False
    high = power[np.fft.rfftfreq(n, 1.0 / rate) > NARROWBAND_HZ * 1.05].sum()
    return bool(high / total < NARROWBAND_FRACTION)


def write_wav(path, samples, rate: int) -> None:
    """Write float samples in [-1, 1] (clipped) as 16-bit PCM mono."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"write_wav writes mono: samples must be 1-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain NaN or Inf; clean them with sanitize() first")
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.tobytes())


# -- resampling ------------------------------------------------------------
def _kaiser(u: np.ndarray, beta: float) -> np.ndarray:
    """Kaiser window at positions u in [-1, 1] (0 outside)."""
    inside = np.abs(u) <= 1.0
    arg = beta * np.sqrt(np.clip(1.0 - u * u, 0.0, None))
    return np.where(inside, np.i0(arg) / np.i0(beta), 0.0)


class StreamingResampler:
    """Rational-ratio resampler fed in blocks of any size.

    Output sample m sits at input time m * from_rate / to_rate and is a
    windowed-sinc interpolation of the input around that time (zero-phase:
    no delay in the signal itself). Input before the start and after the end
    counts as zeros, so the edges fade in over the filter's half-width.

    Streaming: output m needs input samples up to `lookahead` past its time,
    so process() returns the outputs whose inputs have all arrived and
    finish() returns the rest (using the zeros after the end). The
    concatenation equals `resample()` of the whole signal; the price is a
    latency of `lookahead` input samples (67 = 1.4 ms at 48 kHz -> 16 kHz).
    """

    def __init__(self, from_rate: int, to_rate: int):
        for label, r in (("from_rate", from_rate), ("to_rate", to_rate)):
            if int(r) != r or r <= 0:
                raise ValueError(f"{label} must be a positive integer in Hz, got {r!r}")
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        g = math.gcd(self.from_rate, self.to_rate)
        self.up, self.down = self.to_rate // g, self.from_rate // g
        if self.up > MAX_PHASES:
            raise ValueError(
                f"{from_rate} -> {to_rate} Hz reduces to {self.up}/{self.down}; "
                f"numerators above {MAX_PHASES} are not supported (resample in two steps)")
        self.identity = self.up == self.down
        cutoff = 0.5 * min(1.0, self.up / self.down) * ROLLOFF  # cycles per input sample
        half_width = ZERO_CROSSINGS / (2.0 * cutoff)  # input samples each side
        self.lookahead = int(math.ceil(half_width)) + 1
        taps = np.arange(-self.lookahead, self.lookahead + 1)
        # table[r, j]: weight of input q + taps[j] for an output at q + r/up
        t = np.arange(self.up)[:, None] / self.up - taps[None, :]
        self._table = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * _kaiser(t / half_width, KAISER_BETA)
        self._taps = taps
        self.reset()

    def reset(self) -> None:
        # Input samples from absolute index _start on. The signal is preceded
        # by `lookahead` zeros (and followed by as many at finish()), so every
        # output's taps lie inside the buffer and the edges need no special case.
        self._buffer = np.zeros(self.lookahead)
        self._start = -self.lookahead
        self._received = 0
        self._next = 0  # next output index
        self._finished = False

    def output_length(self, num_input: int) -> int:
        """Outputs for a whole signal of num_input samples: ceil(n * to / from)."""
        return -(-num_input * self.up // self.down)

    def process(self, block) -> np.ndarray:
        if self._finished:
            raise ValueError("process() after finish(): call reset() to start a new stream")
        x = np.asarray(block)
        if x.ndim != 1 or (x.size and x.dtype.kind != "f"):
            raise ValueError(f"process() takes 1-D float samples, got shape {x.shape} dtype {x.dtype}; "
                             "convert integer PCM with to_mono_float()")
        if x.size:
            self._buffer = np.concatenate([self._buffer, x.astype(np.float64)])
            self._received += x.size
        if self.identity:
            return self._emit_identity()
        # output m is ready once input floor(m*down/up) + lookahead has arrived
        ready = -(-(self._received - self.lookahead) * self.up // self.down)
        return self._emit(max(ready, self._next))

    def finish(self) -> np.ndarray:
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        if self.identity:
            return self._emit_identity()
        self._buffer = np.concatenate([self._buffer, np.zeros(self.lookahead + 1)])
        return self._emit(self.output_length(self._received))

    def _emit_identity(self) -> np.ndarray:
        out = self._buffer[self.lookahead:].astype(np.float32)
        self._buffer = self._buffer[: self.lookahead] * 0.0
        return out

    def _emit(self, upto: int) -> np.ndarray:
        pieces = []
        if upto > self._next:
            # every tap window is a row of this strided view: no index arithmetic per tap
            windows = np.lib.stride_tricks.sliding_window_view(self._buffer, len(self._taps))
        for m0 in range(self._next, upto, BATCH_OUTPUTS):
            m = np.arange(m0, min(upto, m0 + BATCH_OUTPUTS))
            q, r = np.divmod(m * self.down, self.up)
            rows = windows[q - self.lookahead - self._start]
            pieces.append(np.einsum("ij,ij->i", self._table[r], rows))
        self._next = max(self._next, upto)
        # keep the inputs the next output can still reach
        keep_from = self._next * self.down // self.up - self.lookahead
        drop = min(keep_from - self._start, len(self._buffer))
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._start += drop
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32)


def resample(samples, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole signal (float32 out); see StreamingResampler."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"resample() takes 1-D mono samples, got shape {x.shape}; use to_mono_float first")
    r = StreamingResampler(from_rate, to_rate)
    return np.concatenate([r.process(x), r.finish()])
