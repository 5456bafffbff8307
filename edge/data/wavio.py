"""16-bit PCM mono WAV files, read and written with the standard library."""

from __future__ import annotations

import wave

import numpy as np

from .vocabulary import SAMPLE_RATE


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav16(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(to_pcm16(audio).tobytes())


def read_wav16(path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM mono WAV -> (float32 samples in [-1, 1), sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono PCM, got "
                             f"{8 * w.getsampwidth()}-bit, {w.getnchannels()} channels")
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0, rate
