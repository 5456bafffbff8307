"""Speech used for the golden files and the parity rollouts.

Parity is checked on real speech features, not random numbers: a trained
model's int8 errors only show on inputs like the ones it will see. The shipped
sample utterances (edge/checkpoints/samples/*.wav, from the synthetic corpus)
are the source; a long parity stream is made by concatenating them with
seeded gain changes and low noise until it covers the requested chunks. With
no samples present, a deterministic synthetic signal stands in.
"""

from __future__ import annotations

import numpy as np

from edge.assets import sample_wavs
from runtime_py.audio import read_wav
from runtime_py.frontend import compute_features
from runtime_py.manifest import GOLDEN
from runtime_py.signature import Signature
from runtime_py.stream import TAIL_PADDING_S, feature_chunks, signature_tail_padding



def sample_utterances(rate: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for p in sample_wavs():
        audio, sr = read_wav(p)
        if sr == rate:
            out.append((p.stem, audio))
    return out


def synthetic_signal(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Harmonic chirps in noise: speech-like spectra without a recording."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2
    return (0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def golden_audio(signature: Signature) -> tuple[str, np.ndarray]:
    rate = signature.frontend.sample_rate
    samples = sample_utterances(rate)
    if samples:
        return samples[0]
    return "synthetic", synthetic_signal(rate, 2.0, seed=0)


def with_tail(audio: np.ndarray, rate: int, signature: Signature | None = None) -> np.ndarray:
    """The audio and the client's tail padding (runtime_py.stream.tail_padding_samples:
    at least TAIL_PADDING_S, more when the last frames need it to fill a
    chunk). Without a signature, the minimum only (the old rule; equal to it
    on the shipped samples)."""
    if signature is not None:
        pad = signature_tail_padding(signature, len(audio))  # an audio-in graph: whole calls, its warmup
    else:
        pad = int(round(TAIL_PADDING_S * rate))
    return np.concatenate([audio, np.zeros(pad, np.float32)])



def cut_after_speech(audio: np.ndarray, rate: int) -> np.ndarray:
    """The audio up to the end of its last loud 10 ms frame (above the
    endpointer's speech threshold, runtime_py.vad): an utterance cut right
    after its last word, with no trailing silence. An app that forgets the
    tail padding loses that word on this clip (golden/cut.wav), where the
    silence at the end of golden/audio.wav would hide the mistake."""
    from runtime_py import vad

    frame = int(round(rate * vad.DEFAULT_FRAME_MS / 1000))
    n = len(audio) // frame
    if n == 0:
        return audio
    frames = audio[: n * frame].astype(np.float64).reshape(n, frame)
    db = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db > vad.DEFAULT_THRESHOLD_DB)
    return audio[: (loud[-1] + 1) * frame] if loud.size else audio


CUT_AUDIO, CUT_TRANSCRIPT = GOLDEN["cut"]["audio"], GOLDEN["cut"]["transcript"]


def write_cut(bw, audio: np.ndarray, signature: Signature, stream, tokens: list[str]) -> None:
    """golden/cut.wav (the golden audio cut after its last word, 16-bit like
    golden/audio.wav) and the reference's text of it with the client's tail
    padding (`stream`: a fresh reference stream), into the BundleWriter `bw`."""
    from runtime_py.audio import read_wav, write_wav
    from runtime_py.decoding import tokens_to_text

    rate = signature.frontend.sample_rate
    write_wav(bw.path(CUT_AUDIO), cut_after_speech(audio, rate), rate)
    bw.add_file(CUT_AUDIO)
    cut, _ = read_wav(bw.path(CUT_AUDIO))  # what the file holds
    for chunk in feature_chunks(compute_features(with_tail(cut, rate, signature), signature.frontend), signature):
        stream.step(chunk)
    bw.write_text(CUT_TRANSCRIPT, tokens_to_text(stream.tokens, tokens) + "\n")


def parity_stream(signature: Signature, n_chunks: int, seed: int = 0) -> list[np.ndarray]:
    """At least n_chunks encoder chunks of speech features."""
    feats = compute_features(parity_audio(signature, n_chunks, seed), signature.frontend)
    return feature_chunks(feats, signature)[:n_chunks]


def parity_audio(signature: Signature, n_chunks: int, seed: int = 0) -> np.ndarray:
    """The samples (in [-1, 1]) behind parity_stream: enough for n_chunks chunks."""
    rate = signature.frontend.sample_rate
    rng = np.random.default_rng(seed)
    utts = [a for _, a in sample_utterances(rate)] or [synthetic_signal(rate, 3.0, seed)]
    need_s = (n_chunks + 2) * signature.shift_frames * signature.frontend.frame_shift / rate
    pieces, total, i = [], 0.0, 0
    while total < need_s:
        a = utts[i % len(utts)] * np.float32(10 ** rng.uniform(-0.5, 0.2))
        a = a + np.float32(10 ** rng.uniform(-4, -2.5)) * rng.standard_normal(a.size).astype(np.float32)
        gap = np.zeros(int(rng.uniform(0.1, 0.5) * rate), np.float32)
        pieces += [a, gap]
        total += (a.size + gap.size) / rate
        i += 1
    return np.clip(np.concatenate(pieces), -1, 1)


__all__ = ["CUT_AUDIO", "CUT_TRANSCRIPT", "cut_after_speech", "write_cut",
           "sample_utterances", "synthetic_signal", "golden_audio", "with_tail", "feature_chunks",
           "parity_stream", "parity_audio"]
