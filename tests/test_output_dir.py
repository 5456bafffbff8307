"""edge-build never loses a user's files: an existing folder that is not a
bundle we wrote is refused before any work (or, with --force, moved aside,
never deleted); `.`, the working directory, its parents, / and home are
refused always. Every test checks the user's files are still there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.errors import UserError
from runtime_py.manifest import Bundle
from targets import build as build_mod
from targets.build import build_bundle
from targets.bundle import check_output_dir, foreign_files
from tests.test_build import ORT_PAIRS, tiny

# the shipped LSTM, one fp32 .ort file, a 2-chunk parity rollout: about 2 s
QUICK = ["--target", "rpi", "--family", "lstm", "--quant", "ort:fp32", "--parity-chunks", "2"]


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "src").mkdir()
    (folder / "src" / "main.py").write_text("print('mine')\n")
    return folder


def _still_there(folder: Path) -> None:
    assert (folder / "notes.txt").read_text() == "my notes\n"
    assert (folder / "src" / "main.py").read_text() == "print('mine')\n"


def test_cli_refuses_a_project_folder_before_any_work(tmp_path, capsys, monkeypatch):
    proj = _project(tmp_path / "proj")
    monkeypatch.setattr("targets.build.cli.build_bundle", lambda *a, **k: pytest.fail("no work may start"))
    assert build_mod.main(QUICK + ["-o", str(proj)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "not a bundle edge-build wrote" in err and "notes.txt" in err and "--force" in err
    _still_there(proj)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"], "nothing written next to it either"


def test_api_refuses_a_project_folder_too(tmp_path):
    proj = _project(tmp_path / "proj")
    with pytest.raises(UserError, match="not a bundle edge-build wrote"):
        build_bundle("lstm", "rpi", proj, model=tiny("lstm"), backends=ORT_PAIRS)
    _still_there(proj)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj"]


def test_force_moves_the_folder_aside_and_never_deletes(tmp_path, capsys):
    proj = _project(tmp_path / "proj")
    assert build_mod.main(QUICK + ["-o", str(proj), "--force"]) == 0
    assert "moved the existing" in capsys.readouterr().out
    _still_there(tmp_path / "proj.before-edge-build")
    assert Bundle(proj).manifest["family"] == "lstm" and not (proj / "notes.txt").exists()


def test_force_puts_the_folder_back_when_the_build_fails(tmp_path, capsys):
    proj = _project(tmp_path / "proj")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert build_mod.main(QUICK + ["-o", str(proj), "--force", "--checkpoint", str(bad)]) == 2
    _still_there(proj)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "proj"]


def test_a_bundle_with_the_users_notes_added_is_not_replaced(tmp_path):
    out = build_bundle("lstm", "rpi", tmp_path / "b", model=tiny("lstm"), backends=ORT_PAIRS)
    assert foreign_files(out) == []
    rebuilt = build_bundle("lstm", "rpi", out, model=tiny("lstm", seed=1), backends=ORT_PAIRS)  # ours: replaced
    assert Bundle(rebuilt).manifest["family"] == "lstm"
    (out / "my-notes.txt").write_text("keep me\n")
    assert foreign_files(out) == ["my-notes.txt"]
    with pytest.raises(UserError, match="my-notes.txt"):
        build_bundle("lstm", "rpi", out, model=tiny("lstm"), backends=ORT_PAIRS)
    assert (out / "my-notes.txt").read_text() == "keep me\n"


def test_a_forged_or_broken_manifest_does_not_make_a_folder_ours(tmp_path):
    proj = _project(tmp_path / "proj")
    (proj / "manifest.json").write_text('{"name": "not ours"}')
    assert "notes.txt" in foreign_files(proj)
    (proj / "manifest.json").write_text("{broken")
    assert "notes.txt" in foreign_files(proj)
    with pytest.raises(UserError):
        check_output_dir(proj)
    _still_there(proj)


@pytest.mark.parametrize("where", [".", "cwd", "parent", "/", "home"])
def test_working_directory_root_and_home_are_refused_even_with_force(where, tmp_path, monkeypatch, capsys):
    proj = _project(tmp_path / "proj")
    if where == "home":  # home is the project folder; the working directory is elsewhere
        monkeypatch.setenv("HOME", str(proj))
        (tmp_path / "work").mkdir()
        monkeypatch.chdir(tmp_path / "work")
    else:
        monkeypatch.chdir(proj)
    monkeypatch.setattr("targets.build.cli.build_bundle", lambda *a, **k: pytest.fail("no work may start"))
    out = {".": ".", "cwd": str(proj), "parent": "..", "/": "/", "home": "~"}[where]
    out = os.path.expanduser(out)  # what a shell does with ~
    assert build_mod.main(QUICK + ["-o", out, "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to write a bundle to") and err.count("\n") == 1
    assert ("home folder" in err) == (where == "home")
    _still_there(proj)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["proj", "work"] if where == "home" else ["proj"])


def test_a_file_at_the_output_path_is_refused(tmp_path, capsys):
    f = tmp_path / "out"
    f.write_text("a file\n")
    assert build_mod.main(QUICK + ["-o", str(f), "--force"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert f.read_text() == "a file\n"
