"""StreamingRecognizer: endpoints, resets, input formats, overruns."""

from __future__ import annotations

import time

import numpy as np
import pytest

from demo.sources import GeneratedSource
from runtime_py.audio import resample, write_wav
from runtime_py.recognizer import Final, Partial, StreamingRecognizer, transcribe_file
from runtime_py.session import ModelSession
from runtime_py.stateloop import initial_states
from runtime_py.stream import Model
from tests.bundle_fixtures import cached_bundle, silence, speechlike

RATE = 16000


def two_utterances():
    return np.concatenate([silence(0.3), speechlike(1.2, seed=1), silence(1.0),
                           speechlike(0.9, seed=2), silence(0.9)])


def _run(rec, audio, block=1000, rate=RATE):
    events = []
    for i in range(0, len(audio), block):
        events += rec.accept_audio(audio[i: i + block], rate)
    return events


@pytest.mark.parametrize("family", ["conformer", "lstm"])
def test_endpoint_resets_utterance_states_and_emits_finals(family):
    path, _ = cached_bundle(family)
    session = ModelSession(path)
    rec = StreamingRecognizer(session, endpoint_silence_ms=600)
    enc = session.signature.graph("encoder")
    init = initial_states(enc)
    audio = two_utterances()
    finals, changed_before = [], False
    for i in range(0, len(audio), 1000):  # < one hop: no chunk runs after a flush in the same call
        events = rec.accept_audio(audio[i: i + 1000], RATE)
        new = [e for e in events if isinstance(e, Final)]
        if not new:
            changed_before |= any(not np.array_equal(session.states()[k], v) for k, v in init.items())
            continue
        finals += new
        for s in enc.states:  # reset right at the endpoint
            if s.reset == "utterance":
                np.testing.assert_array_equal(session.states()[s.name], init[s.name], err_msg=s.name)
        assert rec.text() == "" and session.decoder.tokens == []
        assert rec.frontend.num_samples_received < 1000
    assert changed_before, "the states never moved: the reset check would prove nothing"
    rec.finish()
    assert [f.reason for f in finals] == ["silence", "silence"]
    assert all(f.text for f in finals)
    # speech at 0.3-1.5 s and 2.5-3.4 s; the VAD is frame-exact up to its debounce
    assert finals[0].start_s == pytest.approx(0.3, abs=0.05) and finals[0].end_s == pytest.approx(1.5, abs=0.1)
    assert finals[1].start_s == pytest.approx(2.5, abs=0.05) and finals[1].end_s == pytest.approx(3.4, abs=0.1)
    s = rec.summary()
    assert s["utterances"] >= 2 and s["nan_count"] == 0 and s["dropped_samples"] == 0
    assert s["latency_ms"]["p50"] > 0 and 0 < s["rtf"] < 1


def test_second_utterance_is_decoded_as_if_alone():
    """After the endpoint reset, the next utterance gives exactly what a fresh
    recogniser gives on the same audio: nothing leaks across the reset."""
    path, _ = cached_bundle("lstm")
    session = ModelSession(path)
    audio = np.concatenate([speechlike(1.0, seed=7), silence(1.0), speechlike(1.0, seed=8), silence(0.8)])
    rec = StreamingRecognizer(session, trace=True)
    cut = None
    for i in range(0, len(audio), 1000):
        events = rec.accept_audio(audio[i: i + 1000], RATE)
        if cut is None and any(isinstance(e, Final) for e in events):
            fed = min(i + 1000, len(audio))
            cut = fed - rec.ring.available - rec.frontend.num_samples_received  # first sample of utterance 2
    rec.finish()
    assert cut is not None and len(rec.finals) >= 2
    second = [o for u, _, o in rec.trace if u == 1]
    fresh = StreamingRecognizer(session, trace=True)
    _run(fresh, audio[cut:])
    fresh.finish()
    alone = [o for u, _, o in fresh.trace if u == 0]
    assert len(second) == len(alone) > 0
    for x, y in zip(second, alone):
        np.testing.assert_array_equal(x, y)
    assert rec.finals[1].text == fresh.finals[0].text != ""


def test_partials_grow_and_end_in_the_final():
    path, _ = cached_bundle("conformer")
    rec = StreamingRecognizer(ModelSession(path))
    events = _run(rec, np.concatenate([speechlike(1.5), silence(0.8)]))
    first = next(i for i, e in enumerate(events) if isinstance(e, Final))
    partials = [e.text for e in events[:first] if isinstance(e, Partial)]
    assert len(partials) >= 2, "the text should grow chunk by chunk"
    assert all(a != b for a, b in zip(partials, partials[1:])), "a partial is sent only when the text changes"
    assert events[first].text == partials[-1]


def test_input_formats_give_the_same_text():
    """int16, stereo [n, 2], float, any block size, 48 kHz (resampled)."""
    path, _ = cached_bundle("lstm")
    session = ModelSession(path)
    audio = speechlike(1.3, seed=4)
    pcm = np.clip(np.round(audio * 32768), -32768, 32767).astype(np.int16)

    def text(blocks, rate=RATE, **kw):
        rec = StreamingRecognizer(session, vad=False, **kw)
        for b in blocks:
            rec.accept_audio(b, rate)
        rec.finish()
        return rec.finals[0].text

    ref = text([pcm.astype(np.float32) / 32768])
    assert ref
    assert text([pcm[i: i + 333] for i in range(0, len(pcm), 333)]) == ref
    stereo = np.stack([pcm, pcm], axis=1)
    assert text([stereo[i: i + 1601] for i in range(0, len(stereo), 1601)]) == ref
    assert text([pcm[:1], pcm[1:1], pcm[1:]]) == ref  # 1 and 0 samples
    hi = resample(audio, RATE, 48000)
    got = text([hi[i: i + 4801] for i in range(0, len(hi), 4801)], rate=48000)
    assert got  # resampled audio is not bit-identical; it must still run
    with pytest.raises(ValueError, match="resampling is disabled"):
        text([hi], rate=48000, resample=False)


def test_nan_and_inf_are_replaced_and_counted():
    path, _ = cached_bundle("lstm")
    rec = StreamingRecognizer(ModelSession(path), vad=False, trace=True)
    audio = speechlike(1.0)
    audio[100:110] = np.nan
    audio[5000] = np.inf
    rec.accept_audio(audio, RATE)
    rec.finish()
    assert rec.summary()["nan_count"] == 11
    assert all(np.isfinite(o).all() for _, _, o in rec.trace)


def test_max_utterance_length_cuts_without_vad():
    path, _ = cached_bundle("lstm")
    rec = StreamingRecognizer(ModelSession(path), vad=False, max_utterance_s=0.5)
    events = _run(rec, speechlike(1.8)) + rec.finish()
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.reason for f in finals[:3]] == ["max_length"] * 3
    assert finals[0].end_s == pytest.approx(0.5, abs=0.1)


def slow_model(path, delay):
    """The bundle's Model with an encoder that takes `delay` seconds per chunk."""
    model = Model.from_bundle(path)
    run = model.runs["encoder"]

    def slow(feeds):
        time.sleep(delay)
        return run(feeds)
    model.runs["encoder"] = slow
    return model


def test_overrun_guard_warns_then_drops():
    path, _ = cached_bundle("lstm")
    slow = slow_model(path, delay=0.03)  # 30 ms per 80 ms chunk ...
    rec = StreamingRecognizer(slow, max_backlog_s=0.6, warn_backlog_s=0.2)
    audio = np.concatenate([speechlike(2.5), silence(0.7)])
    # ... while the "microphone" delivers 10x real time: 3.2 s of audio in 0.32 s
    with GeneratedSource(audio, RATE, block_sizes=(161, 1023, 7, 480), speed=10.0) as src:
        for block in src:
            rec.accept_audio(block, src.sample_rate, backlog=src.backlog())
    rec.finish()
    s = rec.summary()
    assert s["overrun_warnings"] >= 1 and s["overrun_drops"] >= 1
    assert s["dropped_samples"] > 0 and s["dropped_s"] > 0.3
    assert rec.guard.dropped_samples == s["dropped_samples"]
    # what was not dropped was processed
    assert s["audio_s"] + s["dropped_s"] == pytest.approx(len(audio) / RATE, abs=0.01)


def test_no_overrun_in_file_mode():
    path, _ = cached_bundle("lstm")
    rec = StreamingRecognizer(slow_model(path, delay=0.002))
    _run(rec, speechlike(1.0), block=RATE * 2)  # a block larger than the ring buffer
    rec.finish()
    s = rec.summary()
    assert s["overrun_warnings"] == 0 and s["dropped_samples"] == 0
    assert s["audio_s"] == pytest.approx(1.0, abs=1e-6)


def test_transcribe_file(tmp_path):
    path, _ = cached_bundle("conformer")
    wav = tmp_path / "two.wav"
    write_wav(wav, two_utterances(), RATE)
    texts = transcribe_file(path, wav)
    assert len(texts) >= 2 and all(texts)


def test_long_silence_resets_states_even_without_speech():
    """No utterance ever opens, yet the model states return to their initial
    values every max_idle_s (10 s): a stream nobody speaks into cannot drift."""
    path, _ = cached_bundle("lstm")
    session = ModelSession(path)
    rec = StreamingRecognizer(session)
    enc = session.signature.graph("encoder")
    init = initial_states(enc)
    resets = []
    original = session.reset

    def spy(scope="utterance"):
        original(scope)
        resets.append({k: v.copy() for k, v in session.states().items()})
    session.reset = spy
    quiet = silence(25.0)
    for i in range(0, len(quiet), 1600):
        rec.accept_audio(quiet[i: i + 1600], RATE)
    assert len(resets) == 2  # at 10 s and 20 s
    for states in resets:
        for s in enc.states:
            np.testing.assert_array_equal(states[s.name], init[s.name])


def test_finals_history_is_bounded_but_every_final_is_an_event():
    """A service running for days must not keep every Final: `finals` holds
    the last `keep_finals`; the events still carry each one exactly once."""
    path, _ = cached_bundle("lstm")
    rec = StreamingRecognizer(ModelSession(path), keep_finals=2)
    audio = np.concatenate([np.concatenate([speechlike(0.6, seed=s), silence(0.9)]) for s in range(5)])
    events = _run(rec, audio) + rec.finish()
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) >= 4 and rec.utterances == len(finals)
    assert list(rec.finals) == finals[-2:]
