"""Helpers shared by the test_reliability_* files (issue 8: bad input gets one
clear message, nothing is lost or half-written): the one-error-line check,
the CLIs called in-process, a tiny checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from demo import cli as demo_cli
from edge import cli as export_cli
from edge.checkpoint import save_checkpoint
from targets import build as build_mod
from tests.bundle_fixtures import cached_bundle, tiny_model

RATE = 16000
ORT = [("ort", "fp32")]



# -- helpers -----------------------------------------------------------------------------------

def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    return err.strip()


def export_main(argv, capsys):
    code = export_cli.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def build_main(argv, capsys):
    code = build_mod.main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def demo_main(argv):
    out, err = io.StringIO(), io.StringIO()
    code = demo_cli.main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def verify_main(argv):
    from targets import verify as verify_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = verify_cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture()
def bundle_copy(tmp_path):
    """A copy of the tiny rpi lstm bundle (ort fp32) to change."""
    path, _ = cached_bundle("lstm")
    return Path(shutil.copytree(path, tmp_path / "bundle"))


DELETE = object()


def set_field(path, value):
    """A manifest change: the field at `path` (keys and indices) set to
    `value`, or removed when `value` is DELETE."""
    def change(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        if value is DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return change


def edit_manifest(root: Path, change) -> None:
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """A valid tiny LSTM checkpoint and the same model's raw state_dict."""
    d = tmp_path_factory.mktemp("ckpt")
    model = tiny_model("lstm")
    save_checkpoint(model, d / "lstm.pt", tokens=[], meta={"trained": False})
    torch.save(model.state_dict(), d / "raw_state_dict.pt")
    return d


def payload_of(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# == exporter: edge-export and edge-build ==================================================
