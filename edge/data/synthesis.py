"""One utterance's audio: espeak-ng speaks the text, sox resamples it to
16 kHz, and a seeded augmentation adds silence, gain and noise."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from .speakers import ACCENTS, all_variants
from .vocabulary import SAMPLE_RATE

# espeak's default amplitude (100) already clips with a few variants; level
# variation comes from GAIN_DB after peak normalisation instead.
AMPLITUDE = 80
PEAK_NORM = 0.7            # ~ -3 dBFS before the random gain
GAIN_DB = (-12.0, 3.0)     # +3 dB on a 0.7 peak reaches full scale and may clip
SILENCE_S = (0.1, 0.6)     # leading and trailing, drawn independently
CLEAN_PROB = 0.2           # fraction of utterances with no added noise
NOISE_KINDS = ("white", "pink", "brown")
SNR_DB = (10.0, 40.0)


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(
            f"{program} is not installed (not found on PATH); the synthetic corpus needs it: "
            f"apt-get install {package}"
        )
    return path


def check_tools() -> None:
    """Raise RuntimeError naming the apt package if espeak-ng or sox is missing."""
    _require("espeak-ng", "espeak-ng")
    _require("sox", "sox")


def check_voices() -> None:
    """Fail loudly if this espeak-ng lacks an accent or variant we use.

    espeak-ng silently falls back to the default for an unknown variant, which
    would quietly change the corpus instead of failing.
    """
    espeak = _require("espeak-ng", "espeak-ng")
    listing = subprocess.run([espeak, "--voices"], capture_output=True, text=True).stdout
    listing += subprocess.run([espeak, "--voices=variant"], capture_output=True, text=True).stdout
    files = {line.split()[4] for line in listing.splitlines()[1:] if len(line.split()) > 4}
    have_accents = {line.split()[1] for line in listing.splitlines() if len(line.split()) > 4}
    missing = [a for a in ACCENTS if a not in have_accents]
    missing += [v for v in all_variants() if f"!v/{v}" not in files]
    if missing:
        raise RuntimeError(f"espeak-ng lacks voices/variants needed by the corpus: {missing}")


def _espeak_wav(text: str, speaker: str, rate: int, pitch: int, amplitude: int) -> bytes:
    espeak = _require("espeak-ng", "espeak-ng")
    cmd = [espeak, "-v", speaker, "-s", str(rate), "-p", str(pitch), "-a", str(amplitude),
           "--stdout", text]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0 or len(res.stdout) <= 44:
        raise RuntimeError(
            f"espeak-ng failed for voice {speaker!r} and text {text!r}: "
            f"{res.stderr.decode(errors='replace').strip() or 'no audio produced'}"
        )
    return res.stdout


def _to_16k_float(wav_bytes: bytes) -> np.ndarray:
    """espeak's 22050 Hz WAV -> 16 kHz mono float32 through sox.

    Raw float output and -D (no dither) keep the result exactly repeatable;
    our own quantisation to 16 bits happens later.
    """
    sox = _require("sox", "sox")
    cmd = [sox, "-D", "-V1", "-t", "wav", "-",
           "-t", "raw", "-e", "floating-point", "-b", "32", "-L",
           "-r", str(SAMPLE_RATE), "-c", "1", "-"]
    res = subprocess.run(cmd, input=wav_bytes, capture_output=True)
    if res.returncode != 0:
        raise RuntimeError(f"sox resampling failed: {res.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(res.stdout, dtype="<f4").astype(np.float32)


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise; pink (1/f power) and brown (1/f^2) by spectral shaping."""
    white = rng.standard_normal(n)
    if kind == "white":
        x = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        f[0] = f[1] if n > 1 else 1.0  # no DC blow-up
        spec /= np.sqrt(f) if kind == "pink" else f
        x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def augment(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Silence padding, random gain and additive noise, all drawn from rng."""
    speech = speech * (PEAK_NORM / (np.max(np.abs(speech)) + 1e-9))
    speech *= 10.0 ** (rng.uniform(*GAIN_DB) / 20.0)
    lead, trail = (int(rng.uniform(*SILENCE_S) * SAMPLE_RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    # Draw the noise choice even for clean utterances so the stream stays aligned.
    clean = rng.random() < CLEAN_PROB
    kind = NOISE_KINDS[rng.integers(len(NOISE_KINDS))]
    snr_db = rng.uniform(*SNR_DB)
    if not clean:
        # SNR against the speech power where speech is actually active.
        frames = np.abs(speech) > 0.01 * np.max(np.abs(speech))
        p_speech = np.mean(speech[frames] ** 2) if frames.any() else np.mean(speech ** 2)
        x = x + _noise(kind, len(x), rng) * np.sqrt(p_speech / 10.0 ** (snr_db / 10.0))
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def synthesize(text: str, speaker: str = "en-us", rate: int = 160, pitch: int = 50,
               seed: int | None = None, amplitude: int = AMPLITUDE) -> np.ndarray:
    """Speak text with an espeak-ng speaker ("en-us", "en-gb+f3"); 16 kHz mono float32.

    seed=None returns the clean voice; an integer seed also applies the
    corpus augmentation (silence, gain, noise) drawn from that seed.
    """
    check_tools()
    audio = _to_16k_float(_espeak_wav(text, speaker, int(rate), int(pitch), int(amplitude)))
    if seed is not None:
        audio = augment(audio, np.random.default_rng(seed))
    return audio
