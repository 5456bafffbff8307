"""tools/thread-options on the shipped transducer's bundle: every set-up is timed against 1 thread, each
session gets the threads and spinning its set-up says, and bad input (a thread count, a path, a precision)
is one error line."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

from tests.bundle_fixtures import cached_bundle

TOOL = Path(__file__).resolve().parent.parent / "tools" / "thread-options"


def _tool():
    loader = importlib.machinery.SourceFileLoader("thread_options", str(TOOL))
    spec = importlib.util.spec_from_loader("thread_options", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_every_setup_is_timed_against_one_thread(capsys):
    bundle, _ = cached_bundle("transducer")
    assert _tool().main(["--bundle", str(bundle), "--seconds", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^  (\S+(?: thread)?)\s+e2e RTF (\d\.\d+)\s+(\d+\.\d+)x", out, re.M)
    assert [n for n, _, _ in lines] == ["1 thread", "encoder-spin", "encoder-nospin", "all-nospin", "all-spin"], out
    assert float(lines[0][2]) == 1.0 and all(float(rtf) > 0 for _, rtf, _ in lines), out


def test_each_setup_configures_the_sessions_it_names(monkeypatch):
    import onnxruntime as ort

    made = []
    real = ort.InferenceSession

    def spy(path, so, **kw):
        spin = None
        try:
            spin = so.get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # no entry: ONNX Runtime's default, spinning on
            pass
        made.append((Path(path).name.split(".")[0], so.intra_op_num_threads, spin))
        return real(path, so, **kw)
    monkeypatch.setattr(ort, "InferenceSession", spy)
    bundle, _ = cached_bundle("transducer")
    tool = _tool()
    for setup, want in [("encoder-spin", {"encoder": (3, None), "decoder": (1, None), "joiner": (1, None)}),
                        ("all-nospin", {"encoder": (3, "0"), "decoder": (3, "0"), "joiner": (3, "0")})]:
        made.clear()
        tool._model(bundle, "fp32", 3, setup)
        assert {g: (n, spin) for g, n, spin in made} == want, (setup, made)


def test_bad_input_is_one_error_line(capsys, tmp_path):
    bundle, _ = cached_bundle("transducer")
    for args in (["--bundle", str(bundle), "--threads", "1"], ["--bundle", str(tmp_path / "none")],
                 ["--bundle", str(bundle), "--precision", "fp16"]):
        assert _tool().main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
