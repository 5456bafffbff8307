"""One grammar for every edge-* command: --version, help on every flag
without "(default: None)" noise, --help without importing torch, and one
`error:` line with exit 2 for the common mistakes."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PARSERS = {  # the module that builds each command's parser
    "edge-export": "edge.cli", "edge-train": "edge.train", "edge-eval": "edge.evaluate",
    "edge-bench": "targets.bench.cli", "edge-build": "targets.build", "edge-verify": "targets.verify",
    "edge-demo": "demo.cli",
}


def test_every_command_is_covered():
    assert set(SCRIPTS) == set(PARSERS)


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_and_version_answer_without_importing_torch(command):
    module, func = SCRIPTS[command].split(":")
    code = (f"import sys\nfrom {module} import {func} as main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('TORCH-IMPORTED' if 'torch' in sys.modules else 'torch-free')")
    for flag in ("--help", "--version"):
        r = _run(code, flag)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("torch-free"), f"{command} {flag} imported torch"
        if flag == "--version":
            assert r.stdout.startswith(f"{command} ")
        else:
            assert "(default: None)" not in r.stdout and "(default: False)" not in r.stdout
            assert "--version" in r.stdout


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_flag_has_help(command):
    import importlib
    parser = importlib.import_module(PARSERS[command]).build_parser()
    for action in parser._actions:
        hidden = action.help == argparse.SUPPRESS
        if hidden:  # a hidden alias keeps an old spelling working; its twin is documented
            twins = [a for a in parser._actions if a.dest == action.dest and a is not action]
            assert twins and all(a.help for a in twins), action.option_strings
            continue
        assert action.help and action.help.strip(), f"{command} {action.option_strings or action.dest}: no help"


@pytest.mark.parametrize("command", ["edge-build", "edge-export", "edge-train"])
def test_output_is_dash_o_everywhere(command):
    import importlib
    parser = importlib.import_module(PARSERS[command]).build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"-o", "--output"} <= flags


def test_train_keeps_out_as_a_hidden_alias():
    from edge.train import parse_args
    assert parse_args(["--family", "lstm", "--out", "a.pt"]).out == "a.pt"
    assert parse_args(["--family", "lstm", "-o", "b.pt"]).out == "b.pt"


# -- common mistakes: one `error:` line, exit 2 ------------------------------------------------

def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


MISTAKES = [
    ("edge-eval", ["--family", "lstm", "--corpus", "{tmp}/no-corpus"], "make a corpus with"),
    ("edge-eval", ["--family", "lstn"], "Did you mean 'lstm'"),
    ("edge-train", ["--family", "lstm", "--corpus", "/nope", "-o", "{tmp}/x.pt"], "corpus /nope not found"),
    ("edge-train", ["--family", "lstm", "--corpus", "/nope"], "-o/--output"),
    ("edge-bench", ["--bundle", "/nope", "--backends", "ort:fp32"], "/nope is not a folder"),
    ("edge-bench", ["--bundle", "/nope", "--backends", "ort:fp64"], "/nope is not a folder"),
    ("edge-verify", ["/nope"], "/nope"),
    ("edge-demo", ["/nope", "--wav", "x.wav"], "/nope"),
    ("edge-demo", ["/nope"], "--mic --wav"),
    ("edge-export", ["--family", "nope", "-o", "{tmp}/o"], "unknown family"),
    ("edge-build", ["--target", "andriod"], "Did you mean 'android'"),
    ("edge-build", ["--target", "rpi", "--no-such-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize("command, argv, says", MISTAKES, ids=[f"{c} {' '.join(a)}" for c, a, _ in MISTAKES])
def test_common_mistakes_are_one_error_line(command, argv, says, tmp_path):
    module, func = SCRIPTS[command].split(":")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    r = _run(f"import sys\nfrom {module} import {func} as main\nsys.exit(main(sys.argv[1:]))", *argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert says in _one_error_line(r.stderr)


@pytest.mark.parametrize("command, argv", [
    ("edge-build", ["--target", "rpi"]), ("edge-export", ["-o", "{tmp}/o"]), ("edge-train", ["-o", "{tmp}/x.pt"]),
    ("edge-eval", []), ("edge-bench", []),
])
def test_family_is_the_same_flag_everywhere(command, argv, tmp_path):
    """Same default (conformer; edge-bench: the --bundle's), same check, same line for a typo."""
    import importlib
    parser = importlib.import_module(PARSERS[command]).build_parser()
    family, = [a for a in parser._actions if "--family" in a.option_strings]
    if command in ("edge-build", "edge-export"):  # None: conformer, unless --model (your own model) is given
        assert family.default is None and "default: conformer" in family.help and not family.required
    else:
        assert family.default == (None if command == "edge-bench" else "conformer") and not family.required
    module, func = SCRIPTS[command].split(":")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--family", "lstn"]
    r = _run(f"import sys\nfrom {module} import {func} as main\nsys.exit(main(sys.argv[1:]))", *argv)
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert line.startswith("error: unknown family 'lstn'. Did you mean 'lstm'? Known: conformer, lstm, transducer")
