"""The model card's code: the kaldi-native-fbank settings block reproduces
the bundle's golden features when run; the Kotlin uses only names the
signature declares and none of the helpers that never existed."""

from __future__ import annotations

import re

import numpy as np
import pytest

from runtime_py.audio import read_wav
from runtime_py.manifest import Bundle
from targets.golden import with_tail
from tests.bundle_fixtures import cached_bundle


def _blocks(card: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", card, re.S)


@pytest.mark.parametrize("family", ["conformer", "transducer"])
def test_card_fbank_block_reproduces_the_golden_features(family):
    pytest.importorskip("kaldi_native_fbank")
    bundle, _ = cached_bundle(family)
    card = (bundle / "README.md").read_text()
    block, = [b for b in _blocks(card, "python") if "kaldi_native_fbank" in b]
    audio, rate = read_wav(bundle / "golden" / "audio.wav")
    scope = {"samples": with_tail(audio, rate)}
    exec(block, scope)
    feats = np.array(scope["feats"], dtype=np.float32)
    golden = np.load(bundle / "golden" / "features.npy")
    assert feats.shape == golden.shape
    diff = np.abs(feats - golden)
    # float32 rounding only (a few of 16000 values reach 4e-3, in near-empty mel bins of loud
    # frames); one wrong setting (preemphasis 0.96, no DC removal, another window or mel
    # range) moves the 99.9th percentile to 0.6-7
    assert np.percentile(diff, 99.9) < 1e-3 and diff.max() < 1e-2


@pytest.mark.parametrize("family", ["conformer", "lstm", "transducer"])
def test_card_kotlin_uses_the_signatures_names_and_real_apis(family):
    bundle, _ = cached_bundle(family)
    card = (bundle / "README.md").read_text()
    kotlin = "\n".join(_blocks(card, "kotlin"))
    for missing in ("cloneTensor", "initialStatesFromManifest", "stateNames", "decode("):
        assert missing not in kotlin, missing
    sig = Bundle(bundle).signature
    inputs = {t.name for g in sig.graphs for t in g.inputs}
    outputs = {t.name for g in sig.graphs for t in g.outputs}
    fed = set(re.findall(r'"(\w+)" to (?:x|y|e|d)\b', kotlin)) | set(re.findall(r'\(\"(\w+)\" to x\)', kotlin))
    read = set(re.findall(r'\.get\("(\w+)"\)', kotlin))
    assert fed and fed <= inputs, fed - inputs
    assert read and read <= outputs, read - outputs
    assert '+ "_next"' in kotlin and "session.run(states + (" in kotlin  # states by name, *_next fed back
    if sig.decoder == "transducer":
        assert {"decoder_out", "logits"} <= read and "TransducerGreedy" in kotlin
    else:
        assert "CtcGreedy" in kotlin and "TransducerGreedy" not in kotlin


def test_card_explains_required_operators_config():
    bundle, _ = cached_bundle("conformer")
    card = (bundle / "README.md").read_text()
    assert "### required_operators.config" in card and "--include_ops_by_config required_operators.config" in card


@pytest.mark.parametrize("family", ["conformer", "lstm"])
def test_card_python_state_loop_reproduces_the_golden_outputs(family, monkeypatch):
    """The card's by-hand ONNX Runtime loop, run as written in the bundle folder."""
    bundle, _ = cached_bundle(family)
    card = (bundle / "README.md").read_text()
    block, = [b for b in _blocks(card, "python") if "by hand" in b]
    by_hand = block[block.index("import json"):]
    sig = Bundle(bundle).signature
    x, out = sig.graph("encoder").inputs[0].name, sig.graph("encoder").outputs[0].name
    with np.load(bundle / "golden" / "encoder_inputs.npz") as z:
        chunks = [z[k] for k in sorted(z.files)]
    with np.load(bundle / "golden" / "encoder_outputs.npz") as z:
        last = z[f"{out}_{len(chunks) - 1:04d}"]
    monkeypatch.chdir(bundle)
    scope = {"chunks": chunks}
    exec(by_hand, scope)
    assert np.abs(scope["res"][out] - last).max() < 1e-4  # states carried through every chunk
    assert x in by_hand


@pytest.mark.parametrize("family", ["conformer", "transducer"])
def test_card_litert_kotlin_for_a_bundle_with_tflite_files(family):
    """An android bundle's card (built here from the ort bundle's manifest with
    .tflite entries added: the conversion itself is a slow test)."""
    import json

    from runtime_py.backends import TFLITE_SIGNATURE
    from targets.build import get_target
    from targets.modelcard import model_card

    bundle, _ = cached_bundle(family)
    manifest = json.loads((bundle / "manifest.json").read_text())
    arts = manifest["artifacts"] + [dict(a, path=a["path"].replace(".ort", ".tflite"), backend="tflite")
                                    for a in manifest["artifacts"]]
    card = model_card(manifest, arts, get_target("android"), tokens=Bundle(bundle).tokens())
    assert "### Android: LiteRT (Kotlin)" in card
    kotlin, = [b for b in _blocks(card, "kotlin") if "org.tensorflow.lite.Interpreter" in b]
    assert f'interpreter.runSignature(inputs, outputs, "{TFLITE_SIGNATURE}")' in kotlin
    enc = Bundle(bundle).signature.graph("encoder")
    assert f'put("{enc.inputs[0].name}", x)' in kotlin and f'put("{enc.outputs[0].name}", out.rewind())' in kotlin
    assert 'put(k + "_next", b.rewind())' in kotlin and "encoder.fp32.tflite" in kotlin
