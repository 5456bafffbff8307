"""The app developer's card of an audio-in android/ios bundle (targets/appcard.py,
app_kotlin.py, app_swift.py, appdeps.py): the files to ship are files the
bundle holds, the Kotlin and Swift use the signature's names, shapes and
states and the client's own numbers, the decoder starts where the signature
says, and every library coordinate is one string. Kotlin and Swift cannot be
compiled here; these checks tie the generated text to the signature, and the
same loop runs in JavaScript in tests/test_js_example.py."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from runtime_py import vad
from runtime_py.audio_in import AudioInPlan
from runtime_py.manifest import Bundle
from runtime_py.stream import signature_tail_padding
from tests.bundle_fixtures import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def _blocks(card: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", card, re.S)


def _section(card: str, heading: str) -> str:
    start = card.index(heading + "\n")
    nxt = re.search(r"^## ", card[start + len(heading):], re.M)
    return card[start: start + len(heading) + (nxt.start() if nxt else len(card))]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Tiny seeded models built by the android and ios defaults (no --audio-in:
    the target's default makes them audio-in), ONNX Runtime only to stay fast:
    a CTC conformer for android and a transducer for ios."""
    from targets.build import build_bundle

    root = tmp_path_factory.mktemp("app-code")
    out = {}
    for family, target in (("conformer", "android"), ("transducer", "ios")):
        out[family] = Path(build_bundle(family, target, root / f"{family}-{target}", model=tiny_model(family),
                                        backends=[("ort", "fp32"), ("ort", "int8")], parity_chunks=8,
                                        stream_seconds=5))
    return out


def _card_with(bundle: Path, backend: str, precision: str) -> str:
    """The card as it reads when the bundle also holds `backend` files (a
    LiteRT or Core ML conversion is a slow test): entries copied from the ort
    fp32 ones, parity as a real build records it for that backend."""
    from targets.build import get_target
    from targets.modelcard import model_card

    m = json.loads((bundle / "manifest.json").read_text())
    suffix = {"tflite": ".tflite", "coreml": ".mlpackage"}[backend]
    parity = ({"verified": False, "reason": "CoreML runs on Apple devices only"} if backend == "coreml"
              else {"passed": True, "max_abs_diff": 1e-6, "tolerance": 1e-4, "chunks": 8})
    extra = [dict(a, path=a["path"].replace(".fp32.ort", f".{precision}{suffix}"), backend=backend,
                  precision=precision, parity=parity) for a in m["artifacts"] if a["path"].endswith(".fp32.ort")]
    return model_card(m, m["artifacts"] + extra, get_target(m["target"]), tokens=Bundle(bundle).tokens())


def test_android_and_ios_build_audio_in_by_default(bundles):
    from targets.build.plan import TARGETS, takes_audio

    for b in bundles.values():
        assert AudioInPlan.of(Bundle(b).signature) is not None
    assert [t for t in TARGETS.values() if t.audio_in] == [TARGETS["android"], TARGETS["ios"]]
    sig = tiny_model("conformer").signature()
    assert takes_audio(TARGETS["android"], None, sig) and not takes_audio(TARGETS["rpi"], None, sig)
    assert not takes_audio(TARGETS["android"], False, sig) and takes_audio(TARGETS["rpi"], True, sig)
    # what cannot take audio keeps its input without an error: a third-party ONNX model, raw samples, dither
    assert not takes_audio(TARGETS["ios"], None, sig, onnx=True)
    assert not takes_audio(TARGETS["ios"], None, replace(sig, frontend=replace(sig.frontend, dither=1.0)))
    assert not takes_audio(TARGETS["ios"], None, Bundle(bundles["conformer"]).signature)  # already audio-in


def test_ship_list_names_only_files_the_bundle_holds(bundles):
    for family, b in bundles.items():
        card = (b / "README.md").read_text()
        ship = _section(card, "## Ship these files")
        rows = re.findall(r"^\| `([^`]+)` \|", ship, re.M)
        sig = Bundle(b).signature
        # one model file per graph, the int8 ones (they passed parity), then manifest.json and tokens.txt
        assert rows == [f"{g.name}.int8.ort" for g in sig.graphs] + ["manifest.json", "tokens.txt"], rows
        assert all((b / r).is_file() for r in rows)
        named = set(re.findall(r"`([\w./-]+\.(?:ort|onnx|tflite|mlpackage|config|md|json|txt))`", ship))
        assert named and all((b / n).exists() for n in named), named - {n for n in named if (b / n).exists()}
        assert "**ONNX Runtime, int8**" in ship
        # the card is written before the manifest lists the files: what it derives is what the build wrote
        from targets.appcard import bundle_files

        m = json.loads((b / "manifest.json").read_text())
        on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
        assert bundle_files({k: v for k, v in m.items() if k != "files"}, m["artifacts"]) == on_disk


def test_a_format_that_cannot_run_here_is_not_the_default():
    """Core ML is the ios target's first format, but its files are only
    spec-checked on Linux: ONNX Runtime (verified) is the default, Core ML the alternative."""
    from targets.appcard import default_backend

    sig = _transducer_sig()
    arts = [{"path": f"{g.name}.{p}.{s}", "graph": g.name, "backend": b, "precision": p, "bytes": 1,
             "parity": ({"verified": False} if b == "coreml" else {"passed": True})}
            for g in sig.graphs for b, p, s in (("coreml", "fp16", "mlpackage"), ("ort", "int8", "ort"))]
    assert default_backend(("coreml", "ort"), sig, arts) == "ort"
    assert default_backend(("coreml",), sig, [a for a in arts if a["backend"] == "coreml"]) == "coreml"


def _transducer_sig() -> Signature:
    from edge.audio_in import audio_in

    return audio_in(tiny_model("transducer")).signature()


def _names_used(code: str) -> set[str]:
    """Every tensor name the code feeds or reads, in either language."""
    pats = [r'"(\w+)" to (?:x|y|e|d)\b', r'put\("(\w+)", ', r'\.get\("(\w+)"\)', r'mapOf\("(\w+)" to',
            r'feeds\["(\w+)"\]', r'out\["(\w+)"\]', r'featureValue\(for: "(\w+)"\)', r'\["(\w+)": ',
            r'outputNames: \["(\w+)"\]', r'Set\(\["(\w+)"\]']
    return {n for p in pats for n in re.findall(p, code)}


@pytest.mark.parametrize("family", ["conformer", "transducer"])
def test_the_loops_use_the_signatures_names_shapes_and_states(family, bundles):
    b = bundles[family]
    sig = Bundle(b).signature
    plan = AudioInPlan.of(sig)
    enc = sig.graph("encoder")
    names = {t.name for g in sig.graphs for t in (*g.inputs, *g.outputs)}
    other = "coreml" if family == "transducer" else "tflite"
    card = _card_with(b, other, "fp16" if other == "coreml" else "int8")
    lang = "swift" if family == "transducer" else "kotlin"
    blocks = _blocks(card, lang)
    assert len(blocks) == 3, len(blocks)  # shared, ONNX Runtime, LiteRT / Core ML
    shared, runtimes = blocks[0], blocks[1:]
    # the states come from manifest.json at run time; the shared doc lists them, so a rename shows here
    for s in enc.states:
        assert f"`{s.name}` [{', '.join(map(str, s.shape))}]" in shared, s.name
    for code in runtimes:
        used = _names_used(code)
        assert used and used <= names, used - names
        assert {enc.inputs[0].name, enc.outputs[0].name} <= used
        if sig.decoder == "transducer":
            assert {t.name for g in ("decoder", "joiner") for t in (*sig.graph(g).inputs, *sig.graph(g).outputs)} \
                <= used
        # every state allocated from manifest.json and `<name>_next` fed back as `<name>`
        assert '+ "_next"' in code and ('getJSONArray("states")' in code or "encoderStates(manifest)" in code)
        # the call's shape (LiteRT: its buffer's size)
        assert (", ".join(str(d) for d in enc.inputs[0].shape) in code.replace("L", "")
                or f"direct(4 * {plan.samples_per_call})" in code)
    # the call size, warmup, output layout: the signature's
    assert f"{plan.samples_per_call} samples" in shared and f"{plan.warmup_calls} call(s) only fill" in shared
    assert re.search(rf"calls >= {plan.warmup_calls}\)? \{{? ?(?:try )?search\.accept", shared)
    out = enc.outputs[0].shape
    assert f"[{out[1]}][{out[2]}]" in shared
    assert "yours to write" not in card and "@@" not in card


def _tail_padding_of(code: str):
    """The generated tailPadding, run in Python (integer arithmetic as in Kotlin/Swift)."""
    frames = re.search(r"frames\((?:m: Long|_ m: Int)\)(?:: Long =| -> Int \{) (.+?)(?: \}|  //)", code).group(1)
    steps = re.search(r"if \(f >= (\d+)\) \(f - \d+\) / (\d+) \+ 1|f >= (\d+) \? \(f - \d+\) / (\d+) \+ 1", code)
    c, s = [int(g) for g in steps.groups() if g]
    pad0 = int(re.search(r"var pad = (\d+)", code).group(1))
    hop = int(re.search(r"pad \+= (\d+)", code).group(1))
    ret = re.search(r"\(steps\(frames\(n \+ pad\)\) \+ (\d+)\) \* (\d+) - n", code)
    warm, n_call = int(ret.group(1)), int(ret.group(2))
    py = frames.replace("/", "//")
    py = re.sub(r"if \((.+?)\) 0L? else (.+)", r"0 if \1 else \2", py)
    py = re.sub(r"(.+?) \? 0 : (.+)", r"0 if \1 else \2", py)

    def frames_of(m):
        return eval(py, {"m": m})  # noqa: S307 - our own generated arithmetic

    def steps_of(f):
        return (f - c) // s + 1 if f >= c else 0

    def tail(n):
        pad = pad0
        while steps_of(frames_of(n + pad)) * s < frames_of(n):
            pad += hop
        return (steps_of(frames_of(n + pad)) + warm) * n_call - n

    return tail


@pytest.mark.parametrize("family", ["conformer", "transducer"])
def test_tail_padding_of_the_generated_code_is_the_clients(family, bundles):
    """The zeros an app appends at stop equal runtime_py's rule (which the
    golden files and the JavaScript example use), in both languages."""
    b = bundles[family]
    sig = Bundle(b).signature
    card = _card_with(b, "coreml", "fp16") if family == "transducer" else (b / "README.md").read_text()
    lang = "swift" if family == "transducer" else "kotlin"
    tail = _tail_padding_of(_blocks(card, lang)[0])
    for n in (1, 159, 160, 4799, 5120, 5121, 16000, 32000, 47999, 100000):
        assert tail(n) == signature_tail_padding(sig, n), n
    assert tail(32000) > 0 and (32000 + tail(32000)) % AudioInPlan.of(sig).samples_per_call == 0


def test_tail_padding_with_snip_edges_frames():
    """kaldi's other frame count (snip_edges=True: no frame reaches before
    sample 0), which no shipped model uses: the generated rule still equals the client's."""
    from targets.app_kotlin import kotlin_blocks
    from targets.app_swift import swift_blocks

    sig = _transducer_sig()
    old = AudioInPlan.of(sig)
    plan = AudioInPlan.for_features(replace(old.frontend, snip_edges=True), old.chunk_frames, old.shift_frames)
    sig = replace(sig, extra={**sig.extra, "audio_in": plan.record()})
    assert AudioInPlan.of(sig) == plan != old
    files = {"ort": {g.name: f"{g.name}.fp32.ort" for g in sig.graphs}}
    for code in (kotlin_blocks(sig, plan, files, None, "serving_default")["shared"],
                 swift_blocks(sig, plan, files, None)["shared"]):
        assert "snip_edges=true" in code
        tail = _tail_padding_of(code)
        for n in (1, 399, 400, 4799, 5120, 32000, 47999):
            assert tail(n) == signature_tail_padding(sig, n), n


def test_endpointing_numbers_are_the_clients():
    from targets.app_common import endpoint_numbers
    from targets.app_kotlin import kotlin_blocks
    from targets.app_swift import swift_blocks

    sig = _transducer_sig()
    plan = AudioInPlan.of(sig)
    files = {"ort": {g.name: f"{g.name}.int8.ort" for g in sig.graphs}}
    kotlin = kotlin_blocks(sig, plan, files, None, "serving_default")["shared"]
    swift = swift_blocks(sig, plan, files, None)["shared"]
    e = endpoint_numbers(16000)
    assert e["ON_DB"] == "-40.0" and vad.DEFAULT_THRESHOLD_DB == -40.0
    assert e["TRAILING"] * vad.DEFAULT_FRAME_MS == vad.DEFAULT_TRAILING_SILENCE_MS == 600
    for code in (kotlin, swift):
        assert f"db > {vad.DEFAULT_THRESHOLD_DB:.1f}" in code
        assert f"db < {vad.DEFAULT_THRESHOLD_DB - vad.DEFAULT_HYSTERESIS_DB:.1f}" in code
        for ms in (vad.DEFAULT_MIN_SPEECH_MS, vad.DEFAULT_MIN_SILENCE_MS):  # 6 and 15 frames of 10 ms
            assert re.search(rf"pending >= {round(ms / vad.DEFAULT_FRAME_MS)}\b", code), ms
        assert "silent >= 60" in code and "utterance >= 2000" in code and "idle >= 1000" in code


def test_the_transducer_starts_from_the_declared_decoder_start():
    """icefall's Zipformer starts from [-1, blank] (-1: no token, a zero
    embedding inside the decoder graph); a model without decoder_start from blanks."""
    from targets.app_kotlin import kotlin_blocks
    from targets.app_swift import swift_blocks

    sig = _transducer_sig()
    plan = AudioInPlan.of(sig)
    files = {"ort": {g.name: f"{g.name}.fp32.ort" for g in sig.graphs}}
    for s, kt, sw in ((sig, "longArrayOf(0L, 0L)", "[0, 0]"),
                      (replace(sig, decoder_start=(-1, sig.blank_id)), "longArrayOf(-1L, 0L)", "[-1, 0]")):
        assert s.start_context() == [int(t) for t in kt[len("longArrayOf("):-1].replace("L", "").split(", ")]
        k = kotlin_blocks(s, plan, files, None, "serving_default")["shared"]
        w = swift_blocks(s, plan, files, None)["shared"]
        assert f"start: LongArray = {kt}" in k and f"start: [Int64] = {sw}" in w


def test_library_coordinates_are_one_string_everywhere(bundles):
    from targets import appdeps
    from targets.build import get_target
    from targets.build.plan import list_targets

    pins = dict(re.findall(r"^(onnxruntime|ai-edge-litert)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    assert pins == appdeps.PINNED  # the fallback is the version the project installs
    for bundle, other, precision in ((bundles["conformer"], "tflite", "int8"), (bundles["transducer"], "coreml", "fp16")):
        card = _card_with(bundle, other, precision)
        found = {}
        for pat in (r"com\.microsoft\.onnxruntime:onnxruntime-android[:\w.<>-]*", r"com\.google\.ai\.edge\.litert:litert[:\w.<>-]*",
                    r"pod 'onnxruntime-objc'[^`)\n]*", r"onnxruntime-swift-package-manager[^`\n]*?version \d+(?:\.\d+)*"):
            hits = re.findall(pat, card)
            if hits:
                found[pat] = set(hits)
        assert found and all(len(v) == 1 for v in found.values()), found
        assert "tensorflow-lite" not in card and "<version>" not in card
        # the version is the one the bundle's files were checked with (manifest.json tools)
        m = json.loads((bundle / "manifest.json").read_text())
        for (t, _), lib in appdeps.LIBRARIES.items():
            if t == get_target(m["target"]).name and lib.tool is not None:
                v = m["tools"][lib.tool]
                assert not lib.gradle or f'implementation("{lib.gradle}:{v}")' in card, lib
                assert not lib.pod or f"pod '{lib.pod}', '{v}'" in card, lib
    assert "LiteRT Interpreter" in list_targets() and "tensorflow-lite" not in list_targets()


def test_a_pi_card_names_the_files_the_python_client_loads():
    from runtime_py.formats import preference_order
    from tests.bundle_fixtures import cached_bundle

    b, _ = cached_bundle("conformer")  # rpi, ort fp32 only
    ship = _section((b / "README.md").read_text(), "## Ship these files")
    named = re.findall(r"`([\w.]+\.(?:ort|onnx|tflite))`", ship)
    assert named == ["encoder.fp32.ort"] and (b / named[0]).is_file()
    assert preference_order()[0] == ("ort", "fp32")  # what ModelSession loads when asked for nothing
    assert "edge-demo . --mic" in ship and "Libraries" not in (b / "README.md").read_text()
