"""Issue 25: a bundle whose manifest disagrees with its model files gets one
`error:` line and exit 2 from edge-verify and edge-demo (never a traceback,
never a huge allocation); a property test mutates one field of a real
bundle's manifest at a time and asserts exactly that, or a pass."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from runtime_py.manifest import Bundle, ManifestError
from runtime_py.session import ModelSession, SessionError
from tests.bundle_fixtures import cached_bundle, speechlike
from tests.reliability_common import (RATE, bundle_copy, demo_main, edit_manifest,  # noqa: F401 (a fixture)
                                      one_error_line, set_field, verify_main)


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    from runtime_py.audio import write_wav
    wav = tmp_path_factory.mktemp("wav") / "a.wav"
    write_wav(wav, speechlike(0.5), RATE)
    return wav


def set_state_shape(shape):
    return set_field(["signature", "graphs", 0, "states", 0, "shape"], shape)


@pytest.mark.parametrize("shape, phrase", [
    ([1, 1, 1], "manifest.json does not describe its model files: state 'h' of graph 'encoder' is declared "
                "[1, 1, 1], but encoder.fp32.ort has {real}"),
    ([100000, 100000, 100], "one stream would allocate 7.3 TiB, state 'h' of graph 'encoder' "
                            "[100000, 100000, 100] float32"),
])
def test_state_shape_the_model_file_disagrees_with(shape, phrase, bundle_copy, short_wav, monkeypatch):
    """The two cases of issue 25: no runtime error at chunk 0, no 3.6 TiB np.zeros."""
    from runtime_py import stateloop

    real = json.loads((bundle_copy / "manifest.json").read_text())["signature"]["graphs"][0]["states"][0]["shape"]
    phrase = phrase.format(real=real)
    edit_manifest(bundle_copy, set_state_shape(shape))
    allocated = []
    monkeypatch.setattr(stateloop, "initial_state", lambda spec: allocated.append(spec.name))
    for code, out, err in (verify_main([str(bundle_copy)]), demo_main([str(bundle_copy), "--wav", str(short_wav)])):
        assert code == 2 and out == "" and one_error_line(err).count("\n") == 0, (code, out, err)
        assert phrase in err, err
    assert allocated == [], "states were allocated before the check refused the bundle"


def test_io_check_names_dtype_and_dynamic_dims():
    """Unit level: every kind of disagreement names the tensor and the file;
    a dynamic dim in the file matches any declared size."""
    from runtime_py.modelio import FileTensor, first_disagreement
    from runtime_py.signature import GraphSpec, StateSpec, TensorSpec

    g = GraphSpec("encoder", (TensorSpec("x", (1, 8, 4)),), (TensorSpec("y", (1, 2)),), (StateSpec("h", (3, 1, 5)),))
    ins = [FileTensor("x", (1, 8, 4), "float32"), FileTensor("h", (3, 1, 5), "float32")]
    outs = [FileTensor("y", (1, 2), "float32"), FileTensor("h_next", (3, 1, 5), "float32")]
    assert first_disagreement(g, ins, outs, "m.ort") is None
    dyn = [FileTensor("x", (None, 8, None), "float32"), FileTensor("h", (3, None, 5), "float32")]
    assert first_disagreement(g, dyn, outs, "m.ort") is None
    cases = [
        ([ins[0], FileTensor("h", (3, 1), "float32")], outs, "state 'h' of graph 'encoder' is declared [3, 1, 5], "
                                                              "but m.ort has [3, 1]"),
        ([ins[0], FileTensor("h", (3, 1, 5), "int64")], outs, "state 'h' of graph 'encoder' is declared float32, "
                                                               "but m.ort holds int64"),
        ([ins[0]], outs, "declares state 'h' [3, 1, 5], but m.ort has no such input"),
        (ins + [FileTensor("t", (1,), "int64")], outs, "m.ort has input 't', which graph 'encoder' does not declare"),
        (ins, outs[:1], "declares state output 'h_next' [3, 1, 5], but m.ort has no such output"),
        (ins, [FileTensor("y", (1, 3), "float32"), outs[1]], "output 'y' of graph 'encoder' is declared [1, 2], "
                                                             "but m.ort has [1, 3]"),
    ]
    for file_in, file_out, phrase in cases:
        assert phrase in (first_disagreement(g, file_in, file_out, "m.ort") or ""), phrase
    # a LiteRT/CoreML file may hold a declared int64 as int32; ONNX Runtime may not
    gi = GraphSpec("decoder", (TensorSpec("y", (1, 2), "int64"),), (TensorSpec("d", (1, 4)),))
    y32, d = [FileTensor("y", (1, 2), "int32")], [FileTensor("d", (1, 4), "float32")]
    assert first_disagreement(gi, y32, d, "m.tflite", "tflite") is None
    assert "declared int64, but m.ort holds int32" in first_disagreement(gi, y32, d, "m.ort", "ort")


def test_allocation_budget_counts_before_numpy(bundle_copy):
    """The bound is max(64 MiB, the model files): a state just over it is
    refused, one just under loads (then fails the I/O check, a different line)."""
    from runtime_py.limits import MIN_BUDGET_BYTES

    floats = MIN_BUDGET_BYTES // 4 // 2  # float32; a state counts twice (itself and its _next)
    edit_manifest(bundle_copy, set_state_shape([2, 1, floats // 2 + 1]))
    with pytest.raises(ManifestError, match=r"one stream would allocate 64\.\d MiB.*at most 64\.0 MiB"):
        Bundle(bundle_copy)
    edit_manifest(bundle_copy, set_state_shape([2, 1, floats // 4]))  # half the budget: within it
    with pytest.raises(SessionError, match=r"state 'h' of graph 'encoder' is declared \[2, 1, 2097152\]"):
        ModelSession(bundle_copy)


# -- property: one field of a real manifest changed at a time -----------------------------------

INTS = st.sampled_from([-1, 0, 1, 2, 3, 4, 8, 16, 17, 32, 47, 80, 256, 400, 16000, 10 ** 6, 10 ** 12, 10 ** 30])
FLOATS = st.sampled_from([0.0, -1.0, 0.5, 1.0, 20.0, -400.0, 8000.0, 1e308, math.inf, -math.inf, math.nan])
JUNK = st.sampled_from([None, "", "x", [], {}, True, 1.5, "16", [1, 2]])
PATHS = st.sampled_from(["../outside", "/etc/passwd", "C:/x", "missing.bin", "", ".", "golden", "tokens.txt",
                         "README.md", "manifest.json", "golden/features.npy", "golden/encoder_inputs.npz",
                         "golden/../tokens.txt", "encoder.fp32.ort"])
NAMES = st.sampled_from(["x", "h", "c", "log_probs", "h_next", "c_next", "encoder", "decoder", "", "é h"])
WORDS = {"dtype": ["float32", "int64", "int32", "bool", "float16", "complex128", "float64", "int8"],
         "reset": ["utterance", "session", "never"], "kind": ["fbank", "mfcc", "raw", "spectrogram"],
         "window": ["povey", "hamming", "hanning", "rectangular"], "decoder": ["ctc", "transducer", "none", "beam"],
         "backend": ["ort", "onnx", "tflite", "coreml", "tensorrt"], "precision": ["fp32", "fp16", "int8", "bf16"],
         "normalisation": ["in-model", "none", "global"]}
PATH_KEYS = {"path", "tokens", "audio", "features", "transcript", "encoder"}  # golden.inputs.encoder is a path


def shape_values(old):
    """A shape changed the ways a hand edit or a bad tool changes one."""
    old = list(old) if isinstance(old, list) else []
    one_dim = st.tuples(st.integers(0, max(len(old) - 1, 0)), INTS).map(
        lambda iv: [iv[1] if i == iv[0] else d for i, d in enumerate(old)] if old else [iv[1]])
    return st.one_of(one_dim, st.just(old[:-1]), st.just(old + [1]), st.just(old[::-1]),
                     st.lists(INTS, max_size=4), JUNK)


def values_for(key, old):
    if key == "shape":
        return shape_values(old)
    if key in WORDS:
        return st.sampled_from(WORDS[key]) | JUNK
    if key == "name":
        return NAMES | st.text(max_size=4)
    if key in PATH_KEYS and isinstance(old, str):
        return PATHS
    if isinstance(old, bool):
        return st.booleans() | JUNK
    if isinstance(old, (int, float)) or key in ("initial", "batch_axis", "batch_groups"):
        return INTS | FLOATS | JUNK
    return JUNK | PATHS


def _walk(obj, prefix=()):
    yield prefix, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from _walk(v, prefix + (k,))


def fields(m: dict) -> dict[str, list[tuple]]:
    """The manifest's fields a client reads, by kind of mutation."""
    out: dict[str, list[tuple]] = {}
    for path, value in _walk(m):
        if not path or path[0] in ("tools", "proofs", "model", "parity_stream", "not_converted") or "doc" in path:
            continue
        key = next((k for k in reversed(path) if isinstance(k, str)), "")
        if isinstance(value, list) and key in ("graphs", "inputs", "outputs", "states", "artifacts", "files"):
            out.setdefault("count", []).append(path)
        if isinstance(value, (list, dict)) and key != "shape":
            continue
        kind = ("tensor" if path[:2] == ("signature", "graphs") and key in ("shape", "dtype", "name")
                and len(path) > 4 else
                "chunk" if key in ("chunk_frames", "shift_frames", "subsampling") else
                "frontend" if "frontend" in path else
                "reset" if "states" in path else
                "tokens" if key in ("vocab_size", "blank_id", "context_size", "decoder", "tokens") else
                "path" if key in PATH_KEYS else "other")
        out.setdefault(kind, []).append(path)
    return out


@st.composite
def mutations(draw, m: dict):
    """(kind, path, what, new manifest): one field of `m` changed."""
    table = fields(m)
    kind = draw(st.sampled_from(sorted(table)))
    path = draw(st.sampled_from(table[kind]))
    new = json.loads(json.dumps(m))
    parent = new
    for k in path[:-1]:
        parent = parent[k]
    old = parent[path[-1]]
    if kind == "count":
        items, i = old, draw(st.integers(0, max(len(old) - 1, 0)))
        what = draw(st.sampled_from(["drop", "duplicate", "empty"] if items else ["empty"]))
        parent[path[-1]] = (items[:i] + items[i + 1:] if what == "drop" else
                            items[:i + 1] + [json.loads(json.dumps(items[i]))] + items[i + 1:] if what == "duplicate"
                            else [])
        return kind, path, what, new
    key = next((k for k in reversed(path) if isinstance(k, str)), "")
    if kind == "other" and isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
        return kind, path, "deleted", new
    value = draw(values_for(key, old))
    assume(json.dumps(value) != json.dumps(old))
    parent[path[-1]] = value
    return kind, path, value, new


def check_outcome(tool: str, code: int, out: str, err: str) -> str:
    """Exactly one `error:` line and exit 2, or a pass; edge-verify may also
    fail a check (exit 1: `[x]` lines and FAILED, its documented outcome when
    the numbers change but the I/O still matches, e.g. a state's initial value)."""
    assert "Traceback" not in out + err, (tool, out, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if code == 2:
        assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], (tool, err)
        if tool == "verify":
            assert out == "", (tool, out)  # refused before any check line
        return "error"
    assert not errors, (tool, code, err)
    if code == 1 and tool == "verify":
        assert "  [x] " in out and out.strip().splitlines()[-1].startswith("FAILED: "), out
        return "failed"
    assert code == 0, (tool, code, out, err)
    return "pass"


@pytest.fixture(scope="module")
def mutable_bundle(tmp_path_factory):
    path, _ = cached_bundle("lstm")
    root = Path(shutil.copytree(path, tmp_path_factory.mktemp("mutated") / "bundle"))
    return root, json.loads((root / "manifest.json").read_text())


def run_both(root: Path, manifest: dict, wav: Path) -> dict:
    (root / "manifest.json").write_text(json.dumps(manifest))
    return {"verify": check_outcome("verify", *verify_main([str(root)])),
            "demo": check_outcome("demo", *demo_main([str(root), "--wav", str(wav), "--partials", "off"]))}


def one_field_changed(mutable_bundle, short_wav, data):
    root, valid = mutable_bundle
    kind, path, what, m = data.draw(mutations(valid), label="mutation")
    try:
        outcome = run_both(root, m, short_wav)
    finally:
        (root / "manifest.json").write_text(json.dumps(valid))
    event(f"{kind}: verify {outcome['verify']}, demo {outcome['demo']}")  # --hypothesis-show-statistics
    if kind == "tensor":  # the .ort file's I/O is fixed: any change to a declared tensor is refused
        assert outcome == {"verify": "error", "demo": "error"}, (path, what, outcome)


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=50, **SETTINGS)
@given(data=st.data())
def test_one_manifest_field_changed_is_one_error_line_or_a_pass(mutable_bundle, short_wav, data):
    one_field_changed(mutable_bundle, short_wav, data)


@pytest.mark.slow
@settings(max_examples=2000, **SETTINGS)
@given(data=st.data())
def test_one_manifest_field_changed_wide(mutable_bundle, short_wav, data):
    one_field_changed(mutable_bundle, short_wav, data)


def test_the_unchanged_bundle_passes_both(mutable_bundle, short_wav):
    """The baseline the property needs: without a change both tools pass."""
    root, valid = mutable_bundle
    assert run_both(root, valid, short_wav) == {"verify": "pass", "demo": "pass"}
    assert set(fields(valid)) >= {"tensor", "count", "chunk", "frontend", "reset", "tokens", "path", "other"}


def test_budget_is_exact_and_cannot_be_offset(mutable_bundle):
    """Exact integers (no float overflow for a 10^30 dim), and a negative
    field elsewhere (num_ceps of an fbank frontend, unused) does not pay for
    a huge state."""
    from runtime_py.limits import check_budget, human_bytes
    from runtime_py.signature import Signature, SignatureError

    d = json.loads(json.dumps(mutable_bundle[1]["signature"]))
    d["graphs"][0]["states"][0]["shape"] = [2, 1, 10 ** 30]
    d["frontend"]["num_ceps"] = -10 ** 40
    with pytest.raises(SignatureError, match=r"one stream would allocate over 2\^103 bytes, state 'h'"):
        check_budget(Signature.from_dict(d), model_bytes=10 ** 6)
    assert [human_bytes(n) for n in (512, 3 * 1024 ** 2, 4 * 10 ** 12)] == ["512 bytes", "3.0 MiB", "3.6 TiB"]
