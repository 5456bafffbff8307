"""edge-build's progress: the step lines always; on a terminal, a live bar
with the step number and elapsed time while a conversion runs."""

from __future__ import annotations

import io
import time

from targets.progress import StepProgress


def test_live_bar_shows_step_and_elapsed_then_gives_way_to_the_result(capsys):
    out = io.StringIO()
    progress = StepProgress(steps=2, out=out, live=True)
    progress("model conformer: parity stream 200 chunks")
    progress("tflite fp32: converting 1 graph(s)...")
    time.sleep(1.3)
    progress("tflite fp32: encoder max|diff| 2.57e-05 <= 1e-04 [1.3s]")
    progress("ort fp32: converting 1 graph(s)...")
    progress.close()
    err = capsys.readouterr().err
    assert "[1/2] tflite fp32: converting 1 graph(s): 00:01 elapsed" in err, err
    assert "[2/2] ort fp32: converting 1 graph(s)" in err
    assert out.getvalue().splitlines() == ["  model conformer: parity stream 200 chunks",
                                           "  tflite fp32: converting 1 graph(s)...",
                                           "  tflite fp32: encoder max|diff| 2.57e-05 <= 1e-04 [1.3s]",
                                           "  ort fp32: converting 1 graph(s)..."]
    assert progress._thread is None or not progress._thread.is_alive()


def test_no_bar_in_a_log(capsys):
    out = io.StringIO()
    progress = StepProgress(steps=1, out=out)  # neither stream is a terminal here
    progress("ort fp32: converting 1 graph(s)...")
    progress.close()
    assert capsys.readouterr().err == "" and out.getvalue() == "  ort fp32: converting 1 graph(s)...\n"
