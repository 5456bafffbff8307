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


def assert_kotlin_threads(kotlin: str) -> None:
    """The card's Kotlin sessionOptions: the thread count it is given through
    OrtSession.SessionOptions.setIntraOpNumThreads, ONNX Runtime's spinning left on as in the Python client
    (runtime_py.runners.ort_session_options), and the entry that turns it off named for busy cores."""
    from runtime_py.runners import SPINNING_OFF

    fn, = re.findall(r"^fun sessionOptions\(threads: Int = 1\): OrtSession\.SessionOptions = .*?^}", kotlin, re.M | re.S)
    assert "    setIntraOpNumThreads(threads)\n" in fn
    assert "addConfigEntry" not in fn and SPINNING_OFF[0] in kotlin
    assert "More threads go to the encoder's session only" in kotlin


def assert_swift_threads(swift: str) -> None:
    """The same in Swift: ORTSessionOptions' setIntraOpNumThreads(_:) (Objective-C `setIntraOpNumThreads:error:`)."""
    from runtime_py.runners import SPINNING_OFF

    fn, = re.findall(r"^func sessionOptions\(threads: Int32 = 1\) throws -> ORTSessionOptions \{.*?^}", swift,
                     re.M | re.S)
    assert "    try options.setIntraOpNumThreads(threads)\n" in fn
    assert "addConfigEntry" not in fn and SPINNING_OFF[0] in swift
    assert "sessionOptions: nil" not in swift


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
    # every session takes the one sessionOptions(threads): the encoder its default count, a transducer's
    # decoder and joiner (one row per call) one thread, as the Python client (runners.graph_threads)
    sessions = re.findall(r"createSession\(([^\n]*?)\)(?:  //[^\n]*)?$", kotlin, re.M)
    assert len(sessions) == len(sig.graphs), sessions
    assert sorted(s.rsplit(", ", 1)[1] for s in sessions) == sorted(
        "sessionOptions(1)" if g.name in ("decoder", "joiner") else "sessionOptions()" for g in sig.graphs), sessions
    assert_kotlin_threads(kotlin)
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
    # the thread count the card shows how to set: 2 threads get the client's options (ORT's spinning left on)
    # and the same outputs (fp32; only the order of a reduction's partial sums may change: same 1e-4)
    assert by_hand.count("threads = 1 ") == 1
    scope = {"chunks": chunks}
    exec(by_hand.replace("threads = 1 ", "threads = 2 "), scope)
    so = scope["so"]
    assert so.intra_op_num_threads == 2
    with pytest.raises(RuntimeError, match="allow_spinning"):  # no entry: ORT's default (spinning on)
        so.get_session_config_entry("session.intra_op.allow_spinning")
    assert np.abs(scope["res"][out] - last).max() < 1e-4


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


# -- cards that say what the bundle is and holds ----------------------------------------

@pytest.fixture(scope="module")
def vad_bundle(tmp_path_factory):
    """A raw-sample VAD (head none) built for rpi with ORT fp32 only."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from byom_models import declare_vad
    from targets.build import build_bundle

    return build_bundle(None, "rpi", tmp_path_factory.mktemp("vad-card") / "b", model=declare_vad(),
                        backends=[("ort", "fp32")], parity_chunks=20, stream_seconds=5)


def _card_as(bundle, target: str, not_converted=()):
    """The bundle's card as `target` would write it, with `not_converted`
    backends refused (their files absent), without building it again."""
    import json

    from targets.build import get_target
    from targets.modelcard import model_card

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["target"] = target
    manifest["not_converted"] = [{"backend": b, "precision": p, "reason": f"{b}: refused (test)"}
                                 for b, p in not_converted]
    return model_card(manifest, manifest["artifacts"], get_target(target), tokens=Bundle(bundle).tokens())


def test_a_vad_card_describes_samples_in_and_outputs_out(vad_bundle):
    card = _card_as(vad_bundle, "android", [("tflite", p) for p in ("fp32", "fp16", "int8")])
    assert "## What it computes" in card and "`speech_prob` [1, 1] float32" in card
    assert "576 samples at 16000 Hz" in card and "## Audio input" in card
    for wrong in ("tokens.txt", "Decoder:", "greedy", "fbank", "kaldi_native_fbank", "MFCC", "transcript",
                  "What it recognises", "sub-words", ".mlpackage", "tensorflow-lite Interpreter", "LiteRT (Kotlin)"):
        assert wrong not in card, wrong
    # the format that did not convert, and what the app loads instead
    assert "**Not converted: tflite fp32, fp16, int8 (no .tflite file).**" in card
    assert "The app loads `encoder.fp32.ort` with onnxruntime-android OrtSession instead" in card
    assert "Run with: `onnxruntime-android OrtSession`" in card


def test_kotlin_reads_every_output_at_its_own_rank(vad_bundle):
    """A [1, 1] output read as a 3-D array throws ClassCastException on the
    device: only a [1, frames, dim] output may be cast so."""
    for bundle in (vad_bundle, cached_bundle("conformer")[0]):
        kotlin = "\n".join(_blocks((bundle / "README.md").read_text(), "kotlin"))
        sig = Bundle(bundle).signature
        casts = re.findall(r'get\("(\w+)"\)\.get\(\) as OnnxTensor\)\.value as (Array<Array<FloatArray>>)', kotlin)
        for name, _ in casts:
            assert len(next(t for t in sig.graph("encoder").outputs if t.name == name).shape) == 3, name
        read = set(re.findall(r'\.get\("(\w+)"\)', kotlin))
        assert {t.name for t in sig.graph("encoder").outputs} <= read
    kotlin = "\n".join(_blocks((vad_bundle / "README.md").read_text(), "kotlin"))
    assert "Map<String, FloatArray>" in kotlin and '"speech_prob" to floats(it.get("speech_prob")' in kotlin
    assert "tokens.txt" not in kotlin and "CtcGreedy" not in kotlin


def test_an_ios_card_names_only_the_files_the_bundle_holds(vad_bundle):
    """CoreML did not convert: no .mlpackage named; the Swift runs the .ort file."""
    card = _card_as(vad_bundle, "ios", [("coreml", "fp16"), ("coreml", "fp32")])
    assert ".mlpackage" not in card.split("**Not converted")[0] and "MLModel(" not in card
    assert "ORTSession(env: env" in card and "on encoder.fp32.ort" in card
    assert "Run with: `onnxruntime-objc ORTSession`" in card
    swift = "\n".join(_blocks(card, "swift"))
    assert "ORTSession(env: env, modelPath: path, sessionOptions: sessionOptions())" in swift
    assert_swift_threads(swift)


def test_an_untrained_ctc_card_gives_its_own_vocabulary_not_the_command_words(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from byom_models import VOCAB, declare_time_major
    from targets.build import build_bundle
    from targets.cardkinds import scope_section

    out = build_bundle(None, "rpi", tmp_path / "tm", model=declare_time_major(), backends=[("ort", "fp32")],
                       parity_chunks=20, stream_seconds=2)
    card = (out / "README.md").read_text()
    assert f"The model's own vocabulary: {VOCAB} tokens in `tokens.txt`" in card
    for ours in ("command-word", "home no quieter enter", "words and nothing else", "espeak"):
        assert ours not in card, ours
    # its ios card: the rank-0 offset counter is a [1] array in the .mlpackage (Core ML has no rank 0)
    import json

    from targets.build import get_target
    from targets.modelcard import model_card
    manifest = json.loads((out / "manifest.json").read_text())
    arts = manifest["artifacts"] + [dict(manifest["artifacts"][0], path="encoder.fp32.mlpackage", backend="coreml")]
    ios = model_card(manifest, arts, get_target("ios"), tokens=Bundle(out).tokens())
    assert "offset (shape [] in manifest.json) is a [1] array" in ios and "MLModel(contentsOf" in ios
    sig = Bundle(out).signature
    model = {"source": "caller", "trained": False}
    placeholders = ["<blk>"] + [f"\u2581t{i}" for i in range(1, sig.vocab_size)]
    text = "\n".join(scope_section(model, sig, placeholders))
    assert "No vocabulary was declared" in text and "words" not in text.replace("spell words", "")
    # whole-word tokens of someone else's model: its words, but not our command-word claims
    text = "\n".join(scope_section(model, sig, ["<blk>"] + [f"\u2581w{i}" for i in range(1, sig.vocab_size)]))
    assert "**11 words and nothing else:** `w1`" in text
    assert "home no quieter enter" not in text and "espeak" not in text
