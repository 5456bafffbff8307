"""edge-demo --mic through real PortAudio: sounddevice -> PortAudio -> ALSA ->
a PulseAudio null source fed from edge/checkpoints/samples/one_two_three.wav
(see tests/live_mic.py). Skipped, with the reason, only where that device
cannot be made (no pulseaudio / ALSA pulse plugin / libportaudio2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from targets.build import build_bundle
from tests import live_mic

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "edge" / "checkpoints" / "samples" / "one_two_three.wav"
WORDS = "one two three"


@pytest.fixture(scope="module")
def shipped_bundle(tmp_path_factory):
    why = live_mic.unavailable()
    if why:
        pytest.skip(f"no live microphone here: {why}")
    # the shipped conformer (it knows the words), ORT fp32 only: the fast build
    return build_bundle("conformer", "rpi", tmp_path_factory.mktemp("mic") / "demo-conformer-rpi",
                        backends=[("ort", "fp32")], parity_chunks=8)


def test_live_microphone_hears_the_words_with_right_counters(shipped_bundle):
    r = live_mic.run_demo(shipped_bundle, WAV)
    assert not r["hung"] and r["code"] == 0, r["err"]
    assert live_mic.finals(r["out"]) == WORDS, r["out"]
    s = live_mic.summary(r["out"])
    assert None not in s.values(), r["out"]
    # the audio counted holds all that was played and no more than the time recorded (+0.1 s of
    # timer slack): no sample counted twice. An idle null sink's monitor starts delivering only
    # when something plays (or ~1.7 s after the stream opens), and Ctrl-C drops what is still in
    # the device buffers, so no tighter bound.
    assert live_mic.wav_seconds(WAV) <= s["audio_s"] <= r["recorded_s"] + 0.1, (s, r["recorded_s"])
    # RTF is compute / audio (printed rounded: 0.002), and this model keeps up on this host
    assert s["rtf"] == pytest.approx(s["compute_s"] / s["audio_s"], abs=0.002) and s["rtf"] < 0.5, s
    assert (s["overruns"], s["drops"], s["dropped_s"], s["input_overflows"]) == (0, 0, 0.0, 0), s


def test_microphone_unplugged_mid_stream_is_one_error_line_not_a_hang(shipped_bundle):
    r = live_mic.run_demo(shipped_bundle, WAV, end="unplug", hang_s=30)
    assert not r["hung"], "edge-demo hung after the microphone went away"
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert r["code"] == 2 and len(errors) == 1 and "microphone went away" in errors[0], r["err"]
    assert "Traceback" not in r["err"]
    # what was heard before the device went away is still printed, with the summary
    assert live_mic.finals(r["out"]) == WORDS and "--- summary ---" in r["out"], r["out"]


def test_a_stalled_microphone_is_one_error_line_within_the_stall_timeout(shipped_bundle):
    """The stream stays open but no audio comes (the sink suspended): after
    MicSource.stall_s (5 s) the demo says so and exits; PortAudio's stop()
    would wait for audio here (16 s measured, unbounded under emulation)."""
    from demo.sources import MicSource

    r = live_mic.run_demo(shipped_bundle, WAV, end="stall", hang_s=30)
    assert not r["hung"], r["err"]
    errors = [ln for ln in r["err"].splitlines() if ln.startswith("error:")]
    assert r["code"] == 2 and len(errors) == 1 and "no audio from the microphone" in errors[0], r["err"]
    assert live_mic.finals(r["out"]) == WORDS and "--- summary ---" in r["out"], r["out"]
    assert r["ended_s"] < MicSource.stall_s + 3.0, r["ended_s"]  # 3 s for the exit itself, under load
