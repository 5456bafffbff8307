"""examples/*.py run on the shipped models (the trained demo checkpoints),
each through its own main(argv) as a user would call it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = Path(__file__).resolve().parent.parent / "edge" / "checkpoints" / "samples" / "one_two_three.wav"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shipped_bundle(tmp_path_factory):
    """build_bundle.py on the shipped LSTM (ORT fp32 only, short proofs: the
    example's own options, to keep the test quick)."""
    out = tmp_path_factory.mktemp("examples")
    rc = example("build_bundle").main(["--family", "lstm", "--backends", "ort:fp32", "--parity-chunks", "8",
                                       "--stream-seconds", "5", "-o", str(out)])
    assert rc == 0  # the golden utterance decoded to the golden transcript
    return out / "demo-lstm-rpi"


def test_build_bundle_then_decode_file(shipped_bundle, capsys):
    assert (shipped_bundle / "manifest.json").exists()
    capsys.readouterr()
    assert example("decode_file").main([str(shipped_bundle), str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert f"{SAMPLE}: one two three\n" in out and "RTF" in out  # the trained model's words for this sample
    assert example("decode_file").main([str(shipped_bundle), str(SAMPLE.with_name("missing.wav"))]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_multi_stream_batched_on_one_model(capsys):
    assert example("multi_stream").main(["--family", "lstm", "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "4 streams on one lstm model; batched: yes"
    texts = dict(line.strip().split(": ", 1) for line in out[1:5])
    assert texts["one_two_three.wav"] == "one two three" and all(texts.values())
    assert out[5].startswith("per stream-chunk: batched ") and "one by one" in out[5]


def test_multi_stream_on_a_batch1_bundle_runs_one_by_one(shipped_bundle, capsys):
    assert example("multi_stream").main(["--bundle", str(shipped_bundle), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "batched: no (batch-1 graph: one by one)" in out and "one_two_three.wav: one two three" in out


def test_live_microphone_help_and_missing_device(shipped_bundle, capsys):
    mic = example("live_microphone")
    with pytest.raises(SystemExit) as e:
        mic.main(["--help"])
    assert e.value.code == 0 and "sounddevice" in capsys.readouterr().out
    # a device that does not exist (or no PortAudio at all): one error line, exit 2
    assert mic.main([str(shipped_bundle), "--device", "987654"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err


def test_multi_stream_says_what_is_wrong_without_a_traceback(shipped_bundle, capsys, monkeypatch):
    """A bundle passed where WAVs go, and the runtime-only install (no torch) without
    --bundle: one error line each, exit 2, no traceback."""
    ms = example("multi_stream")
    assert ms.main([str(shipped_bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"--bundle {shipped_bundle}" in err and len(err.splitlines()) == 1
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(SystemExit) as e:
        ms.main(["--rounds", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "--bundle" in err and "[export]" in err
