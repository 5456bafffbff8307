"""Where the demo's audio comes from: a microphone, a WAV file, or a test
generator that behaves like a microphone.

Every source is a context manager and an iterator of float32 mono blocks of
about `block_ms` (100 ms) at its own `sample_rate`; `backlog()` says how many
samples are waiting (a live source keeps recording while the recogniser
works; that number feeds the overrun guard).

Live sources share one design: a producer (the PortAudio callback thread,
or a thread standing in for it) pushes blocks of whatever size it likes
into a queue; iteration gathers them into ~100 ms blocks for the consumer.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np

from runtime_py.audio import read_wav, to_mono_float

BLOCK_MS = 100
_END = None  # queue sentinel: the producer is done
_GONE = object()  # queue sentinel: the device went away


class SourceError(RuntimeError):
    """The source cannot be opened; the message says how to fix it."""


class AudioSource:
    """Interface: `with src: for block in src: ...`; `src.sample_rate`,
    `src.backlog()` (samples waiting), `src.live` (does not wait for us)."""

    sample_rate: int = 16000
    live: bool = False
    block_ms: float = BLOCK_MS

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def backlog(self) -> int:
        return 0

    def __iter__(self):
        raise NotImplementedError

    @property
    def block_size(self) -> int:
        return max(1, int(round(self.sample_rate * self.block_ms / 1000.0)))


class _QueueSource(AudioSource):
    """A producer thread pushes odd-size blocks; iteration yields ~block_ms."""

    live = True

    def __init__(self, sample_rate: int, block_ms: float = BLOCK_MS):
        self.sample_rate = int(sample_rate)
        self.block_ms = block_ms
        self._q: queue.Queue = queue.Queue()
        self._queued = 0
        self._lock = threading.Lock()
        self.overflows = 0  # driver-reported input overflows

    def _push(self, block) -> None:
        """Called from the producer (audio callback) thread: copy and enqueue."""
        x = to_mono_float(block).copy()
        with self._lock:
            self._queued += len(x)
        self._q.put(x)

    def _end(self) -> None:
        self._q.put(_END)

    def backlog(self) -> int:
        with self._lock:
            return self._queued

    def _next_block(self):
        return self._q.get()

    def __iter__(self):
        pending, have = [], 0
        while True:
            x = self._next_block()
            if x is _END:
                break
            with self._lock:
                self._queued -= len(x)
            pending.append(x)
            have += len(x)
            if have >= self.block_size:
                yield np.concatenate(pending)
                pending, have = [], 0
        if pending:
            yield np.concatenate(pending)


class MicSource(_QueueSource):
    """The default (or `device`) input through sounddevice / PortAudio.

    A device that goes away mid-stream (unplugged, its sound server gone)
    ends the iteration with a SourceError instead of a silent hang: PortAudio
    ends the stream (its finished callback), or no audio arrives for
    `stall_s` seconds."""

    stall_s = 5.0

    def __init__(self, sample_rate: int = 16000, device=None, channels: int = 1, block_ms: float = BLOCK_MS):
        super().__init__(sample_rate, block_ms)
        self.device, self.channels = device, channels
        self._stream = None
        self._stopping = False
        self._heard = 0  # samples delivered, for the message when the device goes away
        self._sd = self._sounddevice()  # fail here, before anything starts, if it is missing
        self._check_device()  # and here if there is no microphone, before the demo prints its banner

    def _check_device(self) -> None:
        try:
            info = self._sd.query_devices(self.device, "input")
        except Exception as e:  # sounddevice.PortAudioError or ValueError: no (such) input device
            which = "no default input device" if self.device is None else f"no input device {self.device!r}"
            raise SourceError(f"cannot use the microphone: {which} ({e}). List the input devices with: "
                              f"python -m sounddevice   then pass --device N") from None
        if not info or int(info.get("max_input_channels", 0)) < 1:
            raise SourceError(f"device {self.device!r} has no input channels; list the input devices with: "
                              "python -m sounddevice   then pass --device N")

    @staticmethod
    def _sounddevice():
        try:
            import sounddevice
        except ImportError:
            raise SourceError("the microphone needs the sounddevice package: pip install sounddevice "
                              "(or pip install -e '.[mic]' in the edge-speech checkout)") from None
        except OSError as e:  # sounddevice imports but finds no PortAudio library
            raise SourceError(f"PortAudio is missing ({e}); on Raspberry Pi OS / Debian: "
                              "sudo apt-get install libportaudio2") from None
        return sounddevice

    def start(self) -> None:
        sd = self._sd

        def callback(indata, frames, time_info, status):  # PortAudio's thread: no heavy work
            if status and status.input_overflow:
                self.overflows += 1
            self._push(indata[:, 0] if self.channels == 1 else indata)

        def finished():  # the stream ended: we stopped it, or PortAudio lost the device
            if not self._stopping:
                self._q.put(_GONE)

        try:
            self._stream = sd.InputStream(samplerate=self.sample_rate, device=self.device,
                                          channels=self.channels, dtype="float32", callback=callback,
                                          finished_callback=finished)
            self._stream.start()
        except Exception as e:  # sounddevice.PortAudioError, ValueError for a bad device
            raise SourceError(f"cannot open the microphone (device={self.device!r}, {self.sample_rate} Hz): {e}; "
                              "list devices with: python -m sounddevice") from None

    def _next_block(self):
        try:
            x = self._q.get(timeout=self.stall_s)
        except queue.Empty:
            raise SourceError(f"no audio from the microphone for {self.stall_s:g} s, after "
                              f"{self._heard / self.sample_rate:.1f} s of audio (device unplugged or stalled?)") from None
        if x is _GONE:
            raise SourceError(f"the microphone went away after {self._heard / self.sample_rate:.1f} s of audio "
                              "(device unplugged, or its sound server stopped?)")
        if x is not _END:
            self._heard += len(x)
        return x

    def stop(self) -> None:
        if self._stream is not None:
            self._stopping = True
            # abort, not stop: PortAudio's stop waits for its audio thread to notice, and that
            # thread waits for audio; from a stalled device none comes and stop never returns.
            # Recorded audio still in the buffers is not wanted either way.
            self._stream.abort()  # sounddevice ignores PortAudio's errors here (a device gone)
            self._stream.close()
            self._stream = None
            self._end()


class GeneratedSource(_QueueSource):
    """Given samples delivered like a microphone: a thread calls back with
    blocks of `block_sizes` (cycled; odd sizes welcome) at `speed` times real
    time (float("inf"): all at once). `consumer_delay_s` sleeps after each
    block handed out, simulating a recogniser that is too slow."""

    def __init__(self, samples, rate: int = 16000, block_sizes=(160, 333, 1, 1601, 800, 77),
                 speed: float = 1.0, consumer_delay_s: float = 0.0, block_ms: float = BLOCK_MS):
        super().__init__(rate, block_ms)
        self.samples = np.asarray(samples)
        self.block_sizes = [int(b) for b in block_sizes]
        if not self.block_sizes or min(self.block_sizes) < 0 or max(self.block_sizes) == 0:
            raise ValueError(f"block_sizes must be non-negative with one > 0, got {block_sizes}")
        self.speed = speed
        self.consumer_delay_s = consumer_delay_s
        self._thread = None
        self._stop = threading.Event()

    def _produce(self) -> None:
        t0, pos, k = time.perf_counter(), 0, 0
        while pos < len(self.samples) and not self._stop.is_set():
            n = self.block_sizes[k % len(self.block_sizes)]
            k += 1
            block = self.samples[pos: pos + n]
            pos += n
            if self.speed != float("inf"):
                due = t0 + pos / (self.sample_rate * self.speed)
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            self._push(block)
        self._end()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._produce, name="generated-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __iter__(self):
        for block in super().__iter__():
            yield block
            if self.consumer_delay_s:
                time.sleep(self.consumer_delay_s)


class WavSource(AudioSource):
    """A WAV file in ~100 ms blocks; `realtime=True` paces them like a
    microphone would (the backlog then is what arrived while we worked)."""

    def __init__(self, path: Path | str, realtime: bool = False, block_ms: float = BLOCK_MS):
        self.path = Path(path)
        self.samples, self.sample_rate = read_wav(self.path)  # WavError on a bad file
        if len(self.samples) == 0:
            from runtime_py.audio import WavError
            raise WavError(f"{self.path}: the file holds no audio samples")
        self.realtime = realtime
        self.live = realtime
        self.block_ms = block_ms
        self._t0 = None
        self._pos = 0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def backlog(self) -> int:
        if not self.realtime or self._t0 is None:
            return 0
        arrived = int((time.perf_counter() - self._t0) * self.sample_rate)
        return max(0, min(len(self.samples), arrived) - self._pos)

    def __iter__(self):
        self._t0, self._pos = time.perf_counter(), 0
        n = self.block_size
        while self._pos < len(self.samples):
            if self.realtime:
                due = self._t0 + (self._pos + n) / self.sample_rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            block = self.samples[self._pos: self._pos + n]
            self._pos += len(block)
            yield block
