"""Issue 8, the client side: WAV formats, rates, NaN/Inf, silence and API
misuse give the clean text or one clear error; the recogniser's chunking
does not depend on how the audio is cut."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from runtime_py.audio import parse_wav, resample
from runtime_py.recognizer import Final, StreamingRecognizer, tail_padding_samples, transcribe_file
from runtime_py.session import ModelSession
from runtime_py.frontend import compute_features
from tests.bundle_fixtures import cached_bundle, silence, speechlike

RATE = 16000
ORT = [("ort", "fp32")]

from tests.reliability_common import RATE, demo_main, one_error_line


def wav_bytes(x: np.ndarray, rate: int, code: int = 1, width: int = 2) -> bytes:
    """[frames] or [frames, channels] float -> WAV bytes (PCM 8/16/24/32 or float 32)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    frames, channels = x.shape
    if code == 3:
        data = x.astype("<f4").tobytes()
    elif width == 1:
        data = np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        full = 2 ** (8 * width - 1)
        v = np.clip(np.round(x * full), -full, full - 1).astype(np.int64).ravel()
        data = b"".join(int(s).to_bytes(width, "little", signed=True) for s in v) if width == 3 else \
            v.astype("<i2" if width == 2 else "<i4").tobytes()
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * channels * width, channels * width, 8 * width)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def lowpass(x: np.ndarray, hz: float, rate: int = RATE) -> np.ndarray:
    spec = np.fft.rfft(x.astype(np.float64))
    spec[np.fft.rfftfreq(len(x), 1 / rate) > hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def clean_audio() -> np.ndarray:
    return np.concatenate([silence(0.3), speechlike(1.4, seed=3), silence(1.0), speechlike(0.9, seed=5),
                           silence(0.8)])


@pytest.fixture(scope="module")
def lstm_bundle():
    return cached_bundle("lstm")[0]


def texts(bundle, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transcribe_file(bundle, path, **kw)


@pytest.fixture(scope="module")
def clean_text(lstm_bundle, tmp_path_factory):
    p = tmp_path_factory.mktemp("wav") / "clean.wav"
    p.write_bytes(wav_bytes(clean_audio(), RATE, code=3, width=4))
    got = texts(lstm_bundle, p)
    assert len(got) >= 2 and all(got)  # two utterances (+ the untrained model's text on the final silence)
    return got


@pytest.mark.parametrize("case", ["pcm16", "pcm24", "pcm32", "float32", "stereo16", "stereo-float"])
def test_wav_formats_give_the_clean_text(case, lstm_bundle, clean_text, tmp_path):
    x = clean_audio()
    code, width = {"pcm16": (1, 2), "pcm24": (1, 3), "pcm32": (1, 4), "float32": (3, 4), "stereo16": (1, 2),
                   "stereo-float": (3, 4)}[case]
    if case.startswith("stereo"):
        x = np.stack([x, x], axis=1)
    p = tmp_path / f"{case}.wav"
    p.write_bytes(wav_bytes(x, RATE, code, width))
    assert texts(lstm_bundle, p) == clean_text
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out and "Traceback" not in err, err


def test_8_bit_wav_is_handled(lstm_bundle, tmp_path):
    """8-bit has 48 dB of SNR: it runs to the end and finds both utterances;
    the (untrained) model's text may differ from the clean one."""
    p = tmp_path / "u8.wav"
    p.write_bytes(wav_bytes(clean_audio(), RATE, 1, 1))
    got = texts(lstm_bundle, p)
    assert len(got) >= 2
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out, err


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled_in_the_stream(rate, lstm_bundle, tmp_path):
    """Audio recorded at `rate`: streaming it (resampled on the fly) gives
    exactly the text of the same recording resampled offline to 16 kHz, and
    above 16 kHz the text of the 16 kHz original. (The original is band-limited
    to 7 kHz: the resampler's anti-alias filter passes 0-7.36 kHz, so content
    above that, which the 16 kHz original has and the round trip removes,
    could legitimately change an untrained model's argmax.)"""
    x16 = lowpass(clean_audio(), 7000.0)
    xr = resample(x16, RATE, rate)
    src = tmp_path / f"{rate}.wav"
    src.write_bytes(wav_bytes(xr, rate, 3, 4))
    offline = tmp_path / f"{rate}-to-16k.wav"
    offline.write_bytes(wav_bytes(resample(parse_wav(src.read_bytes())[0], rate, RATE), RATE, 3, 4))
    got = texts(lstm_bundle, src)
    assert len(got) >= 2
    assert got == texts(lstm_bundle, offline)
    if rate > RATE:
        orig = tmp_path / "orig.wav"
        orig.write_bytes(wav_bytes(x16, RATE, 3, 4))
        assert got == texts(lstm_bundle, orig)
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(src)])
    assert rc == 0 and f"resampled from {rate} to {RATE} Hz" in err and "--- summary ---" in out, err
    assert ("narrowband" in err) == (rate == 8000), err


@pytest.mark.parametrize("case, phrase", [
    ("empty", "the file is empty"),
    ("header-only", "no data chunk"),
    ("truncated-header", "fmt chunk is truncated"),
    ("no-frames", "holds no audio samples"),
    ("alaw", "unsupported format code 0x0006"),
    ("float16", "16-bit float is not supported"),
    ("zero-rate", "sample rate of 0"),
    ("text-file", "not a RIFF/WAVE file"),
])
def test_bad_wavs_are_one_error_line(case, phrase, lstm_bundle, tmp_path):
    good = wav_bytes(speechlike(0.5), RATE)
    data = {
        "empty": b"",
        "header-only": good[:36],
        "truncated-header": good[:30],
        "no-frames": wav_bytes(np.zeros(0), RATE),
        "alaw": good[:20] + struct.pack("<H", 6) + good[22:],
        "float16": wav_bytes(speechlike(0.5), RATE, 3, 4)[:32] + struct.pack("<HH", 2, 16) + good[36:],
        "zero-rate": good[:24] + struct.pack("<I", 0) + good[28:],
        "text-file": b"hello, this is not audio\n" * 3,
    }[case]
    p = tmp_path / f"{case}.wav"
    p.write_bytes(data)
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 2 and out == ""
    msg = one_error_line(err)
    assert phrase in msg and p.name in msg and len(err.strip().splitlines()) == 1


def test_truncated_wav_keeps_the_frames_present(lstm_bundle, tmp_path):
    data = wav_bytes(clean_audio(), RATE)
    p = tmp_path / "cut.wav"
    p.write_bytes(data[: len(data) * 2 // 3 + 1])  # data chunk declared larger than the file, odd byte
    with pytest.warns(UserWarning, match="truncated"):
        x, _ = parse_wav(p.read_bytes())
    assert len(x) == (len(data) * 2 // 3 + 1 - 44) // 2
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and "--- summary ---" in out and "Traceback" not in err
    assert "warning: " in err and "data chunk is truncated" in err and "UserWarning" not in err, err


def test_nan_inf_samples_in_a_float_wav(lstm_bundle, clean_text, tmp_path):
    x = clean_audio()
    bad = x.copy()
    silent_idx = np.arange(100, 4000, 37)  # in the leading silence: replacing them by 0 changes ~nothing
    bad[silent_idx[::2]] = np.nan
    bad[silent_idx[1::2]] = np.inf
    bad[silent_idx[:5]] = -np.inf
    p = tmp_path / "nan.wav"
    p.write_bytes(wav_bytes(bad, RATE, 3, 4))
    rec = StreamingRecognizer(ModelSession(lstm_bundle), trace=True)
    y, _ = parse_wav(p.read_bytes())
    for i in range(0, len(y), 1600):
        rec.accept_audio(y[i: i + 1600], RATE)
    rec.finish()
    assert rec.nan_count == len(silent_idx)
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)
    assert [f.text for f in rec.finals if f.text] == clean_text
    rc, out, err = demo_main([str(lstm_bundle), "--wav", str(p)])
    assert rc == 0 and f"NaN/Inf samples replaced {len(silent_idx)}" in out


def test_an_all_nan_stream_does_not_crash(lstm_bundle):
    rec = StreamingRecognizer(ModelSession(lstm_bundle), vad=False, trace=True)
    rec.accept_audio(np.full(RATE, np.nan, np.float32), RATE)
    rec.accept_audio(np.full((RATE, 2), np.inf, np.float32), RATE)
    rec.finish()
    assert rec.nan_count == 2 * RATE and all(np.isfinite(o).all() for _, _, o in rec.trace)


def test_minutes_of_silence_and_blocks_of_exact_zeros(lstm_bundle):
    """3 minutes of near-silence, then 20 s of exact zeros (log(0) in the
    frontend), then speech: no utterance from the silence (only idle resets,
    which finalise whatever the untrained model emitted, so nothing is lost),
    states reset during the silence, finite outputs, bounded buffers, and the
    speech afterwards decodes as if alone."""
    session = ModelSession(lstm_bundle)
    rec = StreamingRecognizer(session, trace=True)
    quiet = silence(180.0)
    idle_resets = 0
    for i in range(0, len(quiet), 16000):
        events = rec.accept_audio(quiet[i: i + 16000], RATE)
        assert all(e.reason == "idle" for e in events if isinstance(e, Final))
        idle_resets += sum(isinstance(e, Final) for e in events)
    assert rec.endpointer.max_idle_s == 10.0 and rec.utterances == idle_resets <= 18
    for _ in range(20):
        rec.accept_audio(np.zeros(RATE, np.float32), RATE)
        rec.accept_audio(np.zeros(0, np.float32), RATE)  # and empty blocks
    assert rec.stream.buffered_frames < 2 * session.chunk_frames and rec.ring.available < rec.hop
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)
    rec.trace.clear()
    # speech after the silence is found and ended by the VAD (nothing lost)
    speech = np.concatenate([speechlike(1.2, seed=9), silence(1.0)])
    events = []
    for i in range(0, len(speech), 1600):
        events += rec.accept_audio(speech[i: i + 1600], RATE)
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1 and finals[0].reason == "silence"
    assert finals[0].start_s == pytest.approx(200.0, abs=0.05)
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)


def test_client_api_misuse_is_a_clear_value_error(lstm_bundle):
    rec = StreamingRecognizer(ModelSession(lstm_bundle))
    with pytest.raises(ValueError, match="block must be 1-D or 2-D"):
        rec.accept_audio(np.zeros((2, 2, 2)), RATE)
    with pytest.raises(ValueError, match="unsupported sample dtype"):
        rec.accept_audio(np.array(["a"]), RATE)
    with pytest.raises(ValueError, match="positive integer"):
        rec.accept_audio(np.zeros(10, np.float32), 0)
    rec.accept_audio(np.zeros(100, np.float32), 48000)
    with pytest.raises(ValueError, match="sample rate changed"):
        rec.accept_audio(np.zeros(100, np.float32), 44100)
    rec.finish()  # the stream is still usable after the refusals
    assert rec.accept_audio(speechlike(0.2), RATE) is not None


# -- property: the recogniser's chunking does not depend on how the audio is cut ----------

@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(0, 6000), min_size=0, max_size=12), seconds=st.floats(0.05, 1.5))
def test_chunking_is_independent_of_block_sizes(cuts, seconds):
    """Any block split gives exactly the encoder chunks of compute_features on
    the utterance plus its tail padding (the offline reference)."""
    path, _ = cached_bundle("conformer")
    session = ModelSession(path)
    x = speechlike(seconds, seed=len(cuts))
    rec = StreamingRecognizer(session, vad=False, trace=True)
    bounds = sorted(set(min(c, len(x)) for c in cuts)) + [len(x)]
    prev = 0
    for b in bounds:
        rec.accept_audio(x[prev:b], RATE)
        prev = b
    rec.finish()
    sig = session.signature
    pad = tail_padding_samples(len(x), sig.frontend, sig.chunk_frames, sig.shift_frames)
    feats = compute_features(np.concatenate([x, np.zeros(pad, np.float32)]), sig.frontend)
    n = (len(feats) - sig.chunk_frames) // sig.shift_frames + 1 if len(feats) >= sig.chunk_frames else 0
    assert len(rec.trace) == n
    for i, (_, chunk, _) in enumerate(rec.trace):
        np.testing.assert_array_equal(chunk, feats[i * sig.shift_frames: i * sig.shift_frames + sig.chunk_frames])


# == long streams ============================================================================
