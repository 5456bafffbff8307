"""The app developer's part of a model card: which files go in the app (one
list, for the default choice), the libraries and versions, the endpointing
numbers and what to do at stop, and, for an audio-in bundle on android or
ios, the whole loop from microphone PCM to text in Kotlin and Swift
(targets/app_kotlin.py, targets/app_swift.py). Every file named is one the
bundle holds; every number comes from the signature or the client's own
constants."""

from __future__ import annotations

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature
from runtime_py.stream import TAIL_PADDING_S, signature_tail_padding

from . import appdeps
from .app_common import endpoint_numbers, endpoint_sentences, loop_numbers, tail_sentences
from .cardnotes import ship_reason

# Which precision of a format an app ships, best first: int8 on a phone CPU (the smallest and fastest file,
# docs/int8.md "Which to pick"), fp16 for Core ML (the Neural Engine computes in fp16); fp32 when those fail.
PREFERRED = {"tflite": ("int8", "fp32", "fp16"), "ort": ("int8", "fp32"), "coreml": ("fp16", "fp32"),
             "onnx": ("fp32",)}
BACKEND_WORDS = {"tflite": "LiteRT", "ort": "ONNX Runtime", "coreml": "Core ML", "onnx": "ONNX Runtime (.onnx)"}


def _passed(a: dict) -> bool:
    p = a["parity"]
    return bool(p.get("passed")) and p.get("quantized_ops") != 0


def _verified(a: dict) -> bool:
    return a["parity"].get("verified") is not False


def files_by_backend(sig: Signature, artifacts: list[dict]) -> dict[str, dict[str, str]]:
    """backend -> graph -> the file an app ships, for every backend whose
    files cover every graph: the preferred precision that passed parity (or
    was not run here), else fp32."""
    out = {}
    for backend, order in PREFERRED.items():
        chosen = {}
        for g in sig.graphs:
            held = {a["precision"]: a for a in artifacts if a["backend"] == backend and a["graph"] == g.name}
            pick = next((held[p] for p in order if p in held and (_passed(held[p]) or not _verified(held[p]))),
                        None)
            if pick is not None:
                chosen[g.name] = pick["path"]
        if len(chosen) == len(sig.graphs):
            out[backend] = chosen
    return out


def default_backend(target_order: tuple[str, ...], sig: Signature, artifacts: list[dict]) -> str | None:
    """The first of the target's formats whose chosen files passed parity on
    this host; a format that cannot run here (Core ML) only when none did."""
    files = files_by_backend(sig, artifacts)
    by_path = {a["path"]: a for a in artifacts}
    ordered = [b for b in target_order if b in files]
    verified = [b for b in ordered if all(_verified(by_path[p]) for p in files[b].values())]
    return (verified or ordered or [None])[0]


def bundle_files(manifest: dict, artifacts: list[dict]) -> set[str]:
    """Every file the bundle holds. The card is written before the manifest's
    `files` list is (targets/build/assemble.py), so without it they are
    derived as the build writes them: the card, tokens, golden files, and
    required_operators.config beside .ort files."""
    held = {a["path"] for a in artifacts} | {"manifest.json", "README.md"}
    if manifest.get("files"):
        return held | {e["path"] for e in manifest["files"]}
    golden = manifest.get("golden") or {}
    paths = [golden.get(k) for k in ("audio", "features", "transcript")]
    paths += [*(golden.get("cut") or {}).values()]
    paths += [*(golden.get("inputs") or {}).values(), *(golden.get("outputs") or {}).values()]
    held |= {p for p in paths if isinstance(p, str)}
    if manifest.get("tokens"):
        held.add(manifest["tokens"])
    if any(a["backend"] == "ort" for a in artifacts):
        held.add("required_operators.config")
    return held


def ship_section(manifest: dict, artifacts: list[dict], target_name: str, target_order: tuple[str, ...]) -> list[str]:
    sig = Signature.from_dict(manifest["signature"])
    files = files_by_backend(sig, artifacts)
    backend = default_backend(target_order, sig, artifacts)
    if backend is None:
        return []
    held = bundle_files(manifest, artifacts)
    by_path = {a["path"]: a for a in artifacts}
    chosen = files[backend]
    out = ["## Ship these files", ""]
    if target_name == "rpi":
        return out + _pi_files(sig, artifacts, held)
    words = BACKEND_WORDS[backend]
    precision = by_path[chosen["encoder"]]["precision"]
    others = [b for b in target_order if b in files and b != backend]
    out += [f"Default for {target_name}: **{words}, {precision}**, the first of this target's formats "
            f"({', '.join(BACKEND_WORDS[b] for b in target_order if b in files)}) whose files passed their parity check on this "
            f"host; " + ship_reason(backend, precision, [a for a in artifacts if a["backend"] == backend],
                                    chosen) + " Put these in the app:",
            "", "| file | why |", "|---|---|"]
    for graph, path in chosen.items():
        out.append(f"| `{path}` | the {graph} graph ({by_path[path]['bytes']} bytes)"
                   + (": PCM in, " + sig.graph(graph).outputs[0].name + " out" if graph == "encoder" and
                      AudioInPlan.of(sig) else "") + " |")
    out.append("| `manifest.json` | the code reads every state's name, shape, dtype, initial value and reset scope "
               "from it |")
    if "tokens.txt" in held and sig.decoder != "none":
        out.append("| `tokens.txt` | token id -> text |")
    shipped = {*chosen.values(), "manifest.json"} | ({"tokens.txt"} if sig.decoder != "none" else set())
    rest = sorted(p for p in held if p not in shipped)
    model_rest = [p for p in rest if p in by_path]
    out += ["", "Not for the app: " + ", ".join(
        ([f"the other model files ({', '.join(f'`{p}`' for p in model_rest)})"] if model_rest else [])
        + (["`README.md` (this card)"] if "README.md" in held else [])
        + (["`golden/` (your integration test: feed `golden/audio.wav` and compare, see Golden check)"]
           if any(p.startswith("golden/") for p in held) else [])
        + (["`required_operators.config` (only for a custom-built ONNX Runtime)"]
           if "required_operators.config" in held else [])) + ".", ""]
    for b in others:
        out.append(f"With {BACKEND_WORDS[b]} instead: " + ", ".join(f"`{p}`" for p in files[b].values())
                   + " in place of " + ", ".join(f"`{p}`" for p in chosen.values())
                   + (" (spec-checked only: Core ML cannot run on Linux; run the golden check on a Mac or device "
                      "first)" if any(not _verified(by_path[p]) for p in files[b].values()) else "")
                   + "; its loop is below too.")
    return out + ["", *platform_lines(target_name, files, artifacts)]


def platform_lines(target_name: str, files: dict[str, dict[str, str]], artifacts: list[dict]) -> list[str]:
    """What the app's project needs for the code below, whichever runtime it ships."""
    if target_name == "android":
        lines = ["Android project: **minSdk 24** (the LiteRT 2.x libraries require it, and the ONNX Runtime code reads "
                 "`OrtSession.Result.get(name)`, a `java.util.Optional`, API 24); **Kotlin 1.7 or newer** (the code "
                 "uses the non-null `maxBy`); the `RECORD_AUDIO` permission in the manifest, granted at run time."]
        if "tflite" in files:
            lines += ["", "For LiteRT, in `build.gradle.kts`: `android { androidResources { noCompress += \"tflite\" } }` "
                         "(Android Gradle Plugin 8): `.tflite` assets must be stored uncompressed in the APK, or "
                         "`mapped()` below cannot memory-map them (`openFd` fails on a compressed asset)."]
        return lines + [""]
    if target_name == "ios":
        from .coreml import DEPLOYMENT_TARGET, SPEC_VERSIONS

        version = DEPLOYMENT_TARGET.removeprefix("iOS")
        return [f"iOS project: **iOS {version} or newer** (the `.mlpackage` files are ML programs for "
                f"{DEPLOYMENT_TARGET}, Core ML specification {SPEC_VERSIONS[DEPLOYMENT_TARGET]}; the Swift below uses "
                f"no newer API: microphone permission through `AVAudioSession.requestRecordPermission`, not iOS "
                f"17's `AVAudioApplication`); `NSMicrophoneUsageDescription` in Info.plist.", ""]
    return []


def _pi_files(sig: Signature, artifacts: list[dict], held: set[str]) -> list[str]:
    """The Pi runs the Python client on the whole folder; say which files it
    loads when asked for nothing (runtime_py.formats.preference_order)."""
    from runtime_py.formats import preference_order

    pairs = [(b, p) for b, p in preference_order()
             if all(any(a["backend"] == b and a["precision"] == p and a["graph"] == g.name for a in artifacts)
                    for g in sig.graphs)]
    if not pairs:
        return []
    b, p = pairs[0]
    files = [a["path"] for g in sig.graphs for a in artifacts
             if a["backend"] == b and a["precision"] == p and a["graph"] == g.name]
    other = [f"`--backend {ob}:{op}`" for ob, op in pairs[1:]]
    tokens = "`tokens.txt`, " if "tokens.txt" in held and sig.decoder != "none" else ""
    return [f"A Raspberry Pi runs the Python client on this folder as it is (copy it whole): `edge-demo . --mic`, "
            f"or `runtime_py.recognizer.StreamingRecognizer` in your code. It reads `manifest.json`, {tokens}and "
            f"by default {BACKEND_WORDS[b]} {p} (" + ", ".join(f"`{f}`" for f in files) + ")"
            + (f"; {' or '.join(other)} picks another file of the folder (docs/int8.md: which to pick)"
               if other else "") + ".", ""]


def libraries_section(manifest: dict, artifacts: list[dict], target_name: str) -> list[str]:
    backends = sorted({a["backend"] for a in artifacts})
    lines = appdeps.coordinates(target_name, backends, manifest.get("tools"))
    if not lines:
        return []
    return ["## Libraries", "", *lines, "",
            "How these were checked: the `.ort`/`.onnx`/`.tflite` files ran on this build host (Linux) under those "
            "Python releases, against PyTorch (the parity column above). The Kotlin and Swift below are generated "
            "from `manifest.json`'s signature and checked against it by the project's tests (every name, shape, "
            "state and number); they were not compiled or run here (no Android or iOS toolchain). The same state "
            "loop in JavaScript (`examples/js/` in the toolchain's repository, onnxruntime-node, the API of "
            "onnxruntime-react-native) runs in the toolchain's test suite on bundles like this one.", ""]


def endpointing_section(sig: Signature) -> list[str]:
    """What the project's client does, in numbers (the same sentences as the
    code's comments: targets/app_common.py), and what an app does at stop."""
    rate = sig.frontend.sample_rate
    e = endpoint_numbers(rate)
    plan = AudioInPlan.of(sig)
    two_s = signature_tail_padding(sig, 2 * rate)
    by_scope: dict[str, list[str]] = {}
    for g in sig.graphs:
        for s in g.states:
            by_scope.setdefault(s.reset, []).append(f"`{s.name}`")
    resets = "; ".join(f"scope `{k}`: {', '.join(v)}" for k, v in sorted(by_scope.items())) or "no states"
    if plan:
        zeros = " ".join(tail_sentences(loop_numbers(sig, plan)))
    else:
        zeros = (f"Zeros after an utterance: at least {TAIL_PADDING_S:g} s ({int(round(TAIL_PADDING_S * rate))} "
                 f"samples), more until the last real frame lands in a complete encoder chunk (window "
                 f"{sig.frontend.frame_length} samples, right context {sig.right_context} frames).")
    return ["## Endpointing and stop", "",
            "What the toolchain's own client does (`runtime_py/vad.py` in the toolchain's repository, the defaults "
            "of its `edge-demo`), and what `Endpointer` in the code below does: " + " ".join(endpoint_sentences(e))
            + " The VAD only decides when an utterance ends: every sample goes to the model.", "",
            f"At an endpoint, and when the user stops the microphone: {zeros} For 2 s of audio ({2 * rate} samples) "
            f"that is {two_s} samples ({two_s / rate:.2f} s). Without them the last word never reaches the output "
            "(`golden/cut.wav` is the golden utterance cut right after its last word, to test this). Then take the text and "
            f"reset: every state whose reset scope is `utterance` goes back to its initial value ({resets}), and the "
            "decoder to its start.", ""]


__all__ = ["default_backend", "endpointing_section", "files_by_backend", "libraries_section", "ship_section"]
