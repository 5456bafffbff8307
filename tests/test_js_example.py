"""The model card's state-loop recipe, run outside Python: examples/js
(onnxruntime-node, the API of onnxruntime-react-native and -web) runs a
bundle's .ort / .onnx encoder loop on the golden inputs and must reproduce
the golden outputs and transcript. Skipped, saying why, without node/npm or
when npm cannot fetch onnxruntime-node."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixtures import cached_bundle, tiny_bundle

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "js"


@pytest.fixture(scope="module")
def js_dir():
    """examples/js with its node_modules, installed once into a cache folder
    keyed by package.json (never into the checkout)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed: the JavaScript example (examples/js) is not checked")
    package = (EXAMPLE / "package.json").read_bytes()
    base = Path(os.environ.get("EDGE_SPEECH_JS_CACHE", Path.home() / ".cache" / "edge-speech" / "js-example"))
    folder = base / hashlib.sha256(package).hexdigest()[:12]
    if not (folder / "node_modules" / "onnxruntime-node" / "package.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_bytes(package)
        # ONNXRUNTIME_NODE_INSTALL=skip: the CPU binaries ship in the npm package; skip the
        # optional download of the CUDA provider from nuget.org
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=folder, capture_output=True,
                           text=True, timeout=300, env=dict(os.environ, ONNXRUNTIME_NODE_INSTALL="skip"))
        if r.returncode != 0:
            pytest.skip(f"npm could not install onnxruntime-node (offline?): {r.stderr.strip()[-300:]}")
    for script in EXAMPLE.glob("*.mjs"):
        shutil.copyfile(script, folder / script.name)
    return folder


def _check(js_dir: Path, bundle: Path, backend: str) -> tuple[int, dict]:
    r = subprocess.run(["node", "golden_check.mjs", str(bundle), backend], cwd=js_dir, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", ["conformer", "transducer"])
def test_js_state_loop_reproduces_the_golden_files_from_ort(family, js_dir):
    bundle, _ = cached_bundle(family)
    code, res = _check(js_dir, bundle, "ort")
    assert code == 0 and res["ok"], res
    assert res["max_abs_diff"] <= res["tolerance"] == 1e-4
    assert res["text"] == (bundle / "golden" / "transcript.txt").read_text().strip() and res["text"]


def test_js_state_loop_from_onnx(js_dir, tmp_path):
    bundle, _ = tiny_bundle("lstm", tmp_path, backends=(("onnx", "fp32"),))
    code, res = _check(js_dir, bundle, "onnx")
    assert code == 0 and res["ok"] and res["chunks"] > 10, res


def test_js_check_fails_on_wrong_golden_outputs(js_dir, tmp_path):
    """The check can fail: outputs nudged by 1e-3 are caught."""
    src, _ = cached_bundle("conformer")
    bundle = tmp_path / "b"
    shutil.copytree(src, bundle)
    path = bundle / "golden" / "encoder_outputs.npz"
    with np.load(path) as z:
        arrays = {k: z[k] + np.float32(1e-3) for k in z.files}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    code, res = _check(js_dir, bundle, "ort")
    assert code == 1 and not res["ok"] and res["max_abs_diff"] > 5e-4, res


def test_js_runs_the_int8_file_and_names_a_missing_one(js_dir, tmp_path):
    """`ort:int8` runs the int8 file of the shipped (trained) conformer and must give
    the golden transcript (int8 outputs differ from the fp32 golden outputs by design,
    so only the text is compared); a backend the bundle lacks is one error line, exit 2."""
    from targets.build import build_bundle

    bundle = build_bundle("conformer", "rpi", tmp_path / "b", backends=[("ort", "fp32"), ("ort", "int8")])
    code, res = _check(js_dir, bundle, "ort:int8")
    assert code == 0 and res["ok"] and res["precision"] == "int8", res
    assert res["text"] == "one two three" and res["max_abs_diff"] > 0, res  # a different file than fp32's
    r = subprocess.run(["node", "golden_check.mjs", str(bundle), "onnx"], cwd=js_dir, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "ort:int8" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "TypeError" not in r.stderr


# -- audio in, text out: transcribe.mjs on an audio-in bundle -------------------------------

@pytest.fixture(scope="module")
def audio_in_bundle(tmp_path_factory):
    """The shipped conformer with its frontend in the graph (edge-build
    --audio-in), as ort fp32, ort int8 and onnx fp32; a short parity rollout
    and stream check (test_audio_in.py and the build's own defaults check more)."""
    from targets.build import build_bundle

    return build_bundle("conformer", "rpi", tmp_path_factory.mktemp("audio-in") / "b", audio_in=True,
                        backends=[("ort", "fp32"), ("ort", "int8"), ("onnx", "fp32")], parity_chunks=20,
                        stream_seconds=20)


def _transcribe(js_dir: Path, bundle: Path, choice: str, wav: Path):
    return subprocess.run(["node", "transcribe.mjs", str(bundle), choice, str(wav)], cwd=js_dir,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("choice", ["ort", "onnx", "ort:int8"])
def test_js_transcribes_a_wav_through_an_audio_in_bundle(choice, js_dir, audio_in_bundle):
    """A WAV's PCM in, the transcript out, no feature code in JavaScript."""
    from edge.assets import sample_wavs

    wav = next(p for p in sample_wavs() if p.stem == "one_two_three")
    r = _transcribe(js_dir, audio_in_bundle, choice, wav)
    assert r.returncode == 0 and r.stdout.strip() == "one two three", (r.stdout, r.stderr)


def test_js_golden_check_on_an_audio_in_bundle(js_dir, audio_in_bundle):
    """The golden files of an audio-in bundle hold PCM calls; the loop skips the warmup call."""
    code, res = _check(js_dir, audio_in_bundle, "ort")
    assert code == 0 and res["ok"] and res["text"] == "one two three", res


def test_js_transcribe_refuses_a_features_in_bundle(js_dir):
    from edge.assets import sample_wavs

    bundle, _ = cached_bundle("conformer")
    r = _transcribe(js_dir, bundle, "ort", sample_wavs()[0])
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and "--audio-in" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
