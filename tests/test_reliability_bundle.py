"""Issue 8, the bundle side: a bad manifest, tokens, symlinks or missing files
are refused with the field named; a property test that the manifest reader
loads or raises ManifestError, nothing else."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime_py.manifest import Bundle, ManifestError
from runtime_py.session import ModelSession, SessionError
from tests.bundle_fixtures import cached_bundle, speechlike

RATE = 16000
ORT = [("ort", "fp32")]

from tests.reliability_common import RATE, demo_main, one_error_line


@pytest.fixture()
def bundle_copy(tmp_path):
    path, _ = cached_bundle("lstm")
    return Path(shutil.copytree(path, tmp_path / "bundle"))


def edit_manifest(root: Path, change) -> None:
    m = json.loads((root / "manifest.json").read_text())
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _set(path, value):
    def change(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        if value is _DELETE:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return change


_DELETE = object()
MANIFEST_CASES = {
    "dotdot-artifact": (_set(["artifacts", 0, "path"], "../outside.onnx"), "leaves the bundle"),
    "absolute-tokens": (_set(["tokens"], "/etc/passwd"), "leaves the bundle"),
    "windows-drive": (_set(["tokens"], "C:/x/tokens.txt"), "leaves the bundle"),
    "dotdot-file": (_set(["files", 0, "path"], "golden/../../x"), "leaves the bundle"),
    "missing-field": (_set(["family"], _DELETE), "missing field 'family'"),
    "missing-artifact-field": (_set(["artifacts", 0, "sha256"], _DELETE), "manifest.artifacts[0]: missing field 'sha256'"),
    "wrong-type": (_set(["artifacts", 0, "bytes"], "12"), "manifest.artifacts[0].bytes: expected int, got str"),
    "files-not-a-list": (_set(["files"], {"a": 1}), "manifest.files: expected list"),
    "schema-version": (_set(["schema_version"], 2), "schema_version 2 is not 1; rebuild the bundle"),
    "schema-version-type": (_set(["schema_version"], "1"), "schema_version: expected int"),
    "unknown-backend": (_set(["artifacts", 0, "backend"], "tensorrt"), "backend 'tensorrt' not in"),
    "unknown-precision": (_set(["artifacts", 0, "precision"], "bf16"), "precision 'bf16' not in"),
    "unknown-graph": (_set(["artifacts", 0, "graph"], "joiner2"), "is not a graph of the signature"),
    "signature-broken": (_set(["signature", "graphs"], 7), "manifest.signature"),
    "not-an-object": (lambda m: m.clear() or m.update({"x": [1]}), "missing field 'schema_version'"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifest_is_refused_with_its_field(case, bundle_copy, tmp_path):
    change, phrase = MANIFEST_CASES[case]
    edit_manifest(bundle_copy, change)
    with pytest.raises(ManifestError) as e:
        Bundle(bundle_copy)
    assert phrase in str(e.value)
    wav = tmp_path / "a.wav"
    from runtime_py.audio import write_wav
    write_wav(wav, speechlike(0.3), RATE)
    code, out, err = demo_main([str(bundle_copy), "--wav", str(wav)])
    assert code == 2 and phrase in one_error_line(err) and out == ""


def test_invalid_json_and_non_object_manifest(bundle_copy):
    (bundle_copy / "manifest.json").write_text('{"schema_version": 1,')
    with pytest.raises(ManifestError, match="not valid JSON"):
        Bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="must be a JSON object"):
        Bundle(bundle_copy)


def test_symlink_pointing_outside_is_refused(bundle_copy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(f"t{i} {i}\n" for i in range(64)))
    tokens = bundle_copy / "tokens.txt"
    tokens.unlink()
    tokens.symlink_to(secret)
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        Bundle(bundle_copy)
    # a symlinked model file too
    m = json.loads((bundle_copy / "manifest.json").read_text())
    tokens.unlink()
    shutil.copy(cached_bundle("lstm")[0] / "tokens.txt", tokens)
    model = bundle_copy / m["artifacts"][0]["path"]
    outside = tmp_path / "model.ort"
    shutil.move(model, outside)
    model.symlink_to(outside)
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        Bundle(bundle_copy)
    # a symlink that stays inside the bundle is fine
    model.unlink()
    shutil.move(outside, bundle_copy / "real.ort")
    model.symlink_to(bundle_copy / "real.ort")
    ModelSession(bundle_copy)


@pytest.mark.parametrize("content, phrase", [
    (b"<blk> 0\nfoo\n", "line 2: expected 'symbol id'"),
    (b"<blk> 0\na 2\n", "without gaps"),
    (b"<blk> 0\na 0\n", "appears twice"),
    (b"<blk> 0\na \xc2\xb2\n", "expected 'symbol id'"),  # superscript two: isdigit() but not int()
    (b"<blk> 0\n\xff\xfe 1\n", "not UTF-8"),
    (b"<blk> 0\n", "has 1 tokens, the signature says"),
    (b" 0\n", "expected 'symbol id'"),
])
def test_malformed_tokens_txt(content, phrase, bundle_copy):
    tokens = bundle_copy / "tokens.txt"
    tokens.write_bytes(content)
    edit_manifest(bundle_copy, lambda m: [f.update(sha256=None) for f in []])  # manifest unchanged
    b = Bundle(bundle_copy, verify=False)
    b.files = [f for f in b.files if f["path"] != "tokens.txt"]  # skip the sha256 check: test the parser
    with pytest.raises(ManifestError, match=phrase):
        b.tokens()


def test_tokens_sha256_mismatch_is_refused(bundle_copy, tmp_path):
    tokens = bundle_copy / "tokens.txt"
    tokens.write_text(tokens.read_text().replace("<blk>", "<pad>", 1))
    with pytest.raises(ManifestError, match="tokens.txt is corrupted or was changed: sha256"):
        Bundle(bundle_copy)
    wav = tmp_path / "a.wav"
    from runtime_py.audio import write_wav
    write_wav(wav, speechlike(0.3), RATE)
    code, _, err = demo_main([str(bundle_copy), "--wav", str(wav)])
    assert code == 2 and "sha256" in one_error_line(err)


def test_listed_file_missing(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / m["artifacts"][0]["path"]).unlink()
    with pytest.raises(ManifestError, match="listed in the manifest but missing"):
        ModelSession(bundle_copy)


# -- property: the manifest reader raises ManifestError or loads, nothing else --------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=8) | st.sampled_from(["..", "/x", "tokens.txt", "ort", "fp32", "encoder", "a/../../b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def manifest_root(tmp_path_factory):
    path, _ = cached_bundle("lstm")
    root = Path(shutil.copytree(path, tmp_path_factory.mktemp("prop") / "bundle"))
    return root, json.loads((root / "manifest.json").read_text())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_manifest_mutations_load_or_raise_manifest_error(manifest_root, data):
    root, valid = manifest_root
    m = json.loads(json.dumps(valid))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(m) if p]
        if not paths:
            break
        where = data.draw(st.sampled_from(paths))
        parent = m
        for k in where[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(json_values)
    (root / "manifest.json").write_text(json.dumps(m))
    try:
        Bundle(root)
    except ManifestError:
        pass
    finally:
        (root / "manifest.json").write_text(json.dumps(valid))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values)
def test_random_json_manifests_raise_manifest_error(manifest_root, doc):
    root, valid = manifest_root
    (root / "manifest.json").write_text(json.dumps(doc))
    try:
        with pytest.raises(ManifestError):
            Bundle(root)
    finally:
        (root / "manifest.json").write_text(json.dumps(valid))


# -- issue 25: a manifest that disagrees with its model files --------------------------------
# One error line and exit 2 from edge-verify and edge-demo, nothing allocated first.

def verify_main(argv):
    from targets import verify as verify_cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = verify_cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    from runtime_py.audio import write_wav
    wav = tmp_path_factory.mktemp("wav") / "a.wav"
    write_wav(wav, speechlike(0.5), RATE)
    return wav


def set_state_shape(shape):
    return _set(["signature", "graphs", 0, "states", 0, "shape"], shape)


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


# == client inputs ==========================================================================
