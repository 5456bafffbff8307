"""The error lines a newcomer meets: an MP3 (even renamed .wav), --quant
int4, and --mic with no microphone (said before the listening banner)."""

from __future__ import annotations

import io
import sys
import types

import pytest

from demo import cli
from demo.sources import MicSource, SourceError
from edge.errors import UserError
from runtime_py.audio import WavError, parse_wav, sniff_format
from targets import build as build_mod
from targets.build import get_target, parse_quant
from tests.bundle_fixtures import cached_bundle

# an MPEG-1 Layer III frame header (128 kbit/s, 44.1 kHz) and an ID3v2 tag, as MP3 files start
MP3_FRAME = b"\xff\xfb\x90\x64" + bytes(400)
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + MP3_FRAME


def _demo(argv, **kw):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("data, kind", [(MP3_FRAME, "MP3"), (MP3_ID3, "MP3"), (b"fLaC" + bytes(40), "FLAC"),
                                        (b"OggS" + bytes(40), "Ogg"), (b"\0\0\0\x20ftypM4A " + bytes(40), "MP4")])
def test_compressed_audio_is_named(data, kind):
    assert sniff_format(data).startswith(kind)
    with pytest.raises(WavError, match=f"this is {kind}"):
        parse_wav(data, "x.wav")


def test_renamed_mp3_gets_the_convert_command(tmp_path):
    bundle, _ = cached_bundle("lstm")
    song = tmp_path / "song.wav"  # an MP3 with a .wav name
    song.write_bytes(MP3_ID3)
    code, _, err = _demo([str(bundle), "--wav", str(song)])
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {song}: this is MP3, not WAV; convert it with sox/ffmpeg: ffmpeg -i '{song}'")
    assert "'song-16k.wav'" in err, "the converted file must not overwrite the input"
    assert song.read_bytes() == MP3_ID3


def test_a_text_file_is_still_not_riff():
    with pytest.raises(WavError, match="not a RIFF/WAVE file"):
        parse_wav(b"hello, this is text", "notes.wav")


def test_quant_int4_is_unknown_and_lists_the_known(capsys):
    with pytest.raises(UserError) as e:
        parse_quant(get_target("rpi"), "int4")
    msg = str(e.value)
    assert "unknown precision 'int4'" in msg and "Known: fp16, fp32, int8" in msg and "int8?" not in msg
    with pytest.raises(UserError, match="unknown precision 'int4'"):
        parse_quant(get_target("android"), "tflite:int4")
    with pytest.raises(UserError, match="Did you mean 'tflite'"):
        parse_quant(get_target("rpi"), "tflit:fp32")
    assert build_mod.main(["--target", "rpi", "--quant", "int4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --quant 'int4': unknown precision") and err.count("\n") == 1


def _fake_sounddevice(monkeypatch, devices):
    sd = types.ModuleType("sounddevice")

    def query_devices(device=None, kind=None):
        key = "default" if device is None else device
        if key not in devices:
            raise ValueError(f"Error querying device {-1 if device is None else device}")
        return devices[key]
    sd.query_devices = query_devices
    sd.InputStream = lambda **kw: pytest.fail("no stream may be opened")
    monkeypatch.setitem(sys.modules, "sounddevice", sd)


def test_mic_without_any_input_device_fails_before_the_banner(monkeypatch):
    _fake_sounddevice(monkeypatch, {})
    with pytest.raises(SourceError, match="no default input device"):
        MicSource()
    bundle, _ = cached_bundle("lstm")
    code, out, err = _demo([str(bundle), "--mic"])
    assert code == 2 and out == ""
    assert err.startswith("error: cannot use the microphone: no default input device"), err
    assert "python -m sounddevice" in err and "Ctrl-C" not in err and err.count("\n") == 1


def test_mic_device_without_input_channels(monkeypatch):
    _fake_sounddevice(monkeypatch, {"default": {"max_input_channels": 1}, 3: {"max_input_channels": 0}})
    MicSource()  # the default device is fine
    with pytest.raises(SourceError, match="device 3 has no input channels"):
        MicSource(device=3)
    with pytest.raises(SourceError, match="no input device 5"):
        MicSource(device=5)
