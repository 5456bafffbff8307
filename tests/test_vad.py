"""runtime_py.vad: energy VAD with hysteresis and the endpointer."""

import numpy as np
import pytest

from runtime_py.vad import Endpointer, EnergyVad, speech_segments

SR = 16000
TOL_S = 0.03  # brief: boundaries within 30 ms (3 frames of 10 ms)


def signal(parts, seed=0):
    """[(seconds, rms_dbfs), ...] -> concatenated Gaussian noise bursts."""
    rng = np.random.default_rng(seed)
    out = [rng.standard_normal(int(s * SR)) * 10 ** (db / 20) for s, db in parts]
    return np.concatenate(out).astype(np.float32)


def run_vad(vad, x, block):
    labels = [vad.process(x[i:i + block]) for i in range(0, len(x), block)]
    labels.append(vad.flush())
    return np.concatenate(labels)


@pytest.mark.parametrize("block", [1, 160, 317, 4000])
def test_one_segment_with_exact_boundaries(block):
    x = signal([(1.0, -70), (1.5, -20), (1.2, -70)])
    vad = EnergyVad(SR)
    labels = run_vad(vad, x, block)
    assert len(labels) == len(x) // vad.frame_length  # every full frame labelled once
    segs = speech_segments(labels, vad.frame_s)
    assert len(segs) == 1
    (start, end), = segs
    assert abs(start - 1.0) <= TOL_S and abs(end - 2.5) <= TOL_S


def test_short_click_and_short_gap_are_debounced():
    # a 30 ms click (< min_speech 60 ms) and a 100 ms pause (< min_silence 150 ms)
    x = signal([(0.5, -70), (0.03, -10), (0.5, -70), (0.5, -20), (0.1, -70), (0.5, -20), (0.5, -70)])
    segs = speech_segments(run_vad(EnergyVad(SR), x, 160), 0.01)
    assert len(segs) == 1
    assert abs(segs[0][0] - 1.03) <= TOL_S and abs(segs[0][1] - 2.13) <= TOL_S


def test_hysteresis_keeps_speech_between_thresholds():
    # -43 dB: below the on threshold (-40) but above the off threshold (-46)
    x = signal([(0.5, -70), (0.5, -20), (0.5, -43), (0.5, -70)])
    segs = speech_segments(run_vad(EnergyVad(SR), x, 160), 0.01)
    assert len(segs) == 1 and abs(segs[0][1] - 1.5) <= TOL_S
    # the same level never switches speech on
    y = signal([(0.5, -70), (0.5, -43), (0.5, -70)])
    assert not run_vad(EnergyVad(SR), y, 160).any()


def test_minutes_of_silence_and_empty_blocks():
    vad = EnergyVad(SR)
    ep = Endpointer(vad=vad)
    x = signal([(120.0, -65)], seed=3)
    events = []
    for i in range(0, len(x), 16000):
        events += ep.update(x[i:i + 16000])
        events += ep.update(np.zeros(0, dtype=np.float32))
    events += ep.finish()
    # No utterance is found; the only endpoints are the idle resets, one
    # every max_idle_s of silence (120 s / 10 s = 12).
    assert not ep.in_utterance
    assert [e.reason for e in events] == ["idle"] * int(120 / ep.max_idle_s)
    assert all(abs((e.end_s - e.start_s) - ep.max_idle_s) < 0.02 for e in events)
    assert vad.frames_labelled == 12000
    assert EnergyVad(SR).process(np.zeros(0)).shape == (0,)
    assert not EnergyVad(SR).process(np.zeros(1600)).any()  # digital silence: -120 dBFS, finite


def test_adaptive_floor_ignores_steady_noise():
    # loud steady fan noise at -30 dBFS, speech 20 dB above it
    x = signal([(3.0, -30), (1.0, -10), (2.0, -30)], seed=1)
    fixed = speech_segments(run_vad(EnergyVad(SR), x, 160), 0.01)
    adaptive = speech_segments(run_vad(EnergyVad(SR, adaptive=True), x, 160), 0.01)
    assert len(fixed) == 1 and fixed[0][0] < 0.1  # a fixed -40 dB threshold calls the fan speech
    assert len(adaptive) == 1
    assert abs(adaptive[0][0] - 3.0) <= TOL_S and abs(adaptive[0][1] - 4.0) <= TOL_S


def test_endpointer_on_audio():
    x = signal([(1.0, -70), (1.5, -20), (1.5, -70)])
    ep = Endpointer(min_trailing_silence_ms=600)
    events = []
    for i in range(0, len(x), 999):
        events += ep.update(x[i:i + 999])
    assert len(events) == 1  # found before the stream ends
    e = events[0]
    assert e.reason == "silence"
    assert abs(e.start_s - 1.0) <= TOL_S and abs(e.end_s - 2.5) <= TOL_S
    assert abs(e.detected_s - 3.1) <= TOL_S  # end of speech + 600 ms of trailing silence
    assert ep.finish() == []


def test_endpointer_flags_max_length_and_finish():
    ep = Endpointer(min_trailing_silence_ms=300, max_utterance_s=1.0)
    ev = ep.update_flags([False] * 5 + [True] * 150, 0.01)  # 1.5 s of speech from t=0.05
    assert [e.reason for e in ev] == ["max_length"]
    assert ev[0].start_s == pytest.approx(0.05) and ev[0].end_s == pytest.approx(1.05)
    assert ep.in_utterance  # speech goes on: a new utterance started at the cut
    ev = ep.update_flags([False] * 29, 0.01)
    assert ev == []  # 290 ms < 300 ms
    ev = ep.update_flags(False, 0.01)
    assert len(ev) == 1 and ev[0].reason == "silence" and ev[0].end_s == pytest.approx(1.55)
    ep.update_flags([True] * 3, 0.01)
    ev = ep.finish()
    assert [e.reason for e in ev] == ["finish"] and not ep.in_utterance


def test_bad_arguments():
    with pytest.raises(ValueError, match="sample_rate"):
        EnergyVad(0)
    with pytest.raises(ValueError, match="1-D"):
        EnergyVad(SR).process(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="trailing"):
        Endpointer(min_trailing_silence_ms=0)
    with pytest.raises(ValueError, match="duration_s"):
        Endpointer().update_flags([True], 0.0)
