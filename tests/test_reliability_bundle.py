"""Issue 8, the bundle side: a bad manifest, tokens, symlinks or missing files
are refused with the field named; a property test that the manifest reader
loads or raises ManifestError, nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from runtime_py.manifest import Bundle, ManifestError
from runtime_py.session import ModelSession
from tests.bundle_fixtures import cached_bundle, speechlike

RATE = 16000
ORT = [("ort", "fp32")]

from tests.reliability_common import (DELETE, RATE, bundle_copy, demo_main, edit_manifest,  # noqa: F401 (a fixture)
                                      one_error_line, set_field)


MANIFEST_CASES = {
    "dotdot-artifact": (set_field(["artifacts", 0, "path"], "../outside.onnx"), "leaves the bundle"),
    "absolute-tokens": (set_field(["tokens"], "/etc/passwd"), "leaves the bundle"),
    "windows-drive": (set_field(["tokens"], "C:/x/tokens.txt"), "leaves the bundle"),
    "dotdot-file": (set_field(["files", 0, "path"], "golden/../../x"), "leaves the bundle"),
    "missing-field": (set_field(["family"], DELETE), "missing field 'family'"),
    "missing-artifact-field": (set_field(["artifacts", 0, "sha256"], DELETE), "manifest.artifacts[0]: missing field 'sha256'"),
    "wrong-type": (set_field(["artifacts", 0, "bytes"], "12"), "manifest.artifacts[0].bytes: expected int, got str"),
    "files-not-a-list": (set_field(["files"], {"a": 1}), "manifest.files: expected list"),
    "schema-version": (set_field(["schema_version"], 2), "schema_version 2 is not 1; rebuild the bundle"),
    "schema-version-type": (set_field(["schema_version"], "1"), "schema_version: expected int"),
    "unknown-backend": (set_field(["artifacts", 0, "backend"], "tensorrt"), "backend 'tensorrt' not in"),
    "unknown-precision": (set_field(["artifacts", 0, "precision"], "bf16"), "precision 'bf16' not in"),
    "unknown-graph": (set_field(["artifacts", 0, "graph"], "joiner2"), "is not a graph of the signature"),
    "signature-broken": (set_field(["signature", "graphs"], 7), "manifest.signature"),
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


# == client inputs ==========================================================================
