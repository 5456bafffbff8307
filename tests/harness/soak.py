"""Soak test: a long stream through the StreamingRecognizer, checking that
nothing drifts or grows.

    python -m tests.harness.soak BUNDLE --minutes 60 [--json report.json]

Generated audio at the model's rate (speech-like bursts, each followed by
enough silence for the endpoint, so the utterance reset happens every few
seconds; now and then a long silence; every few utterances one repeated
exactly) is fed in one-hop blocks as fast as the model runs. Reported:

- RSS memory at the start, halfway, the end and its maximum (psutil if
  installed, else /proc/self/statm); a leak shows as growth in the second
  half (see LEAK_MB_PER_HOUR), the allocator's warm-up only in the first;
- RTF over the first and the last `--window-minutes` of audio;
- drift: the encoder outputs of the last utterance (a probe) against a fresh
  session fed the same audio (`probe_max_diff`), and of every exact repeat
  against the first time it was heard (`repeat_max_diff`). Utterance-scope
  states are reset to their exact initial values at every endpoint, so both
  must be 0 up to runtime nondeterminism;
- the number of resets (finals), and checks that counters are Python ints
  (they cannot overflow), that states stay finite and bounded, and that the
  states are exactly the initial ones right after each reset.

A test harness, not part of the runtime package (a Pi installs runtime_py
only); it drives the recogniser through its public API: the per-chunk
`trace`, `stream.states`, `stream_samples`, the frontend and endpointer
counters. Torch-free. Exit status 0 if every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime_py.recognizer import Final, StreamingRecognizer
from runtime_py.session import ModelSession
from runtime_py.stateloop import initial_states

LEAD_S = 0.3  # silence before each burst
TRAIL_S = 1.5  # silence after it (the endpoint fires after endpoint_ms of it)
REPEAT_EVERY = 7  # every 7th utterance repeats one heard before
LONG_SILENCE_EVERY = 23  # every 23rd utterance is preceded by 5-30 s of silence
STATE_BOUND = 1e6  # |state| above this counts as blowing up
# Memory: RSS rises for a while after the start as the C allocator and the
# runtime settle (measured: +8.5 MB over the first hour on the shipped
# conformer, then +0.2 MB over the second hour; with glibc told to trim
# (MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_=65536) it stays flat, i.e.
# retained heap, not a leak). A leak keeps growing, so the check is on the
# second half of the run, once that half is long enough to see a slope.
LEAK_MB_PER_HOUR = 8.0
LEAK_MIN_SECOND_HALF_MIN = 15.0


def rss_bytes() -> int:
    try:
        import psutil
        return int(psutil.Process(os.getpid()).memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def speech_burst(seconds: float, rate: int, seed: int, level: float = 0.2) -> np.ndarray:
    """Harmonics with a moving pitch, syllable-rate amplitude and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 70 * np.sin(2 * np.pi * (0.8 + 0.6 * rng.random()) * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) * (rng.random() + 0.2) / k for k in range(1, 9))
    x *= 0.4 + 0.6 * np.abs(np.sin(2 * np.pi * (2.5 + rng.random()) * t + seed))
    x = x / max(1e-9, float(np.max(np.abs(x)))) * level + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def quiet(seconds: float, rate: int, seed: int, level: float = 1e-4) -> np.ndarray:
    return (level * np.random.default_rng(seed + 1_000_003).standard_normal(int(seconds * rate))).astype(np.float32)


def utterance_audio(seed: int, rate: int, multiple: int = 1, lead_s: float = LEAD_S) -> np.ndarray:
    """One utterance, fully determined by its seed (a repeat is bit-identical),
    its length a multiple of `multiple` samples (one hop: each block the soak
    feeds is then one encoder step, and each utterance starts hop-aligned)."""
    length = 0.6 + 1.9 * np.random.default_rng(seed).random()
    x = np.concatenate([quiet(lead_s, rate, seed), speech_burst(length, rate, seed),
                        quiet(TRAIL_S, rate, seed + 7)])
    return _pad_to(x, multiple, seed)


def _pad_to(x: np.ndarray, multiple: int, seed: int) -> np.ndarray:
    extra = -len(x) % multiple
    return np.concatenate([x, (1e-4 * np.random.default_rng(seed + 17).standard_normal(extra)).astype(np.float32)])


@dataclass
class Window:
    audio_s: float = 0.0
    compute_s: float = 0.0

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else float("nan")


@dataclass
class SoakReport:
    bundle: str
    backend: str
    audio_s: float = 0.0
    wall_s: float = 0.0
    rss_initial_mb: float = 0.0  # before any audio (the runtime's first-use allocations come after)
    rss_start_mb: float = 0.0  # after the first utterance: the baseline for growth
    rss_mid_mb: float = float("nan")  # halfway through the audio
    rss_end_mb: float = 0.0
    rss_max_mb: float = 0.0
    rtf_first: float = float("nan")
    rtf_last: float = float("nan")
    rtf_overall: float = float("nan")
    window_minutes: float = 5.0
    utterances: int = 0
    resets: int = 0
    repeats_checked: int = 0
    repeat_max_diff: float = 0.0
    probe_max_diff: float = float("nan")
    probe_text_equal: bool = False
    probe_chunks: int = 0
    states_reset_exactly: bool = True
    states_finite: bool = True
    state_max_abs: float = 0.0
    counters_are_ints: bool = True
    counters: dict = field(default_factory=dict)
    endpointer_clock_error_s: float = 0.0
    problems: list = field(default_factory=list)

    def passed(self) -> bool:
        return not self.problems

    @property
    def second_half_mb_per_hour(self) -> float:
        """RSS growth rate over the second half of the audio: a leak's slope,
        without the allocator's warm-up at the start."""
        half_h = self.audio_s / 2 / 3600
        return (self.rss_end_mb - self.rss_mid_mb) / half_h if half_h > 0 else float("nan")

    def text(self) -> str:
        return "\n".join([
            f"soak {self.bundle} ({self.backend}): {self.audio_s / 60:.1f} min of audio in {self.wall_s:.0f} s "
            f"(RTF {self.rtf_overall:.4f})",
            f"  memory RSS: before any audio {self.rss_initial_mb:.1f} MB; after the first utterance (start) "
            f"{self.rss_start_mb:.1f} MB, end {self.rss_end_mb:.1f} MB, "
            f"max {self.rss_max_mb:.1f} MB (growth {self.rss_end_mb - self.rss_start_mb:+.1f} MB; "
            f"second half {self.rss_end_mb - self.rss_mid_mb:+.1f} MB = {self.second_half_mb_per_hour:+.1f} MB/h)",
            f"  RTF first {self.window_minutes:g} min {self.rtf_first:.4f}, last {self.window_minutes:g} min "
            f"{self.rtf_last:.4f} (ratio {self.rtf_last / self.rtf_first:.2f})",
            f"  resets (finals) {self.resets}, utterances {self.utterances}; states exactly initial after each "
            f"reset: {self.states_reset_exactly}; finite: {self.states_finite}, max|state| {self.state_max_abs:.3g}",
            f"  drift: probe vs fresh session max|diff| {self.probe_max_diff:.3g} over {self.probe_chunks} chunks "
            f"(text equal: {self.probe_text_equal}); {self.repeats_checked} exact repeats, "
            f"max|diff| {self.repeat_max_diff:.3g}",
            f"  counters {self.counters} (Python ints: {self.counters_are_ints}); endpointer clock vs samples "
            f"{self.endpointer_clock_error_s:.2e} s",
            ("  OK" if self.passed() else "  FAILED: " + "; ".join(self.problems)),
        ])


class _Capture:
    """The current utterance's encoder outputs, from the recogniser's trace."""

    def __init__(self, rec):
        self.trace = rec.trace

    def take(self) -> list[np.ndarray]:
        out = [np.array(o, dtype=np.float32, copy=True) for _, _, o in self.trace]
        self.trace.clear()
        return out


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if len(a) != len(b):
        return float("inf")
    return max((float(np.max(np.abs(x - y))) for x, y in zip(a, b)), default=0.0)


def _make(bundle, backend, precision, threads, endpoint_ms, vad=None):
    session = ModelSession(bundle, backend=backend, precision=precision, threads=threads)
    rec = StreamingRecognizer(session, endpoint_silence_ms=endpoint_ms, vad=vad, max_utterance_s=30.0, trace=True)
    return session, rec


def memory_problems(report: SoakReport) -> list[str]:
    """Total growth over 64 MB, or, once the second half of the run is at
    least LEAK_MIN_SECOND_HALF_MIN long, growth there faster than
    LEAK_MB_PER_HOUR (a leak's slope; the allocator's warm-up is over by then)."""
    problems = []
    if report.rss_end_mb - report.rss_start_mb > 64:
        problems.append(f"memory grew {report.rss_end_mb - report.rss_start_mb:.1f} MB")
    if report.audio_s / 2 >= LEAK_MIN_SECOND_HALF_MIN * 60 and report.second_half_mb_per_hour > LEAK_MB_PER_HOUR:
        problems.append(f"memory still growing in the second half: {report.second_half_mb_per_hour:.1f} MB/h "
                        f"(> {LEAK_MB_PER_HOUR:g})")
    return problems


def run_soak(bundle: Path | str, minutes: float = 60.0, seed: int = 0, backend: str | None = None,
             precision: str | None = None, threads: int = 1, window_minutes: float = 5.0,
             endpoint_ms: float = 600.0, progress=None) -> SoakReport:
    session, rec = _make(bundle, backend, precision, threads, endpoint_ms)
    rate, hop = rec.sample_rate, rec.hop
    enc = session.signature.graph("encoder")
    init = initial_states(enc)
    capture = _Capture(rec)
    report = SoakReport(str(bundle), f"{session.backend}/{session.precision}",
                        window_minutes=min(window_minutes, minutes / 2))
    window = report.window_minutes * 60.0
    total = minutes * 60.0
    rng = np.random.default_rng(seed)
    first, last = Window(), []  # last: per-block (audio_s, compute_s) of the final window
    rss0 = rss_initial = rss_bytes()
    rss_max = rss0
    report.rss_initial_mb = rss_initial / 2**20
    references: dict[int, list[np.ndarray]] = {}  # seed -> outputs, for exact repeats (at most 4 kept)
    fed = 0
    n_utt = 0
    t_start = time.perf_counter()
    next_progress = 60.0

    def feed(audio: np.ndarray, stop_at_final: bool):
        """Feed one-hop blocks; returns (finals, samples fed)."""
        nonlocal fed, rss_max, next_progress
        finals = []
        for i in range(0, len(audio), hop):
            block = audio[i: i + hop]
            t0 = time.perf_counter()
            events = rec.accept_audio(block, rate)
            dt = time.perf_counter() - t0
            a = len(block) / rate
            pos = fed / rate
            if pos < window:
                first.audio_s += a
                first.compute_s += dt
            if pos >= total - window:
                last.append((a, dt))
            fed += len(block)
            got = [e for e in events if isinstance(e, Final)]
            if got:
                finals += got
                _after_reset()
                if stop_at_final:
                    return finals, i + len(block)
            if fed % (hop * 200) < hop:
                rss_max = max(rss_max, rss_bytes())
            if math.isnan(report.rss_mid_mb) and fed / rate >= total / 2:
                report.rss_mid_mb = rss_bytes() / 2**20
            if progress and fed / rate >= next_progress:
                next_progress += 60.0
                progress(f"{fed / rate / 60:.0f} min, {rec.utterances} finals, RTF {rec.rtf.rtf:.4f}, "
                         f"RSS {rss_bytes() / 2**20:.1f} MB")
        return finals, len(audio)

    def _after_reset():
        for name, value in rec.stream.states.items():
            if name in init and not np.array_equal(value, init[name]) and \
                    next(s for s in enc.states if s.name == name).reset == "utterance":
                report.states_reset_exactly = False

    def check_states():
        for value in rec.stream.states.values():
            if value.dtype.kind == "f":
                if not np.all(np.isfinite(value)):
                    report.states_finite = False
                else:
                    report.state_max_abs = max(report.state_max_abs, float(np.max(np.abs(value), initial=0.0)))

    while fed / rate < total - 10.0:
        n_utt += 1
        long_pause = n_utt % LONG_SILENCE_EVERY == 0
        if n_utt % REPEAT_EVERY == 0 and references and not long_pause:
            useed = list(references)[int(rng.integers(len(references)))]
        else:
            useed = seed * 1_000_000 + n_utt
        if long_pause:  # a long pause: no speech, no endpoint, the utterance just grows
            feed(_pad_to(quiet(float(rng.uniform(5, 30)), rate, useed + 11), hop, useed), stop_at_final=False)
            capture.take()
        audio = utterance_audio(useed, rate, hop)
        capture.take()
        check_states()
        finals, _ = feed(audio, stop_at_final=True)
        check_states()
        outputs = capture.take()
        if not finals:
            continue
        report.utterances += 1
        if report.utterances == 1:
            rss0 = rss_max = rss_bytes()
        if useed in references:
            report.repeats_checked += 1
            report.repeat_max_diff = max(report.repeat_max_diff, _max_diff(outputs, references[useed]))
        elif len(references) < 4 and n_utt % 5 == 1:
            references[useed] = outputs

    # the probe: one more utterance after an hour of history, then the same audio in a fresh session
    probe = utterance_audio(seed * 1_000_000 + 999_999, rate, hop)
    capture.take()
    finals, used = feed(probe, stop_at_final=True)
    long_outputs = capture.take()
    long_text = finals[-1].text if finals else None
    report.probe_chunks = len(long_outputs)
    report.wall_s = time.perf_counter() - t_start
    report.audio_s = fed / rate
    rss_max = max(rss_max, rss_bytes())
    report.rss_start_mb, report.rss_end_mb, report.rss_max_mb = rss0 / 2**20, rss_bytes() / 2**20, rss_max / 2**20
    report.rtf_first = first.rtf
    lw = Window(sum(a for a, _ in last), sum(c for _, c in last))
    report.rtf_last = lw.rtf
    report.rtf_overall = rec.rtf.rtf
    report.resets = rec.utterances
    counters = {"stream_samples": rec.stream_samples, "utterances": rec.utterances, "rtf_chunks": rec.rtf.chunks,
                "nan_count": rec.nan_count, "dropped_samples": rec.dropped_samples,
                "frontend_samples": rec.frontend.num_samples_received,
                "frontend_frames": rec.frontend.num_frames_emitted, "vad_frames": rec.endpointer.vad.frames_seen}
    report.counters = {k: int(v) for k, v in counters.items()}
    report.counters_are_ints = all(type(v) is int for v in counters.values())
    report.endpointer_clock_error_s = abs(rec.endpointer.time_s - rec.endpointer.vad.frames_seen
                                          * rec.endpointer.vad.frame_s)

    fresh_session, fresh = _make(bundle, session.backend, session.precision, threads, endpoint_ms, vad=False)
    fresh_capture = _Capture(fresh)
    for i in range(0, used, hop):
        fresh.accept_audio(probe[i: min(i + hop, used)], rate)
    fresh.finish()
    fresh_outputs = fresh_capture.take()
    report.probe_max_diff = _max_diff(long_outputs, fresh_outputs)
    report.probe_text_equal = long_text is not None and \
        [f.text for f in fresh.finals if f.text] == ([long_text] if long_text else [])
    report.problems += memory_problems(report)
    if not (report.rtf_overall < 1.0):
        report.problems.append(f"slower than real time (RTF {report.rtf_overall:.3f})")
    if not (report.probe_max_diff <= 1e-5):
        report.problems.append(f"probe differs from a fresh session by {report.probe_max_diff:.3g}")
    if not report.probe_text_equal:
        report.problems.append("probe text differs from a fresh session's")
    if report.repeat_max_diff > 1e-5:
        report.problems.append(f"an exact repeat differs by {report.repeat_max_diff:.3g}")
    if not report.states_reset_exactly:
        report.problems.append("states were not exactly initial after a reset")
    if not report.states_finite or report.state_max_abs > STATE_BOUND:
        report.problems.append(f"states not finite/bounded (max {report.state_max_abs:.3g})")
    if not report.counters_are_ints:
        report.problems.append("a counter is not a Python int")
    if report.resets == 0:
        report.problems.append("no endpoint reset happened")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.harness.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="bundle folder made by edge-build")
    p.add_argument("--minutes", type=float, default=60.0, help="minutes of audio to stream (default: %(default)s)")
    p.add_argument("--window-minutes", type=float, default=5.0, help="RTF window at the start and the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("ort", "onnx", "tflite"), default=None)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.minutes <= 0 or not math.isfinite(args.minutes):
        print("error: --minutes must be a positive number", file=sys.stderr)
        return 2
    from runtime_py.manifest import ManifestError
    from runtime_py.session import SessionError
    try:
        report = run_soak(args.bundle, args.minutes, args.seed, args.backend, args.precision, args.threads,
                          args.window_minutes,
                          progress=None if args.quiet else (lambda m: print(f"  {m}", file=sys.stderr, flush=True)))
    except (ManifestError, SessionError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(dict(report.__dict__, second_half_mb_per_hour=report.second_half_mb_per_hour),
                                        indent=2, default=str) + "\n")
    return 0 if report.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
