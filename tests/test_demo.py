"""edge-demo: the main loop on a simulated microphone, error handling, and
the client's import graph (no torch / tensorflow / edge / targets)."""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from demo import cli
from demo.sources import GeneratedSource, MicSource, SourceError, WavSource
from runtime_py.audio import WavError, write_wav
from tests.bundle_fixtures import cached_bundle, silence, speechlike

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent


def _audio():
    return np.concatenate([silence(0.2), speechlike(1.0, seed=1), silence(0.9), speechlike(0.8, seed=2),
                           silence(0.9)])


def _main(argv, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_mic_main_loop_with_a_generated_source():
    path, _ = cached_bundle("conformer")
    made = []

    def factory(args, rate):
        assert args.mic and rate == RATE
        src = GeneratedSource(_audio(), RATE, block_sizes=(160, 333, 1, 1601, 0, 77), speed=20.0)
        made.append(src)
        return src

    code, out, err = _main([str(path), "--mic", "--endpoint-ms", "500", "--partials", "on"], source_factory=factory)
    assert code == 0, err
    assert made and made[0].live
    assert "\r" in out and "[RTF" in out  # partials on one updating line, with the live RTF
    finals = [ln.strip("\r ").split("\r")[-1] for ln in out.splitlines() if "] " in ln and " - " in ln]
    assert len(finals) >= 2, out
    assert "--- summary ---" in out and "RTF" in out and "p50" in out and "p99" in out
    assert "utterances" in out and "dropped" in out
    assert "Traceback" not in err


def test_partials_only_on_a_terminal_by_default(tmp_path):
    """Piped to a file or a CI log (not a terminal), the demo prints finals
    and the summary without the updating partial line."""
    path, _ = cached_bundle("conformer")
    wav = tmp_path / "speech.wav"
    write_wav(wav, _audio(), RATE)
    code, out, err = _main([str(path), "--wav", str(wav)])  # StringIO: not a terminal
    assert code == 0, err
    assert "\r" not in out and "[RTF" not in out
    assert sum(1 for ln in out.splitlines() if "] " in ln and " - " in ln) >= 2 and "--- summary ---" in out

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty, e = Tty(), io.StringIO()
    assert cli.main([str(path), "--wav", str(wav)], out=tty, err=e) == 0
    assert "\r" in tty.getvalue()
    code, out, _ = _main([str(path), "--wav", str(wav), "--partials", "off"])
    assert code == 0 and "\r" not in out


def test_wav_file_and_the_console_script(tmp_path):
    path, _ = cached_bundle("lstm")
    wav = tmp_path / "speech.wav"
    write_wav(wav, _audio(), RATE)
    code, out, err = _main([str(path), "--wav", str(wav), "--threads", "2"])
    assert code == 0, err
    assert "utterances 3" in out or "utterances 2" in out
    # the installed entry point (same main), as a user runs it
    exe = Path(sys.executable).with_name("edge-demo")
    if exe.exists():
        r = subprocess.run([str(exe), str(path), "--wav", str(wav)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "--- summary ---" in r.stdout


def test_missing_sounddevice_is_one_line_and_exit_2(monkeypatch):
    path, _ = cached_bundle("lstm")
    real_import = builtins.__import__

    def no_sounddevice(name, *args, **kw):
        if name == "sounddevice" or name.startswith("sounddevice."):
            raise ImportError("No module named 'sounddevice'")
        return real_import(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_sounddevice)
    with pytest.raises(SourceError, match="pip install sounddevice"):
        MicSource()
    code, out, err = _main([str(path), "--mic"])
    assert code == 2
    assert "pip install sounddevice" in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


def test_missing_portaudio_names_the_apt_package(monkeypatch):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(SourceError, match="apt-get install libportaudio2"):
        MicSource()


@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "no-samples"])
def test_bad_wav_exits_2_with_one_line(tmp_path, kind):
    path, _ = cached_bundle("lstm")
    wav = tmp_path / f"{kind}.wav"
    if kind == "empty":
        wav.write_bytes(b"")
    elif kind == "garbage":
        wav.write_bytes(os.urandom(1000))
    elif kind == "no-samples":
        write_wav(wav, np.zeros(0, np.float32), RATE)
    code, out, err = _main([str(path), "--wav", str(wav)])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(wav.name) in lines[0], err
    assert "Traceback" not in err and out == ""


def test_corrupted_model_is_refused_by_sha256(tmp_path):
    path, _ = cached_bundle("lstm")
    bad = Path(shutil.copytree(path, tmp_path / "bundle"))
    manifest = json.loads((bad / "manifest.json").read_text())
    model = bad / next(a["path"] for a in manifest["artifacts"] if a["graph"] == "encoder")
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    wav = tmp_path / "a.wav"
    write_wav(wav, speechlike(0.5), RATE)
    code, out, err = _main([str(bad), "--wav", str(wav)])
    assert code == 2
    assert "sha256" in err and model.name in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_bundle_and_unavailable_backend(tmp_path):
    path, _ = cached_bundle("lstm")
    wav = tmp_path / "a.wav"
    write_wav(wav, speechlike(0.5), RATE)
    code, _, err = _main([str(tmp_path), "--wav", str(wav)])
    assert code == 2 and "manifest.json" in err
    code, _, err = _main([str(path), "--wav", str(wav), "--backend", "tflite"])
    assert code == 2 and "tflite" in err and "Traceback" not in err
    code, _, err = _main([str(path), "--wav", str(wav), "--backend", "ort:int8", "--precision", "fp32"])
    assert code == 2 and err == "error: --backend 'ort:int8' and --precision 'fp32' disagree; name the precision " \
        "once (--backend ort:fp32 or ort:int8)\n"


def test_sources_deliver_all_samples_in_about_100ms_blocks(tmp_path):
    audio = speechlike(1.234)
    with GeneratedSource(audio, RATE, block_sizes=(1, 7, 999, 0, 3333), speed=float("inf")) as src:
        blocks = list(src)
    np.testing.assert_array_equal(np.concatenate(blocks), audio)
    assert all(len(b) >= src.block_size for b in blocks[:-1]) and src.backlog() == 0
    wav = tmp_path / "x.wav"
    write_wav(wav, audio, RATE)
    with WavSource(wav) as w:
        got = list(w)
    assert sum(map(len, got)) == len(audio) and len(got[0]) == RATE // 10
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF junk")
    with pytest.raises(WavError):
        WavSource(junk)


def test_client_import_graph_is_torch_free():
    code = ("import sys, runtime_py.session, runtime_py.recognizer, runtime_py.backends, demo.cli, demo.sources\n"
            "bad = sorted(m for m in ('torch', 'tensorflow', 'edge', 'targets') if m in sys.modules)\n"
            "assert not bad, bad\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_microphone_that_stops_delivering_is_an_error_not_a_hang(monkeypatch):
    """A stream that stays open but stops calling back (a stalled driver) ends the
    demo with one error line after `stall_s`; the live unplug is in test_live_mic."""
    import types

    class SilentStream:  # opens and starts like PortAudio's, never calls back
        def __init__(self, **kw):
            self.active = False

        def start(self):
            self.active = True

        def stop(self):  # PortAudio's stop waits for audio that a stalled device never sends
            raise AssertionError("Pa_StopStream on a stalled device would never return")

        def abort(self):
            self.active = False

        def close(self):
            pass

    fake = types.SimpleNamespace(InputStream=SilentStream, PortAudioError=RuntimeError,  # a device that exists
                                 query_devices=lambda device=None, kind=None: {"name": "stalled",
                                                                              "max_input_channels": 1})
    monkeypatch.setattr(MicSource, "_sounddevice", staticmethod(lambda: fake))
    monkeypatch.setattr(MicSource, "stall_s", 0.3)
    path, _ = cached_bundle("lstm")
    code, out, err = _main([str(path), "--mic"])
    assert code == 2 and "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no audio from the microphone for 0.3 s" in errors[0], err
    assert "--- summary ---" in out
