"""Deterministic synthetic speech corpus made with espeak-ng.

Small streaming ASR models (CTC and Transducer, words as tokens) are trained on
it and must generalise to *unseen voices*.  A speaker is an espeak-ng English
accent combined with a voice variant ("en-us+m3").  The splits hold out whole
variants: every test speaker uses a variant (timbre) that never occurs in
train, spoken in accents that do occur in train.  Test and valid word
sequences never occur in train either.

Everything is a pure function of the seed: utterance i of a split draws all of
its randomness from (seed, split, i), so the same seed gives byte-identical
WAV files whatever the number of worker processes.

    python -m edge.data.corpus --out data/corpus --seed 0

Needs the espeak-ng and sox programs (apt-get install espeak-ng sox).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

SAMPLE_RATE = 16000
BLANK = "<blk>"
WORD_MARK = "\u2581"  # sentencepiece word-boundary mark: token joining gives spaces

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = (
    "oh", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "start", "next", "back", "open", "close", "play", "pause", "louder",
    "quieter", "forward", "cancel", "help", "home", "lights", "music", "volume",
    "call", "answer", "repeat", "select", "menu", "enter", "delete", "save", "wait",
)
# All 46 words have distinct espeak-ng phoneme strings (checked with `espeak-ng -x`).
VOCABULARY = DIGITS + COMMANDS

# The eSpeak-native English accents.  The mbrola ("mb/...") English voices are
# left out: they need the separate mbrola program and voice packages.
ACCENTS = (
    "en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-gb-x-rp", "en-029", "en-us-nyc",
)

# Voice variants (files under espeak-ng-data/voices/!v), grouped so the
# held-out variants of each split cover every kind of timbre.  Left out:
#   whisper, whisperf, caleb  - unvoiced (no pitch at all): a command recogniser
#                               is not asked to handle whispering, and one
#                               whisper speaker would dominate a small test set;
#                               caleb is also byte-identical to klatt.
#   klatt6                    - byte-identical to klatt (would leak across splits).
#   robosoft*, RicishayMax*, UniRobot, anikaRobot, Demonic
#                             - heavy echo/"robot" effects, barely intelligible.
#   kaukovalta, Tweaky, zac   - first/third formant or pitch pushed so far that
#                               vowels stop sounding like English vowels.
#   Storm                     - forces language en-us, overriding the accent.
#   fast                      - only a speed change; rate is randomised anyway.
#   "Mr serious"              - near-copy of john, and its name contains a space.
VARIANT_GROUPS = {
    "female": (
        "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika",
        "aunty", "belinda", "grandma", "linda", "steph", "steph2", "steph3",
    ),
    "klatt": (
        "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "adam", "announcer",
        "benjamin", "david", "edward", "edward2",
    ),
    "male": (
        "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "croak", "Alex", "Andy",
        "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo",
        "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "Nguyen", "antonio",
        "boris", "ed", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4",
        "john", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul",
        "pedro", "quincy", "rob", "robert", "sandro", "shelby", "travis", "victor",
    ),
}
HELDOUT_FRACTION = 0.1  # of each variant group, for valid and for test each
# The speaker split is fixed, independent of the corpus seed, so corpora made
# with different seeds (e.g. extra training data) never leak test voices.
SPEAKER_SPLIT_SEED = 20240601

SPLITS = ("train", "valid", "test")
SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}
DEFAULT_COUNTS = {"train": 15000, "valid": 500, "test": 500}  # ~2.5-4 min on 2 cores

MIN_WORDS, MAX_WORDS = 1, 6
RATE_WPM = (120, 220)
PITCH = (20, 80)
# espeak's default amplitude (100) already clips with a few variants; level
# variation comes from GAIN_DB after peak normalisation instead.
AMPLITUDE = 80
PEAK_NORM = 0.7            # ~ -3 dBFS before the random gain
GAIN_DB = (-12.0, 3.0)     # +3 dB on a 0.7 peak reaches full scale and may clip
SILENCE_S = (0.1, 0.6)     # leading and trailing, drawn independently
CLEAN_PROB = 0.2           # fraction of utterances with no added noise
NOISE_KINDS = ("white", "pink", "brown")
SNR_DB = (10.0, 40.0)
MAX_RESAMPLE_TRIES = 10000  # for held-out word sequences that occur in train

PROGRESS_EVERY = 500
WORKERS = 2


# --------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------

def tokens() -> list[str]:
    """Token list: 0 is the blank, then one "▁word" per VOCABULARY word."""
    return [BLANK] + [WORD_MARK + w for w in VOCABULARY]


def write_tokens(path) -> Path:
    """Write sherpa-onnx style tokens.txt ("symbol id" per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens())), encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------

def all_variants() -> tuple[str, ...]:
    return tuple(v for group in VARIANT_GROUPS.values() for v in group)


def speaker_split() -> dict[str, list[str]]:
    """Disjoint speakers per split, holding out whole variants.

    From each variant group a seeded shuffle picks ~10% of the variants for
    valid and ~10% for test (at least one each).  A split's speakers are its
    variants crossed with every accent; train also gets the plain accents.
    """
    rng = np.random.default_rng(SPEAKER_SPLIT_SEED)
    variants = {s: [] for s in SPLITS}
    for name in sorted(VARIANT_GROUPS):
        group = list(VARIANT_GROUPS[name])
        order = rng.permutation(len(group))
        n_held = max(1, round(HELDOUT_FRACTION * len(group)))
        variants["test"] += [group[i] for i in order[:n_held]]
        variants["valid"] += [group[i] for i in order[n_held:2 * n_held]]
        variants["train"] += [group[i] for i in order[2 * n_held:]]
    out = {s: [f"{a}+{v}" for v in sorted(variants[s]) for a in ACCENTS] for s in SPLITS}
    out["train"] = list(ACCENTS) + out["train"]  # the unmodified voices
    return out


# --------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# WAV I/O
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Corpus plan and generation
# --------------------------------------------------------------------------

def _utterance_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def _draw_words(rng: np.random.Generator) -> str:
    n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
    return " ".join(VOCABULARY[i] for i in rng.integers(len(VOCABULARY), size=n))


def plan_utterance(seed: int, split: str, index: int, speakers: list[str],
                   forbidden: set[str] | frozenset = frozenset()) -> dict:
    """All random choices of one utterance, from (seed, split, index) only."""
    rng = _utterance_rng(seed, split, index)
    text = _draw_words(rng)
    tries = 0
    while text in forbidden:  # held-out sequences must be new to train
        tries += 1
        if tries > MAX_RESAMPLE_TRIES:
            raise RuntimeError(f"could not find a {split} word sequence absent from train")
        text = _draw_words(rng)
    return {
        "path": f"{split}/{index:06d}.wav",
        "text": text,
        "speaker": speakers[int(rng.integers(len(speakers)))],
        "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "aug_seed": int(rng.integers(2 ** 63 - 1)),
    }


def worker_pool(workers: int):
    """A process pool for CPU-bound preprocessing.

    Workers are spawned, never forked: a fork copies a parent that may be running
    threads (torch, ONNX Runtime and TensorFlow pools in a test run or a notebook)
    with their locks held, and such a child can block forever; it also inherits
    the parent's signal handlers, so Pool.terminate()'s SIGTERM may not stop it.
    Either way the pool hangs. A spawned worker starts a clean interpreter.
    """
    return multiprocessing.get_context("spawn").Pool(workers)


def _render(job: tuple[str, dict]) -> float:
    """Worker: synthesise one planned utterance, write it, return its seconds."""
    out_dir, plan = job
    audio = synthesize(plan["text"], plan["speaker"], plan["rate"], plan["pitch"],
                       seed=plan["aug_seed"])
    write_wav16(Path(out_dir) / plan["path"], audio)
    return round(len(audio) / SAMPLE_RATE, 4)


def _prepare_out_dir(out: Path) -> None:
    """Clear a previous corpus (so no stale WAVs survive) but never foreign files."""
    if out.exists() and any(out.iterdir()):
        if not (out / "corpus.json").exists():
            raise FileExistsError(f"{out} is not empty and holds no corpus.json; "
                                  "refusing to write a corpus into it")
        for s in SPLITS:
            shutil.rmtree(out / s, ignore_errors=True)
            (out / f"{s}.jsonl").unlink(missing_ok=True)
        (out / "tokens.txt").unlink(missing_ok=True)
        (out / "corpus.json").unlink()
    for s in SPLITS:
        (out / s).mkdir(parents=True, exist_ok=True)


def _fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def generate(out_dir, seed: int = 0, n_train: int = DEFAULT_COUNTS["train"],
             n_valid: int = DEFAULT_COUNTS["valid"], n_test: int = DEFAULT_COUNTS["test"],
             progress: bool = True, workers: int = WORKERS) -> dict:
    """Generate the corpus under out_dir; returns the corpus.json dict."""
    check_tools()
    check_voices()
    out = Path(out_dir)
    _prepare_out_dir(out)
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    speakers = speaker_split()

    # Plan everything first (cheap, single process) so held-out texts can be
    # checked against the complete train set.
    plans = {"train": [plan_utterance(seed, "train", i, speakers["train"])
                       for i in range(n_train)]}
    train_texts = frozenset(p["text"] for p in plans["train"])
    for s in ("valid", "test"):
        plans[s] = [plan_utterance(seed, s, i, speakers[s], train_texts) for i in range(counts[s])]

    total, done, t0 = sum(counts.values()), 0, time.monotonic()
    stats = {}
    with worker_pool(workers) as pool:
        for s in SPLITS:
            jobs = [(str(out), p) for p in plans[s]]
            rows = []
            for p, seconds in zip(plans[s], pool.imap(_render, jobs, chunksize=8)):
                rows.append({"path": p["path"], "text": p["text"],
                             "speaker": p["speaker"], "seconds": seconds})
                done += 1
                if progress and (done % PROGRESS_EVERY == 0 or done == total):
                    dt = time.monotonic() - t0
                    rate = done / max(dt, 1e-9)
                    print(f"[corpus] {done}/{total} utterances ({s})  {rate:.1f} utt/s  "
                          f"elapsed {_fmt_s(dt)}  ETA {_fmt_s((total - done) / rate)}",
                          file=sys.stderr, flush=True)
            with open(out / f"{s}.jsonl", "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            stats[s] = {
                "utterances": len(rows),
                "hours": round(sum(r["seconds"] for r in rows) / 3600.0, 4),
                "speakers_in_split": len(speakers[s]),
                "speakers_used": len({r["speaker"] for r in rows}),
            }

    write_tokens(out / "tokens.txt")
    meta = {
        "seed": seed,
        "counts": counts,
        "sample_rate": SAMPLE_RATE,
        "vocabulary": list(VOCABULARY),
        "tokens": "tokens.txt",
        "speaker_split_seed": SPEAKER_SPLIT_SEED,
        "heldout": "valid/test speakers use espeak-ng variants absent from train; "
                   "valid/test word sequences are absent from train",
        "synthesis": {
            "words": [MIN_WORDS, MAX_WORDS], "rate_wpm": list(RATE_WPM), "pitch": list(PITCH),
            "amplitude": AMPLITUDE, "peak_norm": PEAK_NORM, "gain_db": list(GAIN_DB),
            "silence_s": list(SILENCE_S), "clean_prob": CLEAN_PROB,
            "noise_kinds": list(NOISE_KINDS), "snr_db": list(SNR_DB),
        },
        "stats": stats,
        "speakers": speakers,
    }
    (out / "corpus.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if progress:
        print(f"[corpus] done in {_fmt_s(time.monotonic() - t0)}: "
              + ", ".join(f"{s} {v['utterances']} utts / {v['hours']:.2f} h / "
                          f"{v['speakers_used']} speakers" for s, v in stats.items()),
              file=sys.stderr, flush=True)
    return meta


def load_split(out_dir, split: str) -> list[dict]:
    """Rows of OUT/{split}.jsonl: path (relative to out_dir), text, speaker, seconds."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(out_dir) / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; generate it with "
                                f"python -m edge.data.corpus --out {out_dir}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Generate the synthetic espeak-ng command corpus.")
    ap.add_argument("--out", default="data/corpus", help="output directory")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=DEFAULT_COUNTS["train"])
    ap.add_argument("--valid", type=int, default=DEFAULT_COUNTS["valid"])
    ap.add_argument("--test", type=int, default=DEFAULT_COUNTS["test"])
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    generate(args.out, seed=args.seed, n_train=args.train, n_valid=args.valid,
             n_test=args.test, progress=not args.quiet, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
