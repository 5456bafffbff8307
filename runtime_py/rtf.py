"""Real-time factor and live-input overrun monitoring.

RtfMonitor: per chunk, how long the audio was and how long computing it took.
RTF = compute time / audio time; below 1 the recogniser keeps up. Per-chunk
latency percentiles matter as much as the mean on a Raspberry Pi (thermal
throttling, GC pauses), so they are kept too, over a bounded window.

OverrunGuard: on live input the microphone does not wait. After each chunk
the client reports how much audio is queued (the backlog); the guard warns
once per episode when the backlog passes `warn_backlog_s` and, past
`max_backlog_s`, says how many of the oldest samples to drop so the
recogniser catches up (down to `warn_backlog_s`, so it does not drop again at
the very next chunk). Neither class reads a clock unless asked (`measure`),
and the clock is injectable, so both are testable without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from contextlib import contextmanager

import numpy as np

DEFAULT_WINDOW = 10_000  # chunks kept for percentiles (~10 min of 60 ms chunks)
PERCENTILES = (50, 90, 99)

log = logging.getLogger(__name__)


def _percentiles(values, scale: float = 1.0) -> dict:
    if not values:
        return {f"p{p}": None for p in PERCENTILES} | {"max": None}
    a = np.asarray(values, dtype=np.float64) * scale
    out = {f"p{p}": float(np.percentile(a, p)) for p in PERCENTILES}
    out["max"] = float(a.max())
    return out


class RtfMonitor:
    def __init__(self, sample_rate: int = 16000, window: int = DEFAULT_WINDOW, clock=time.perf_counter):
        if sample_rate <= 0 or window <= 0:
            raise ValueError(f"sample_rate ({sample_rate}) and window ({window}) must be positive")
        self.sample_rate = sample_rate
        self.clock = clock
        self.chunks = 0
        self.audio_s = 0.0
        self.compute_s = 0.0
        self._latency = deque(maxlen=window)  # compute seconds per chunk
        self._chunk_rtf = deque(maxlen=window)

    def record(self, audio_seconds: float, compute_seconds: float) -> None:
        if audio_seconds < 0 or compute_seconds < 0:
            raise ValueError(f"durations must be >= 0, got audio={audio_seconds} compute={compute_seconds}")
        self.chunks += 1
        self.audio_s += audio_seconds
        self.compute_s += compute_seconds
        self._latency.append(compute_seconds)
        if audio_seconds > 0:
            self._chunk_rtf.append(compute_seconds / audio_seconds)

    def record_samples(self, num_samples: int, compute_seconds: float) -> None:
        self.record(num_samples / self.sample_rate, compute_seconds)

    @contextmanager
    def measure(self, num_samples: int):
        """`with monitor.measure(len(chunk)): recognise(chunk)` times the block."""
        t0 = self.clock()
        try:
            yield
        finally:
            self.record_samples(num_samples, self.clock() - t0)

    @property
    def rtf(self) -> float:
        """Running RTF over everything recorded (0 before any audio)."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0

    @property
    def latencies_s(self) -> list[float]:
        return list(self._latency)

    def latency_ms(self) -> dict:
        return _percentiles(self._latency, 1000.0)

    def chunk_rtf(self) -> dict:
        return _percentiles(self._chunk_rtf)

    def summary(self) -> dict:
        return {"chunks": self.chunks, "audio_s": self.audio_s, "compute_s": self.compute_s,
                "rtf": self.rtf, "latency_ms": self.latency_ms(), "chunk_rtf": self.chunk_rtf()}


class OverrunGuard:
    def __init__(self, max_backlog_s: float = 2.0, warn_backlog_s: float = 0.5, sample_rate: int = 16000):
        if not 0 < warn_backlog_s <= max_backlog_s:
            raise ValueError(
                f"need 0 < warn_backlog_s ({warn_backlog_s}) <= max_backlog_s ({max_backlog_s})")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self.warn_samples = int(round(warn_backlog_s * sample_rate))
        self.max_samples = int(round(max_backlog_s * sample_rate))
        self.checks = 0
        self.warnings = 0  # episodes of backlog above the warn level
        self.drops = 0  # times audio was dropped
        self.dropped_samples = 0
        self.max_backlog_seen = 0
        self._warning = False  # inside a warn episode

    def check(self, backlog_samples: int) -> int:
        """Report the queued audio after a chunk; returns samples to drop (oldest first)."""
        if backlog_samples < 0:
            raise ValueError(f"backlog_samples must be >= 0, got {backlog_samples}")
        backlog_samples = int(backlog_samples)
        self.checks += 1
        self.max_backlog_seen = max(self.max_backlog_seen, backlog_samples)
        if backlog_samples <= self.warn_samples:
            self._warning = False  # the episode is over; the next one warns again
            return 0
        if not self._warning:
            self._warning = True
            self.warnings += 1
            log.warning("audio backlog %.2f s exceeds %.2f s: the recogniser is not keeping up",
                        backlog_samples / self.sample_rate, self.warn_samples / self.sample_rate)
        if backlog_samples <= self.max_samples:
            return 0
        drop = backlog_samples - self.warn_samples
        self.drops += 1
        self.dropped_samples += drop
        log.warning("dropping %.2f s of the oldest audio (backlog %.2f s > %.2f s)",
                    drop / self.sample_rate, backlog_samples / self.sample_rate,
                    self.max_samples / self.sample_rate)
        return drop

    def summary(self) -> dict:
        return {"checks": self.checks, "warnings": self.warnings, "drops": self.drops,
                "dropped_samples": self.dropped_samples,
                "dropped_s": self.dropped_samples / self.sample_rate,
                "max_backlog_s": self.max_backlog_seen / self.sample_rate}
