"""Energy voice-activity detection and utterance endpointing.

EnergyVad labels fixed frames (default 10 ms) speech or silence from their
energy in dBFS (0 dB = a full-scale square wave; a full-scale sine is -3 dB),
with hysteresis:
- two thresholds: a frame counts as loud above `threshold_db`, as quiet below
  `threshold_db - hysteresis_db`; in between it keeps the current state;
- debouncing: `min_speech_ms` of loud frames switch speech on, `min_silence_ms`
  of quiet frames switch it off. The label is retroactive: the frames of the
  run that switched the state get the new label, so segment boundaries are
  exact to a frame. Labels therefore come out with a lag of at most
  max(min_speech_ms, min_silence_ms); `flush()` settles the pending frames.
- optional adaptive noise floor (`adaptive=True`): the thresholds rise to
  `snr_db` above a floor that follows quiet frames down at once and creeps up
  by `floor_rise_db_per_s` (steady fan noise stops counting as speech).

Endpointer turns labelled frames (or any per-chunk speech flags) into
utterances: an utterance starts at the first speech, ends after
`min_trailing_silence_ms` without speech, or is cut at `max_utterance_s`.
The client then finalises the text and resets the model's utterance states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_FRAME_MS = 10.0
DEFAULT_THRESHOLD_DB = -40.0  # dBFS: clear speech at a phone mic sits around -30 .. -10
DEFAULT_HYSTERESIS_DB = 6.0
DEFAULT_MIN_SPEECH_MS = 60.0  # shorter bursts are clicks
DEFAULT_MIN_SILENCE_MS = 150.0  # shorter gaps are pauses inside words
DEFAULT_SNR_DB = 12.0
DEFAULT_FLOOR_RISE_DB_PER_S = 1.0
ENERGY_EPS = 1e-12  # -120 dBFS: log of digital silence stays finite
DEFAULT_TRAILING_SILENCE_MS = 600.0
DEFAULT_MAX_UTTERANCE_S = 20.0
# Silence with no utterance open this long still ends in a reset, so model
# states never evolve unboundedly on a stream where nobody speaks.
DEFAULT_MAX_IDLE_S = 10.0


def _ms_to_frames(ms: float, frame_s: float) -> int:
    return max(1, int(round(ms / 1000.0 / frame_s)))


class EnergyVad:
    def __init__(self, sample_rate: int = 16000, frame_ms: float = DEFAULT_FRAME_MS,
                 threshold_db: float = DEFAULT_THRESHOLD_DB, hysteresis_db: float = DEFAULT_HYSTERESIS_DB,
                 min_speech_ms: float = DEFAULT_MIN_SPEECH_MS, min_silence_ms: float = DEFAULT_MIN_SILENCE_MS,
                 adaptive: bool = False, snr_db: float = DEFAULT_SNR_DB,
                 floor_rise_db_per_s: float = DEFAULT_FLOOR_RISE_DB_PER_S):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.frame_length = int(round(sample_rate * frame_ms / 1000.0))
        if self.frame_length < 1:
            raise ValueError(f"frame_ms={frame_ms} is shorter than one sample at {sample_rate} Hz")
        if hysteresis_db < 0 or min_speech_ms < 0 or min_silence_ms < 0:
            raise ValueError("hysteresis_db, min_speech_ms and min_silence_ms must be >= 0")
        self.sample_rate = sample_rate
        self.frame_s = self.frame_length / sample_rate
        self.threshold_db = threshold_db
        self.hysteresis_db = hysteresis_db
        self.min_speech_frames = _ms_to_frames(min_speech_ms, self.frame_s)
        self.min_silence_frames = _ms_to_frames(min_silence_ms, self.frame_s)
        self.adaptive = adaptive
        self.snr_db = snr_db
        self.floor_rise_db = floor_rise_db_per_s * self.frame_s
        self.reset()

    def reset(self) -> None:
        self._remainder = np.zeros(0, dtype=np.float64)
        self.is_speech = False  # the debounced state after the frames seen so far
        self._pending = 0  # frames whose label waits on the current run
        self.frames_seen = 0
        self.frames_labelled = 0
        self.noise_floor_db = None

    def frame_energy_db(self, frames: np.ndarray) -> np.ndarray:
        """[n, frame_length] -> mean-square energy in dBFS."""
        return 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + ENERGY_EPS)

    def process(self, samples) -> np.ndarray:
        """Feed float samples (any block size); returns the labels (True =
        speech) of the frames settled by this call, in order."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D mono, got shape {x.shape}")
        x = np.concatenate([self._remainder, x])
        n = len(x) // self.frame_length
        self._remainder = x[n * self.frame_length:]
        energies = self.frame_energy_db(x[: n * self.frame_length].reshape(n, self.frame_length))
        labels: list[bool] = []
        for e in energies:  # ~100 frames/s: a Python loop is cheap here
            self._step(float(e), labels)
        return np.array(labels, dtype=bool)

    def flush(self) -> np.ndarray:
        """End of stream: label the pending frames as the current state would
        (an unfinished loud run stays silence, an unfinished quiet run inside
        speech becomes silence: it is the trailing edge). The partial frame
        left over is dropped."""
        labels = [False] * self._pending
        self.frames_labelled += self._pending
        self._pending = 0
        self.is_speech = False
        self._remainder = np.zeros(0)
        return np.array(labels, dtype=bool)

    def _thresholds(self, energy_db: float) -> tuple[float, float]:
        on = self.threshold_db
        if self.adaptive:
            if self.noise_floor_db is None or energy_db < self.noise_floor_db:
                self.noise_floor_db = energy_db
            else:
                self.noise_floor_db += self.floor_rise_db
            on = max(on, self.noise_floor_db + self.snr_db)
        return on, on - self.hysteresis_db

    def _settle(self, label: bool, labels: list) -> None:
        labels.extend([label] * self._pending)
        self.frames_labelled += self._pending
        self._pending = 0

    def _step(self, energy_db: float, labels: list) -> None:
        on, off = self._thresholds(energy_db)
        self.frames_seen += 1
        if not self.is_speech:
            if energy_db > on:
                self._pending += 1
                if self._pending >= self.min_speech_frames:
                    self.is_speech = True
                    self._settle(True, labels)
            else:
                self._pending += 1
                self._settle(False, labels)  # a loud run that was too short, and this frame
        else:
            if energy_db < off:
                self._pending += 1
                if self._pending >= self.min_silence_frames:
                    self.is_speech = False
                    self._settle(False, labels)
            else:
                self._pending += 1
                self._settle(True, labels)  # a gap that was too short, and this frame


def speech_segments(labels, frame_s: float) -> list[tuple[float, float]]:
    """Runs of True in a label sequence as (start_s, end_s)."""
    labels = np.asarray(labels, dtype=bool)
    edges = np.diff(np.concatenate([[False], labels, [False]]).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(s * frame_s, e * frame_s) for s, e in zip(starts, ends)]


@dataclass(frozen=True)
class Endpoint:
    """An utterance has ended. Times are seconds from the stream start."""

    start_s: float  # first speech
    end_s: float  # end of the last speech (or the cut for "max_length")
    detected_s: float  # stream time at which the endpoint was decided
    reason: str  # "silence", "max_length", "idle" (a reset in long silence) or "finish"


class Endpointer:
    """Decides when an utterance is over.

    Feed it either speech flags with their duration (`update_flags`, e.g. the
    labels of EnergyVad or a model's own VAD) or raw audio (`update`, which
    runs an EnergyVad). Each call returns the endpoints it found (usually
    none, at most a few). Times count the audio fed so far; with `update` the
    stream clock lags the audio by the VAD's labelling lag.
    """

    def __init__(self, min_trailing_silence_ms: float = DEFAULT_TRAILING_SILENCE_MS,
                 max_utterance_s: float = DEFAULT_MAX_UTTERANCE_S, vad: EnergyVad | None = None,
                 max_idle_s: float = DEFAULT_MAX_IDLE_S):
        if min_trailing_silence_ms <= 0:
            raise ValueError(f"min_trailing_silence_ms must be positive, got {min_trailing_silence_ms}")
        if max_utterance_s <= 0:
            raise ValueError(f"max_utterance_s must be positive, got {max_utterance_s}")
        self.trailing_s = min_trailing_silence_ms / 1000.0
        if max_idle_s <= 0:
            raise ValueError(f"max_idle_s must be positive, got {max_idle_s}")
        self.max_utterance_s = max_utterance_s
        self.max_idle_s = max_idle_s
        self.vad = vad
        self.reset()

    def reset(self) -> None:
        self.time_s = 0.0
        self._start = None  # start of the current utterance
        self._last_speech_end = None
        self._idle_since = 0.0  # end of the last utterance or idle reset
        if self.vad is not None:
            self.vad.reset()

    @property
    def in_utterance(self) -> bool:
        return self._start is not None

    def update(self, samples) -> list[Endpoint]:
        """Raw audio: label it with the VAD (one is created at 16 kHz if none was given)."""
        if self.vad is None:
            self.vad = EnergyVad()
        return self.update_flags(self.vad.process(samples), self.vad.frame_s)

    def update_flags(self, flags, duration_s: float) -> list[Endpoint]:
        """One or more consecutive chunks, each `duration_s` long, True = speech."""
        if duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        events = []
        for flag in np.atleast_1d(np.asarray(flags, dtype=bool)):
            t0, t1 = self.time_s, self.time_s + duration_s
            self.time_s = t1
            if flag:
                if self._start is None:
                    self._start = t0
                self._last_speech_end = t1
                if t1 - self._start >= self.max_utterance_s - 1e-9:  # float slack on the sum of durations
                    events.append(Endpoint(self._start, t1, t1, "max_length"))
                    self._start = self._last_speech_end = None
                    self._idle_since = t1
            elif self._start is not None and t1 - self._last_speech_end >= self.trailing_s - 1e-9:
                events.append(Endpoint(self._start, self._last_speech_end, t1, "silence"))
                self._start = self._last_speech_end = None
                self._idle_since = t1
            elif self._start is None and t1 - self._idle_since >= self.max_idle_s - 1e-9:
                events.append(Endpoint(self._idle_since, t1, t1, "idle"))
                self._idle_since = t1
        return events

    def finish(self) -> list[Endpoint]:
        """End of stream: close an open utterance (settling the VAD first)."""
        events = []
        if self.vad is not None:
            events += self.update_flags(self.vad.flush(), self.vad.frame_s)
        if self._start is not None:
            events.append(Endpoint(self._start, self._last_speech_end, self.time_s, "finish"))
            self._start = self._last_speech_end = None
        return events
