"""edge-eval's backend rows: the torch-free client on a bundle scores exactly
like the PyTorch streaming path on the same audio (fp32), so a WER table
across backends compares models, not decoding pipelines."""

from __future__ import annotations

import pytest

from edge.data.corpus import tokens as corpus_tokens
from edge.evaluate import align_errors, client_decode_fn, evaluate, runnable_artifacts, streaming_decode_fn
from tests.bundle_fixtures import cached_bundle, speechlike


def test_align_errors_counts():
    assert align_errors("a b c".split(), "a x c d".split()) == {"sub": 1, "del": 0, "ins": 1}
    assert align_errors("a b".split(), []) == {"sub": 0, "del": 2, "ins": 0}


@pytest.mark.parametrize("family", ["lstm", "transducer"])
def test_client_rows_equal_pytorch_streaming(family):
    path, model = cached_bundle(family)
    tokens = corpus_tokens()
    assert len(tokens) == model.signature().vocab_size
    utts = [{"audio": speechlike(1.0 + 0.3 * i, seed=i), "text": "one two"} for i in range(4)]
    ref = evaluate(streaming_decode_fn(model, tokens), utts)
    assert runnable_artifacts(path) == [("ort", "fp32")]
    got = evaluate(client_decode_fn(path, "ort", "fp32"), utts)
    assert [h["hyp"] for h in got["hypotheses"]] == [h["hyp"] for h in ref["hypotheses"]]
    assert any(h["hyp"] for h in ref["hypotheses"]), "an empty decode would prove nothing"
    assert got["wer"] == ref["wer"]
