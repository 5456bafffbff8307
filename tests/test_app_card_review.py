"""What an Android/iOS developer found reading two built cards (issue 21's
review), each pinned: the Swift imports the module Swift Package Manager
gives, declares no type that shadows a Swift standard one, gives every ONNX
Runtime session the same options and surfaces errors; the card's precision
notes, default-precision reason, Core ML float32 list, platform requirements
and endpointing prose come from the files and the code, not from prose that
can be false. Uses tests/test_app_code.py's tiny bundles (ORT only)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from runtime_py import vad
from runtime_py.audio_in import AudioInPlan
from runtime_py.manifest import Bundle
from tests.test_app_code import _blocks, _card_with, _section, _transducer_sig, bundles  # noqa: F401 (fixture)
from tests.test_snippets import assert_kotlin_threads, assert_swift_threads

# Names a Swift app target already has (Swift standard library, Foundation): a top-level type of ours with one of
# these names shadows it in the whole module (`protocol Encoder` breaks every Encodable).
SWIFT_TAKEN = {"Encoder", "Decoder", "Codable", "Encodable", "Decodable", "Error", "Result", "Sequence", "Collection",
               "Data", "URL", "Date", "Bundle", "Array", "Dictionary", "Set", "String", "Model", "Timer", "Stream",
               "Operation", "Notification", "Progress", "Measurement", "Unit"}


def _swift_files(sig=None):
    from targets.app_swift import swift_blocks

    sig = sig or _transducer_sig()
    plan = AudioInPlan.of(sig)
    files = {"ort": {g.name: f"{g.name}.int8.ort" for g in sig.graphs},
             "coreml": {g.name: f"{g.name}.fp16.mlpackage" for g in sig.graphs}}
    return swift_blocks(sig, plan, files, None)


def test_swift_imports_the_pod_or_the_swift_package_module(bundles):
    ort = _swift_files()["ort"]
    # CocoaPods' module, else the Swift package's: the SPM build has no module named onnxruntime_objc
    assert re.search(r"#if canImport\(onnxruntime_objc\)\nimport onnxruntime_objc.*\n#else\nimport OnnxRuntimeBindings"
                     r".*\n#endif", ort), ort[:400]
    assert not re.search(r"^import onnxruntime_objc$", ort, re.M)
    card = (bundles["transducer"] / "README.md").read_text()
    libs = _section(card, "## Libraries")
    assert "Swift Package Manager" in libs and "`OnnxRuntimeBindings`" in libs


def test_no_swift_type_shadows_a_standard_one():
    declared = set()
    for code in _swift_files().values():
        declared |= set(re.findall(r"^(?:final )?(?:protocol|class|struct|enum) (\w+)", code, re.M))
    assert {"SpeechEncoder", "Recognizer", "Endpointer"} <= declared
    assert not declared & SWIFT_TAKEN, declared & SWIFT_TAKEN


def test_every_ort_session_has_the_same_options_and_errors_reach_the_app():
    from targets.app_kotlin import kotlin_blocks

    blocks = _swift_files()
    ort = blocks["ort"]
    assert "sessionOptions: nil" not in ort
    # the encoder takes the options' thread count (1 by default); the decoder and the joiner one thread
    assert len(re.findall(r"sessionOptions: sessionOptions\(\)", ort)) == 1
    assert len(re.findall(r"sessionOptions: sessionOptions\(threads: 1\)", ort)) == 2
    assert_swift_threads(ort)  # a thread count, ORT's spinning left on, as in the Python client
    swift = "".join(blocks.values())
    assert "try?" not in swift  # an error is never dropped silently
    assert re.search(r"catch \{ onError\(error\) \}", blocks["shared"])
    sig = _transducer_sig()
    files = {"ort": {g.name: f"{g.name}.int8.ort" for g in sig.graphs},
             "tflite": {g.name: f"{g.name}.int8.tflite" for g in sig.graphs}}
    k = kotlin_blocks(sig, AudioInPlan.of(sig), files, None, "serving_default")
    sessions = re.findall(r"createSession\(([^\n]*)\)", k["ort"])
    assert len(sessions) == 3 and sum("sessionOptions()" in s for s in sessions) == 1, sessions
    assert sum("sessionOptions(1)" in s for s in sessions) == 2, sessions  # decoder, joiner: one thread
    assert_kotlin_threads(k["ort"])
    interpreters = re.findall(r"\bInterpreter\(", k["litert"])
    assert len(interpreters) == 1  # only inside `interpreter()`, which sets one thread
    assert "interface SpeechEncoder" in k["shared"]


def test_int8_note_is_what_the_manifest_records(bundles):
    """An audio-in encoder's int8 file has no calibrated Conv (its frontend
    stays float): the note must not say it has."""
    from targets.cardnotes import precision_note

    b = bundles["conformer"]
    m = json.loads((b / "manifest.json").read_text())
    arts = [a for a in m["artifacts"] if a["backend"] == "ort" and a["precision"] == "int8"]
    recs = [a["parity"]["int8_recipe"] for a in arts]
    note = next(line for line in (b / "README.md").read_text().splitlines() if line.startswith("- ort int8:"))
    assert "calibrated on speech" not in note
    for r in recs:
        for by_op in r["ops_quantised"].values():
            for op, n in by_op.items():
                assert f"{op.split('.')[-1]} x{n}" in note, (op, note)
    if all(r["calibration"] is None for r in recs):
        assert "none calibrated" in note
    static = dict(recs[0], calibration="shipped sample utterances", ops_quantised={"static": {"QLinearConv": 2}})
    forged = precision_note("ort", "int8", [dict(arts[0], parity={"int8_recipe": static})])
    assert "calibrated on shipped sample utterances" in forged and "QLinearConv x2 (static)" in forged


def test_default_precision_reason_uses_the_real_sizes():
    """The android conformer's fp16 .tflite is smaller than its int8 one
    (3,096,512 vs 3,171,208 bytes): int8's reason cannot be its size."""
    from targets.cardnotes import ship_reason

    arts = [{"path": f"encoder.{p}.tflite", "graph": "encoder", "backend": "tflite", "precision": p, "bytes": n}
            for p, n in (("fp16", 3096512), ("int8", 3171208), ("fp32", 5798372))]
    text = ship_reason("tflite", "int8", arts, {"encoder": "encoder.int8.tflite"})
    assert "smallest" not in text.replace("not because of the file size", "")
    assert "fp16 is smaller here" in text and "int8 3,171,208 bytes" in text and "fp16 3,096,512" in text
    arts[0]["bytes"] = 4000000
    assert "also the smallest file" in ship_reason("tflite", "int8", arts, {"encoder": "encoder.int8.tflite"})


def test_coreml_fp16_note_lists_what_the_package_keeps_in_float32():
    from targets.cardnotes import precision_note

    def art(g, compute):
        return {"graph": g, "backend": "coreml", "precision": "fp16",
                "parity": {"verified": False, "spec_checks": {"compute": compute}}}

    arts = [art("encoder", {"float16_ops": 25, "float32_frontend_ops": 24, "float32_other_ops": {"lstm": 2}}),
            art("joiner", {"float16_ops": 3, "float32_frontend_ops": 0, "float32_other_ops": {}})]
    note = precision_note("coreml", "fp16", arts)
    assert "28 ops compute in float16, 26 in float32" in note
    assert "fbank frontend (24 ops" in note and "lstm x2" in note and "log-softmax" not in note
    arts[1]["parity"]["spec_checks"]["compute"]["float32_other_ops"] = {"log": 1}
    assert "log-softmax (log x1" in precision_note("coreml", "fp16", arts)
    assert "not recorded" in precision_note("coreml", "fp16", [art("encoder", None)])


def test_platform_requirements_are_in_the_ship_section(bundles):
    android = _section(_card_with(bundles["conformer"], "tflite", "int8"), "## Ship these files")
    assert "minSdk 24" in android and "Kotlin 1.7" in android
    assert 'noCompress += "tflite"' in android
    ios_card = _card_with(bundles["transducer"], "coreml", "fp16")
    ios = _section(ios_card, "## Ship these files")
    assert "iOS 16 or newer" in ios and "NSMicrophoneUsageDescription" in ios
    # the code keeps to iOS 16: no AVAudioApplication (iOS 17) call
    assert not re.search(r"AVAudioApplication\.", "".join(_blocks(ios_card, "swift")))
    assert "AVAudioSession.sharedInstance().requestRecordPermission" in ios_card


def test_toolchain_references_say_where_they_live(bundles):
    """A stranger has the bundle, not the toolchain: every mention of its
    files or commands outside the Python example says it is in the toolchain."""
    ref = re.compile(r"runtime_py|docs/|examples/|edge-verify|edge-demo|edge-build|edge/")
    for b, other, precision in ((bundles["conformer"], "tflite", "int8"), (bundles["transducer"], "coreml", "fp16")):
        card = re.sub(r"```python\n.*?```", "", _card_with(b, other, precision), flags=re.S)
        bad = [line for line in card.splitlines() if ref.search(line) and "toolchain" not in line]
        assert not bad, bad


def _text(comment: str) -> str:
    return " ".join(re.sub(r"^\s*(/\*\*|\*/|\*)\s*", "", line).removesuffix("*/").strip()
                    for line in comment.splitlines()).split()


def test_endpointing_prose_is_the_codes_comment_and_true(bundles):
    from targets.app_common import endpoint_numbers, endpoint_sentences

    card = (bundles["conformer"] / "README.md").read_text()
    section = " ".join(_section(card, "## Endpointing and stop").split())
    sentences = endpoint_sentences(endpoint_numbers(16000))
    kotlin = _blocks(card, "kotlin")[0]
    doc = kotlin[kotlin.index("/** Energy per"):kotlin.index("class Endpointer")]
    assert _text(doc) == " ".join(sentences).split()  # the code's comment says what the card says
    assert " ".join(sentences) in section
    assert "at or below -40.0 dBFS is silence" in section.replace("one at or below it", "at or below -40.0 dBFS")
    assert "below -46.0 dBFS" in section and "fixed" in section and "never ends an utterance" in section
    # and it is true of the client the code mirrors: a -45 dBFS floor after speech ends nothing before the cut
    rate, rng = 16000, np.random.default_rng(0)
    tone = 0.1 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)  # 1 s at -23 dBFS
    noise = rng.standard_normal(25 * rate) * 10 ** (-45 / 20)
    ends = vad.Endpointer().update(np.concatenate([tone, noise]).astype(np.float32))
    assert ends and ends[0].reason == "max_length" and abs(ends[0].detected_s - vad.DEFAULT_MAX_UTTERANCE_S) < 0.2
    quiet = vad.Endpointer().update(np.concatenate([tone, noise * 10 ** (-10 / 20)]).astype(np.float32))  # -55 dBFS
    assert quiet and quiet[0].reason == "silence" and quiet[0].detected_s < 2.0


def test_tail_padding_prose_rounds_the_stream_not_the_zeros(bundles):
    from runtime_py.stream import signature_tail_padding

    b = bundles["conformer"]
    card = (b / "README.md").read_text()
    plan = AudioInPlan.of(Bundle(b).signature)
    n_call = plan.samples_per_call
    assert f"n + zeros is a multiple of {n_call}" in " ".join(_section(card, "## Endpointing and stop").split())
    pads = [signature_tail_padding(Bundle(b).signature, n) for n in (16000, 25000, 47999)]
    assert all((n + p) % n_call == 0 for n, p in zip((16000, 25000, 47999), pads))
    assert any(p % n_call for p in pads)  # the zeros themselves are not whole calls
    stream = _section(card, "## Streaming").split("\n\n")[1]  # its paragraph (the state tables follow)
    right = plan.chunk_frames - plan.shift_frames
    assert ("right context" in stream) == (right > 0), stream


def test_golden_cut_clip_has_no_trailing_silence(bundles):
    """golden/cut.wav: the golden utterance up to its last loud frame, with
    the reference's text of it (tail padding applied), so an app's test of
    the stop path fails when it skips the zeros."""
    from runtime_py.audio import read_wav
    from targets.golden import cut_after_speech

    for b in bundles.values():
        m = json.loads((b / "manifest.json").read_text())
        cut = m["golden"]["cut"]
        audio, rate = read_wav(b / m["golden"]["audio"])
        clip, _ = read_wav(b / cut["audio"])
        assert 0 < len(clip) < len(audio) and np.array_equal(clip, audio[: len(clip)])
        last = clip[-rate // 100:].astype(np.float64)
        assert 10 * np.log10((last ** 2).mean() + 1e-12) > vad.DEFAULT_THRESHOLD_DB  # ends inside speech
        assert (b / cut["transcript"]).is_file() and {cut["audio"], cut["transcript"]} <= {
            f["path"] for f in m["files"]}
        assert cut["audio"] in (b / "README.md").read_text()
    x = np.zeros(16000, np.float32)
    x[3000:5000] = 0.1  # 2000 loud samples, then silence
    assert len(cut_after_speech(x, 16000)) == 5120  # rounded up to the end of its 10 ms frame (32 x 160)
