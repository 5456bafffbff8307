"""runtime_py.rtf with a fake clock: no sleeping, no wall-clock assertions."""

import logging

import pytest

from runtime_py.rtf import OverrunGuard, RtfMonitor


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rtf_and_percentiles():
    m = RtfMonitor(16000)
    assert m.rtf == 0.0 and m.summary()["latency_ms"]["p50"] is None
    for i in range(100):  # 0.1 s chunks computed in 1 .. 100 ms
        m.record(0.1, (i + 1) / 1000)
    s = m.summary()
    assert s["chunks"] == 100
    assert s["audio_s"] == pytest.approx(10.0)
    assert s["rtf"] == pytest.approx(5.05 / 10.0)
    assert s["latency_ms"]["p50"] == pytest.approx(50.5)
    assert s["latency_ms"]["p90"] == pytest.approx(90.1)
    assert s["latency_ms"]["p99"] == pytest.approx(99.01)
    assert s["latency_ms"]["max"] == pytest.approx(100.0)
    assert s["chunk_rtf"]["max"] == pytest.approx(1.0)


def test_measure_uses_injected_clock():
    clock = FakeClock()
    m = RtfMonitor(16000, clock=clock)
    with m.measure(1600):  # 0.1 s of audio
        clock.now += 0.025
    assert m.rtf == pytest.approx(0.25)
    assert m.latencies_s == [pytest.approx(0.025)]


def test_window_bounds_memory_but_totals_are_complete():
    m = RtfMonitor(16000, window=10)
    for i in range(50):
        m.record_samples(1600, 0.01 if i < 40 else 0.05)
    assert len(m.latencies_s) == 10
    assert m.latency_ms()["p50"] == pytest.approx(50.0)  # only the recent window
    assert m.rtf == pytest.approx((40 * 0.01 + 10 * 0.05) / 5.0)


def test_rtf_rejects_negative():
    with pytest.raises(ValueError, match=">= 0"):
        RtfMonitor().record(-1, 0)


def test_overrun_guard_warns_once_per_episode_and_drops(caplog):
    g = OverrunGuard(max_backlog_s=1.0, warn_backlog_s=0.25, sample_rate=16000)
    with caplog.at_level(logging.WARNING, logger="runtime_py.rtf"):
        assert g.check(1000) == 0
        assert g.check(5000) == 0  # 0.31 s: warn
        assert g.check(6000) == 0  # same episode: no second warning
        assert g.check(20000) == 20000 - 4000  # 1.25 s > 1 s: drop back to 0.25 s
        assert g.check(3000) == 0  # episode over
        assert g.check(4001) == 0  # new episode
    s = g.summary()
    assert s["warnings"] == 2 and s["drops"] == 1
    assert s["dropped_samples"] == 16000 and s["dropped_s"] == pytest.approx(1.0)
    assert s["max_backlog_s"] == pytest.approx(1.25) and s["checks"] == 6
    assert sum("not keeping up" in r.message for r in caplog.records) == 2


def test_overrun_guard_drives_a_simulated_slow_recogniser():
    """A recogniser at RTF 1.5 on live 16 kHz input: the backlog stays bounded."""
    from runtime_py.ringbuffer import RingBuffer
    import numpy as np
    g = OverrunGuard(max_backlog_s=2.0, warn_backlog_s=0.5)
    rb = RingBuffer(16000 * 10)
    chunk = 1600
    for _ in range(300):  # 30 s of audio; per 0.1 s chunk processed, 0.15 s arrives
        rb.write(np.zeros(2400, np.float32))
        rb.read(chunk)
        rb.skip(g.check(rb.available))
        assert rb.available <= 2.0 * 16000
    assert g.drops > 0 and g.warnings >= 1


def test_overrun_guard_arguments():
    with pytest.raises(ValueError, match="warn_backlog_s"):
        OverrunGuard(max_backlog_s=0.5, warn_backlog_s=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        OverrunGuard().check(-1)
