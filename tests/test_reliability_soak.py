"""Issue 8, long streams: the soak harness (tests/harness/soak.py) shows no
drift, leak or RTF creep over minutes (an hour with -m slow)."""

from __future__ import annotations

import json

import pytest

from tests.bundle_fixtures import cached_bundle

RATE = 16000
ORT = [("ort", "fp32")]



def test_soak_short():
    """2.5 minutes of audio (about 50 endpoint resets) on the tiny conformer.
    Bars: RSS growth after the first utterance < 16 MB (nothing in the loop
    may keep per-chunk data: an hour of chunks at 1 KB each would be 20 MB;
    the measured growth is a few MB of allocator/ORT arena noise), RTF over
    the last minute within 2x of the first, and no drift: the probe after the
    run equals a fresh session and every exact repeat equals its first time
    (the states are reset to their exact initial values, so <= 1e-5)."""
    from tests.harness.soak import run_soak
    path, _ = cached_bundle("conformer")
    r = run_soak(path, minutes=2.5, window_minutes=1.0)
    print(r.text())
    assert r.passed(), r.problems
    assert r.rss_end_mb - r.rss_start_mb < 16
    assert r.rtf_last <= 2 * r.rtf_first
    assert r.probe_max_diff <= 1e-5 and r.probe_text_equal and r.probe_chunks > 0
    assert r.repeats_checked >= 3 and r.repeat_max_diff <= 1e-5
    assert r.resets >= 30 and r.states_reset_exactly and r.states_finite and r.counters_are_ints


def test_soak_memory_rule_tells_warm_up_from_a_leak():
    """Measured on the shipped conformer: +8.5 MB in the first hour, +0.2 MB
    in the second (allocator warm-up). A steady slope of 12 MB/h is a leak."""
    from tests.harness.soak import SoakReport, memory_problems
    warm_up = SoakReport("b", "ort/fp32", audio_s=7200, rss_start_mb=75.8, rss_mid_mb=84.3, rss_end_mb=84.5)
    assert memory_problems(warm_up) == []
    leak = SoakReport("b", "ort/fp32", audio_s=7200, rss_start_mb=75.8, rss_mid_mb=87.8, rss_end_mb=99.8)
    assert leak.second_half_mb_per_hour == pytest.approx(12.0)
    assert "still growing" in memory_problems(leak)[0]
    short = SoakReport("b", "ort/fp32", audio_s=600, rss_start_mb=75.8, rss_mid_mb=76.0, rss_end_mb=79.0)
    assert memory_problems(short) == []  # a 5-minute half is too short to judge a slope
    huge = SoakReport("b", "ort/fp32", audio_s=600, rss_start_mb=75.8, rss_mid_mb=76.0, rss_end_mb=150.0)
    assert "grew" in memory_problems(huge)[0]


def test_soak_command_line(tmp_path, capsys):
    from tests.harness import soak
    path, _ = cached_bundle("lstm")
    assert soak.main([str(path), "--minutes", "0.5", "--window-minutes", "0.1", "--quiet",
                      "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "memory RSS" in out and "RTF first" in out and "OK" in out
    assert json.loads((tmp_path / "r.json").read_text())["problems"] == []
    assert soak.main([str(tmp_path), "--minutes", "1"]) == 2
    assert "manifest.json" in capsys.readouterr().err


@pytest.mark.slow
def test_soak_one_hour():
    from tests.harness.soak import run_soak
    path, _ = cached_bundle("conformer")
    r = run_soak(path, minutes=60, window_minutes=5)
    print(r.text())
    assert r.passed(), r.problems
    assert r.rss_end_mb - r.rss_start_mb < 32 and r.rtf_last <= 2 * r.rtf_first and r.rtf_overall < 1
    assert r.second_half_mb_per_hour < 8.0  # also in passed(): a leak's slope, not the warm-up
