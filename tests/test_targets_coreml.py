"""Core ML target: conversion and the spec checks possible on Linux.

Core ML cannot execute here, so there is no numeric parity: what is checked
is the contract (I/O names, shapes, dtypes, ML program, deployment target,
metadata), that a wrong expectation is caught, and reproducibility.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

pytest.importorskip("coremltools")

from runtime_py.signature import Signature  # noqa: E402
from targets import coreml as C  # noqa: E402
from test_families import build  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def conformer_fp16(tmp_path_factory):
    model = build("conformer")
    sig = model.signature()
    return model, sig, C.to_coreml(model, sig.graph("encoder"), sig, tmp_path_factory.mktemp("cm"), "fp16")


def test_conformer_encoder_spec(conformer_fp16):
    model, sig, path = conformer_fp16
    assert path.name == "encoder.fp16.mlpackage" and (path / "Manifest.json").is_file()
    info = C.inspect_mlpackage(path, sig.graph("encoder"))
    assert info["verified"] is False and info["reason"].startswith("CoreML cannot execute on Linux")
    assert info["spec_checks"]["deployment_target"] == "iOS16"
    assert [n for n, _, _ in info["spec_checks"]["inputs"]] == sig.graph("encoder").input_names
    # The streaming step's convolutions are an im2col matmul (subsampling) and
    # a gather-multiply-sum (depthwise), so no conv op is left (docs/exporting.md).
    assert {"softmax", "layer_norm", "matmul", "linear", "gather", "reduce_sum"} <= set(info["ops"]), info["ops"]
    assert "conv" not in info["ops"]
    assert "cast" in info["ops"]  # fp16 compute: casts between fp32 I/O and fp16 body


def test_fp16_census_counts_what_stays_float32(conformer_fp16):
    """The card's Core ML fp16 line is read from this census: a features-in
    conformer has no frontend ops, keeps its CTC log-softmax's log in float32
    (targets/coreml._fp16_op) and computes the rest in float16."""
    model, sig, path = conformer_fp16
    compute = C.inspect_mlpackage(path, sig.graph("encoder"))["spec_checks"]["compute"]
    assert compute["float16_ops"] > 50, compute  # the attention, feed-forward and convolution blocks
    assert compute["float32_frontend_ops"] == 0
    assert compute["float32_other_ops"].get("log", 0) >= 1, compute


def test_transducer_decoder_int64_input_is_int32(tmp_path):
    model = build("transducer")
    sig = model.signature()
    g = sig.graph("decoder")
    path = C.to_coreml(model, g, sig, tmp_path, "fp32")
    info = C.inspect_mlpackage(path, g)
    assert info["spec_checks"]["inputs"] == [("y", (1, 2), "INT32")]
    assert info["spec_checks"]["outputs"] == [("decoder_out", (1, 32), "FLOAT32")]
    assert "gather" in info["ops"]


def test_tampered_expectation_is_caught(conformer_fp16):
    model, sig, path = conformer_fp16
    g = sig.graph("encoder")
    wrong_x = dataclasses.replace(g.inputs[0], shape=(1, 32, 80))
    with pytest.raises(C.CoremlSpecError, match="inputs"):
        C.inspect_mlpackage(path, dataclasses.replace(g, inputs=(wrong_x,)))
    wrong_state = dataclasses.replace(g.states[2], shape=(3, 1, 8, 32))
    states = (*g.states[:2], wrong_state, *g.states[3:])
    with pytest.raises(C.CoremlSpecError):
        C.inspect_mlpackage(path, dataclasses.replace(g, states=states))


def test_metadata_and_reproducible_bytes(conformer_fp16, tmp_path):
    model, sig, path = conformer_fp16
    spec = C._load_spec(path)
    assert Signature.from_json(spec.description.metadata.userDefined[C.METADATA_KEY]) == sig
    assert spec.description.metadata.author and spec.description.metadata.shortDescription
    again = C.to_coreml(model, sig.graph("encoder"), sig, tmp_path, "fp16")
    assert C.mlpackage_sha256(again) == C.mlpackage_sha256(path)
    manifest = json.loads((path / "Manifest.json").read_text())
    assert manifest["rootModelIdentifier"] in manifest["itemInfoEntries"]
    # across processes too: the spec is in protobuf's deterministic form (maps sorted by key), which
    # coremltools' own save is not (its metadata map came out in hash order, different per process)
    from coremltools.proto import Model_pb2
    raw = (path / C.SPEC_FILE).read_bytes()
    parsed = Model_pb2.Model()
    parsed.ParseFromString(raw)
    assert len(parsed.description.metadata.userDefined) >= 3
    assert C.CONVERSION_DATE_KEY not in parsed.description.metadata.userDefined  # no build date in a bundle
    assert raw == parsed.SerializeToString(deterministic=True)


def test_a_rank0_counter_is_a_shape_1_array(tmp_path):
    """WeNet's offset counter is a rank-0 int64 state, which Core ML refuses
    ("Rank-0 (input None) is unsupported"): it goes in and out as [1]."""
    from byom_models import declare_time_major
    model = declare_time_major()
    sig = model.signature()
    g = sig.graph("encoder")
    assert next(s for s in g.states if s.name == "offset").shape == ()
    path = C.to_coreml(model, g, sig, tmp_path, "fp32")
    info = C.inspect_mlpackage(path, g)
    assert ("offset", (1,), "INT32") in info["spec_checks"]["inputs"]
    assert ("offset_next", (1,), "INT32") in info["spec_checks"]["outputs"]
    assert info["spec_checks"]["rank0_as_shape_1"] == ["offset", "offset_next"]
    assert "rank-0 offset, offset_next as shape [1]" in info["reason"]


def test_the_rank0_wrapper_computes_the_graph():
    """What is traced for Core ML: the graph with its scalars as [1], equal
    to the graph itself (Core ML cannot run here; this is the part that can)."""
    import numpy as np

    from byom_models import declare_time_major
    from edge.export import example_inputs
    model = declare_time_major()
    sig = model.signature()
    g = sig.graph("encoder")
    feeds = example_inputs(g, sig)
    feeds["offset"] = np.array(24, dtype=np.int64)
    args = [torch.from_numpy(feeds[n]) for n in g.input_names]
    with torch.no_grad():
        want = model.graph_module("encoder")(*args)
        got = C._scalars_as_rank_one(model.graph_module("encoder"), g)(
            *[a.reshape(C.coreml_shape(tuple(a.shape))) for a in args])
    names = g.output_names
    for n, w, o in zip(names, want, got):
        assert tuple(o.shape) == C.coreml_shape(tuple(w.shape)), n
        assert torch.equal(o.reshape(w.shape), w), n
    assert int(got[names.index("offset_next")][0]) == 32  # 24 + one chunk of 8
