"""Streaming recognition: audio blocks in, partial and final text out.

    session = ModelSession("dist/demo-conformer-rpi")
    rec = StreamingRecognizer(session)
    for block in source:                       # any size, int16 or float, mono or [n, ch]
        for event in rec.accept_audio(block, source.sample_rate):
            print(event)                       # Partial(text) / Final(text, start_s, end_s)
    rec.finish()

The path of the audio, and why it gives the PyTorch model's output:
  block -> to_mono_float -> sanitize (NaN/Inf -> 0, counted) -> resample to
  the model rate (StreamingResampler, if needed) -> ring buffer -> pieces of
  one hop (shift_frames * frame_shift samples) -> the Stream (stream.py):
  StreamingFrontend (kaldi fbank, equal to the offline features) -> encoder
  chunks of `chunk_frames` advancing by `shift_frames` -> greedy decoder.
No audio is ever left out: the VAD (EnergyVad + Endpointer) only decides
*when* an utterance ends. At an endpoint the utterance is flushed: zeros are
appended (tail padding: at least TAIL_PADDING_S, more if a chunk needs it so
the last real frame lands in a complete chunk), the frontend is finished
(kaldi's end-of-input frames), every complete chunk is encoded, the text is
finalised, and the utterance-scope states, the decoder and the frontend are
reset. An utterance's encoder input is therefore exactly the complete chunks
of `compute_features(audio + zeros(tail_padding_samples(...)))`, which is how
the bundle's golden files are made, and the encoder outputs equal the model's
forward on those features.

Live input (a microphone) does not wait: pass `backlog=` (samples queued at
the source) to `accept_audio`; an OverrunGuard warns when the backlog grows
and drops the oldest audio past `max_backlog_s` (counted in `summary()`).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import StreamingResampler, read_wav, sanitize, to_mono_float
from .ringbuffer import RingBuffer
from .rtf import OverrunGuard, RtfMonitor
from .stream import TAIL_PADDING_S, tail_padding_samples
from .vad import DEFAULT_MAX_UTTERANCE_S, Endpointer, EnergyVad


@dataclass(frozen=True)
class Partial:
    """The current utterance's text changed."""
    text: str


@dataclass(frozen=True)
class Final:
    """An utterance ended. Times are seconds of audio from the stream start
    (speech start/end as the VAD saw them; the cut for "max_length")."""
    text: str
    start_s: float
    end_s: float
    reason: str = "silence"  # "silence", "max_length", "idle" or "finish"


SAFE_MARGIN = 0.9  # cut an utterance at 90 % of the model's proven safe streaming duration


def safe_stream_seconds(session) -> float | None:
    """The bundle's proven safe streaming duration (None: no limit was found)."""
    bundle = getattr(session, "bundle", None)
    manifest = getattr(bundle, "manifest", None) or {}
    value = manifest.get("proofs", {}).get("stream", {}).get("safe_seconds")
    return float(value) if value else None


class StreamingRecognizer:
    def __init__(self, session, endpoint_silence_ms: float = 600.0,
                 vad: EnergyVad | bool | None = None, max_utterance_s: float = DEFAULT_MAX_UTTERANCE_S,
                 max_backlog_s: float = 2.0, warn_backlog_s: float = 0.5, resample: bool = True,
                 tail_padding_s: float = TAIL_PADDING_S, clock=time.perf_counter, trace: bool = False,
                 keep_finals: int = 100):
        """session: a ModelSession (its stream is used) or a stream.Model
        (a new stream is created on it, so recognisers can share one model).
        vad: an EnergyVad, None for the default one, False for no endpointing
        (then an utterance is cut every `max_utterance_s` of audio).
        trace: keep (utterance, features, encoder output) per chunk in
        `self.trace`, for tests and debugging.
        keep_finals: `self.finals` holds the last this many Final results (a
        service running for days must not keep them all); every Final is
        also returned, once, as an event by accept_audio/finish."""
        self.session = session
        self.stream = session.stream if hasattr(session, "stream") else session.create_stream()
        sig = session.signature
        self.spec = sig.frontend
        self.sample_rate = self.spec.sample_rate
        self.chunk_frames, self.shift_frames = sig.chunk_frames, sig.shift_frames
        self.hop = self.shift_frames * self.spec.frame_shift  # samples per encoder step
        # A model that can stream only so long (edge-build's stream proof) is cut before it.
        safe = safe_stream_seconds(session)
        if safe is not None and safe * SAFE_MARGIN < max_utterance_s:
            max_utterance_s = safe * SAFE_MARGIN
        self.max_utterance_s = max_utterance_s
        self.allow_resample = resample
        self.tail_padding_s = tail_padding_s
        self.clock = clock
        if vad is False:
            self.endpointer = None
        else:
            vad = vad if isinstance(vad, EnergyVad) else EnergyVad(self.sample_rate)
            if vad.sample_rate != self.sample_rate:
                raise ValueError(f"the VAD runs at {vad.sample_rate} Hz, the model at {self.sample_rate} Hz")
            self.endpointer = Endpointer(endpoint_silence_ms, max_utterance_s, vad)
        self.rtf = RtfMonitor(self.sample_rate, clock=clock)
        self.guard = OverrunGuard(max_backlog_s, warn_backlog_s, self.sample_rate)
        # The ring holds at most one hop plus what one write brings in: writes
        # are cut to its free space and processed in between (never overflows).
        self.ring = RingBuffer(max(self.hop * 4, int(self.sample_rate * 0.5)), np.float32, overflow="error")
        self.trace: list | None = [] if trace else None
        self.nan_count = 0
        self.dropped_samples = 0  # audio dropped by the overrun guard (model rate)
        self.utterances = 0
        self.finals: collections.deque[Final] = collections.deque(maxlen=keep_finals)
        self._resampler: StreamingResampler | None = None
        self._source_rate: int | None = None
        self._skip = 0  # samples still to drop from the incoming audio (overrun)
        self._stream_samples = 0  # model-rate samples that reached the frontend (see stream_samples)
        self._live_backlog: int | None = None
        self._new_utterance()

    # -- public ------------------------------------------------------------------
    def accept_audio(self, samples, sample_rate: int, backlog: int | None = None) -> list:
        """Feed one block (any size; int or float; 1-D or [frames, channels]).
        `backlog`: samples (at `sample_rate`) waiting at a live source after
        this block; giving it turns on the overrun guard. Returns the events."""
        x = to_mono_float(samples)
        x, bad = sanitize(x)
        self.nan_count += bad
        x = self._to_model_rate(x, int(sample_rate))
        if backlog is not None:
            self._live_backlog = int(round(backlog * self.sample_rate / int(sample_rate)))
        else:
            self._live_backlog = None
        return self._push(x)

    def finish(self) -> list:
        """End of stream: process everything, close the utterance (Final),
        and reset for a new stream."""
        events = []
        if self._resampler is not None:
            events += self._push(self._drop_skipped(self._resampler.finish()))
        self._live_backlog = None
        if self.ring.available:
            events += self._process_piece(self.ring.read(self.ring.available))
        eps = self.endpointer.finish() if self.endpointer is not None else []
        if eps:
            for ep in eps:
                events += self._flush(ep.start_s, ep.end_s, ep.reason)
        else:
            events += self._flush(None, None, "finish", only_if_text=True)
        self.reset_stream()
        return events

    def reset_stream(self) -> None:
        """Start a new stream: every state (session scope too), VAD, resampler."""
        self._reset("session")
        self.ring.clear()
        if self.endpointer is not None:
            self.endpointer.reset()
        self._resampler, self._source_rate, self._skip = None, None, 0
        self._stream_samples = 0
        self._new_utterance()

    def text(self) -> str:
        return self.stream.text

    @property
    def frontend(self):
        """The stream's StreamingFrontend (its sample and frame counters)."""
        return self.stream.frontend

    @property
    def stream_samples(self) -> int:
        """Model-rate samples that reached the frontend since the stream began."""
        return self._stream_samples

    def summary(self) -> dict:
        r = self.rtf.summary()
        lat = r["latency_ms"]
        return {
            "audio_s": r["audio_s"], "compute_s": r["compute_s"], "rtf": r["rtf"], "chunks": r["chunks"],
            "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "max")},
            "overrun_warnings": self.guard.warnings, "overrun_drops": self.guard.drops,
            "dropped_samples": self.dropped_samples,
            "dropped_s": self.dropped_samples / self.sample_rate,
            "nan_count": self.nan_count, "utterances": self.utterances,
            "backend": f"{getattr(self.session, 'backend', '?')}/{getattr(self.session, 'precision', '?')}",
        }

    # -- internals ------------------------------------------------------------------
    def _reset(self, scope: str) -> None:
        # through a ModelSession's own reset (the same stream) when given one
        (self.session if hasattr(self.session, "stream") else self.stream).reset(scope)

    def _new_utterance(self) -> None:
        self._utt_start = self._stream_samples
        self._last_text = ""

    def _to_model_rate(self, x: np.ndarray, rate: int) -> np.ndarray:
        if rate == self.sample_rate and self._resampler is None:
            return x
        if rate != self.sample_rate and not self.allow_resample:
            raise ValueError(f"audio at {rate} Hz but the model needs {self.sample_rate} Hz and "
                             "resampling is disabled; resample the input or enable resampling")
        if self._resampler is None:
            self._resampler, self._source_rate = StreamingResampler(rate, self.sample_rate), rate
        elif rate != self._source_rate:
            raise ValueError(f"the sample rate changed from {self._source_rate} to {rate} Hz mid-stream; "
                             "call finish() first")
        return self._resampler.process(x)

    def _drop_skipped(self, x: np.ndarray) -> np.ndarray:
        if self._skip and len(x):
            n = min(self._skip, len(x))
            self._skip -= n
            self.dropped_samples += n
            x = x[n:]
        return x

    def _push(self, x: np.ndarray) -> list:
        events = []
        x = self._drop_skipped(x)
        pos = 0
        while True:
            n = min(len(x) - pos, self.ring.free)
            self.ring.write(x[pos: pos + n])
            pos += n
            while self.ring.available >= self.hop:
                events += self._process_piece(self.ring.read(self.hop))
                if self._live_backlog is not None:
                    self._check_overrun(len(x) - pos)
            if pos >= len(x):
                return events
            x = self._drop_skipped(x[pos:])
            pos = 0

    def _check_overrun(self, unread: int) -> None:
        backlog = self.ring.available + unread + max(0, self._live_backlog - self._skip)
        drop = self.guard.check(backlog)
        if drop:
            here = min(drop, self.ring.available)
            self.ring.skip(here)
            self.dropped_samples += here
            self._skip += drop - here  # the rest is dropped as it arrives

    def _process_piece(self, piece: np.ndarray) -> list:
        t0 = self.clock()
        eps = self.endpointer.update(piece) if self.endpointer is not None else []
        self._stream_samples += len(piece)
        self.stream.accept_waveform(self.sample_rate, piece)
        events = self._decode_ready()
        self.rtf.record_samples(len(piece), self.clock() - t0)
        for ep in eps:
            # an idle reset only produces a Final if the model emitted text in the silence
            events += self._flush(ep.start_s, ep.end_s, ep.reason, only_if_text=ep.reason == "idle")
        if self.endpointer is None and (self._stream_samples - self._utt_start
                                        >= self.max_utterance_s * self.sample_rate):
            events += self._flush(None, None, "max_length")
        return events

    def _decode_ready(self) -> list:
        """Run every complete chunk the stream holds; a Partial when the text changes."""
        events = []
        while self.stream.is_ready():
            self.stream.model.decode_streams([self.stream])
            if self.trace is not None:
                self.trace.append((self.utterances, self.stream.last_chunk.copy(),
                                   np.array(self.stream.outputs[self.stream.output_name])))
            text = self.stream.text
            if text != self._last_text:
                self._last_text = text
                events.append(Partial(text))
        return events

    def _flush(self, start_s, end_s, reason: str, only_if_text: bool = False) -> list:
        t0 = self.clock()
        self.stream.input_finished(self.tail_padding_s)  # tail padding, the frontend's last frames
        events = self._decode_ready()
        text = self.stream.text
        if start_s is None:
            start_s, end_s = self._utt_start / self.sample_rate, self._stream_samples / self.sample_rate
        if text or not only_if_text:
            final = Final(text, float(start_s), float(end_s), reason)
            self.finals.append(final)
            self.utterances += 1
            events.append(final)
        self._reset("utterance")  # states of that scope, decoder, frontend, features
        self._new_utterance()
        self.rtf.record(0.0, self.clock() - t0)
        return events

def transcribe_file(bundle_dir: Path | str, wav_path: Path | str, backend: str | None = None,
                    precision: str | None = None, threads: int = 1, **options) -> list[str]:
    """The final texts of a WAV file (one per utterance), run as a stream."""
    from .session import ModelSession

    session = ModelSession(bundle_dir, backend=backend, precision=precision, threads=threads)
    samples, rate = read_wav(wav_path)
    rec = StreamingRecognizer(session, **options)
    block = max(1, rate // 10)
    events = []
    for i in range(0, len(samples), block):
        events += rec.accept_audio(samples[i: i + block], rate)
    events += rec.finish()
    return [e.text for e in events if isinstance(e, Final) and e.text]


# tail_padding_samples lives in stream.py (the one rule); re-exported for callers of this module
__all__ = ["Partial", "Final", "StreamingRecognizer", "transcribe_file", "safe_stream_seconds",
           "TAIL_PADDING_S", "tail_padding_samples"]
