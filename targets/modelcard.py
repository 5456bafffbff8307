"""The bundle's README.md, generated from the manifest (never hand-written,
so it cannot drift from the files)."""

from __future__ import annotations

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature
from . import appcard, cardkinds
from .loads import instead, not_converted_text, runtime_line
from .snippets import fbank_blocks, kotlin_litert, kotlin_ort
from .cardnotes import FIXED_NOTES, precision_note


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _shape(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def _parity_cell(p: dict) -> str:
    if p.get("verified") is False:
        return "not run: " + p.get("reason", "").split(";")[0]
    mark = "pass" if p.get("passed") else "FAILED"
    if p.get("quantized_ops") == 0:
        return f"{mark}: int8 quantised nothing, the file is fp32"
    if p.get("judged_by") == "relative_error":
        return (f"{mark}: relative error {p['relative_error']:.2e} <= {p['relative_error_bar']:g}, cosine "
                f"{p['cosine']:.4f}, {p['chunks']} chunks ({p['why'].split(',')[0]})")
    if p.get("tolerance") is None:
        return (f"{mark}: decoded tokens agree {p['decoded_agreement']:.3f} (bar {p['agreement_bar']}), "
                f"max abs diff {p['max_abs_diff']:.2e}, {p['chunks']} chunks")
    return f"{mark}: max abs diff {p['max_abs_diff']:.2e} <= {p['tolerance']:g}, {p['chunks']} chunks"


def _stream_sentence(st: dict) -> str:
    from .proofs import stream_text

    text = stream_text(st)
    text = text[0].upper() + text[1:] + " (ONNX Runtime, fp32)."
    if not st["passed"]:
        text += (" The reference client ends an utterance (resetting its states) before that; an app must do the "
                 "same.")
    return text


def _app_code(sig: Signature, target: str, artifacts: list[dict], tools: dict | None) -> list[str]:
    """An audio-in recogniser on a phone: the whole loop from microphone PCM
    to text in the platform's language, one block per runtime."""
    from runtime_py.backends import TFLITE_SIGNATURE

    from .app_kotlin import kotlin_blocks
    from .app_swift import swift_blocks

    plan = AudioInPlan.of(sig)
    files = appcard.files_by_backend(sig, artifacts)
    if target == "android":
        k = kotlin_blocks(sig, plan, files, tools, TFLITE_SIGNATURE)
        heads = {"ort": "### Android: ONNX Runtime (Kotlin)", "litert": "### Android: LiteRT (Kotlin)"}
        first = ["### Android (Kotlin): shared by both runtimes",
                 "One file of your app (any package); the block of the runtime you ship goes in a second file of the "
                 "same package."]
    else:
        k = swift_blocks(sig, plan, files, tools)
        heads = {"ort": "### iOS: ONNX Runtime (Swift)", "coreml": "### iOS: Core ML (Swift)"}
        first = ["### iOS (Swift): shared by both runtimes",
                 "One file of your app target; the block of the runtime you ship goes in a second file."]
    parts = [*first, k["shared"]]
    for key, head in heads.items():
        if key in k:
            parts += [head, k[key]]
    return parts


def _snippets(sig: Signature, target: str, artifacts: list[dict], tools: dict | None = None) -> str:
    if AudioInPlan.of(sig) is not None and sig.decoder in ("ctc", "transducer") and target in ("android", "ios"):
        first = next((a["path"] for a in artifacts if a["backend"] in ("ort", "onnx") and a["graph"] == "encoder"),
                     None)
        return "\n\n".join(([cardkinds.python_snippet(sig, first)] if first else [])
                            + _app_code(sig, target, artifacts, tools))
    first = {b: next((a["path"] for a in artifacts if a["backend"] == b and a["graph"] == "encoder"), None)
             for b in ("ort", "tflite", "coreml")}
    parts = []
    if first["ort"]:
        parts += [cardkinds.python_snippet(sig, first["ort"])]
        files = {g.name: next((a["path"] for a in artifacts if a["backend"] == "ort" and a["graph"] == g.name
                               and a["precision"] == "fp32"), first["ort"]) for g in sig.graphs}
        parts += ["### Android: ONNX Runtime (Kotlin)", kotlin_ort(sig, files, tools)]
    if first["tflite"]:
        parts += ["### Android: LiteRT (Kotlin)", kotlin_litert(sig, first["tflite"], tools)]
    swift = cardkinds.swift_snippet(sig, first["coreml"], first["ort"] if target == "ios" else None, tools)
    if swift:
        parts += ["### iOS", swift]
    if sig.frontend.kind != "raw":
        fb_py, fb_cpp = fbank_blocks(sig)
        parts += ["### Features on the device",
                  f"The encoder takes {sig.frontend.kind} frames, not audio. kaldi-native-fbank computes them with "
                  "exactly this bundle's settings (the same field names in Python and C++; the C++ library is what "
                  "sherpa-onnx uses on Android and iOS, called through JNI or Swift's C interop). Feed every new "
                  f"frame into a buffer; a chunk is {sig.chunk_frames} consecutive frames, and the next chunk starts "
                  f"{sig.shift_frames} frames later.", fb_py, fb_cpp]
    if any(a["backend"] == "ort" for a in artifacts):
        parts += ["### required_operators.config",
                  "Lists the operators (with their opsets) the `.ort` files use. ONNX Runtime Mobile can be built "
                  "with only those, which makes the library much smaller than the full package: "
                  "`./build.sh --android ... --minimal_build --include_ops_by_config required_operators.config` "
                  "(onnxruntime.ai, 'Build' -> 'Custom build'). The stock `onnxruntime-android` package runs the "
                  "files too; the config only matters when you build ONNX Runtime yourself."]
    return "\n\n".join(parts)


# What each (backend, precision) file holds (targets/cardnotes.py: from the files' own records);
# the notes that do not depend on the file, for callers that name one.
PRECISION_NOTES = FIXED_NOTES


def _cut_lines(cut: dict | None, sig: Signature) -> list[str]:
    """The clip without trailing silence: the app's test of its tail padding."""
    if not cut or sig.decoder == "none":
        return []
    return ["", f"`{cut['audio']}` is the same utterance cut right after its last word (no trailing silence); "
            f"`{cut['transcript']}` is its text with the zeros of Endpointing and stop appended. Feed it, call the "
            "stop path (`finish()`), and compare: an app that skips or shortens the zeros loses the last word(s) "
            "here, while the silence at the end of `golden/audio.wav` would hide it."]


def model_card(manifest: dict, artifacts: list[dict], target, tokens: list[str] | None = None) -> str:
    sig = Signature.from_dict(manifest["signature"])
    model = manifest["model"]
    parts = [f"# {manifest['name']} — {sig.family} streaming model for {target.name}", ""]
    if not model.get("trained"):
        parts += ["> **This bundle holds an UNTRAINED model** (seeded random weights). Its files, contract and",
                  f"> parity checks are real; its {'outputs mean nothing' if sig.decoder == 'none' else 'transcripts are not'}."
                  " Build from a trained checkpoint for use.", ""]
    decoder = f" Decoder: {sig.decoder} greedy." if sig.decoder != "none" else ""
    parts += [f"{target.description}. Source: `{model['source']}`.{decoder} "
              f"Run with: `{runtime_line(target.name, target.runtime, artifacts)}`.", ""]
    missing = manifest.get("not_converted") or []
    if missing:
        parts += [f"> **Not converted: {not_converted_text(target.name, missing)}.** The app loads "
                  f"{instead(target.name, missing, artifacts)} instead (why: below).", ""]
    parts += [*cardkinds.scope_section(model, sig, tokens),
              *appcard.ship_section(manifest, artifacts, target.name, target.backends),
              "## Files", "",
              _table(["file", "graph", "backend", "precision", "bytes", "parity vs PyTorch"],
                     [[f"`{a['path']}`", a["graph"], a["backend"], a["precision"], a["bytes"],
                       _parity_cell(a["parity"])] for a in sorted(artifacts, key=lambda a: a["path"])]),
              "", *[f"- {b} {p}: {note}" for b, p in sorted({(a["backend"], a["precision"]) for a in artifacts})
                    if (note := precision_note(b, p, [a for a in artifacts
                                                      if a["backend"] == b and a["precision"] == p]))],
              "", "sha256 of every file is in `manifest.json`; the toolchain's `edge-verify .` re-checks them and re-runs the golden "
              "check on every artifact this host can execute.", ""]
    parts += appcard.libraries_section(manifest, artifacts, target.name)
    unverified = [a["path"] for a in artifacts if a["parity"].get("verified") is False]
    if unverified:
        parts += ["**Not verified numerically here:** " + ", ".join(f"`{p}`" for p in unverified)
                  + ". CoreML models cannot execute on Linux; their spec (I/O names, shapes, dtypes, ops, "
                  "deployment target, metadata) was checked. Run the golden check on a Mac or device.", ""]
    for nc in manifest.get("not_converted", []):
        parts += [f"**Not converted: {nc['backend']} {nc['precision']}.** The converter refused this model, so the "
                  "bundle has no such file:", "", "```", nc["reason"], "```", ""]
    stream = manifest.get("proofs", {}).get("stream")
    if stream:
        parts += ["**How long it can stream** (checked by the toolchain when it built this bundle). "
                  + _stream_sentence(stream), ""]
    parts += [*cardkinds.frontend_section(sig), "## Streaming", "", cardkinds.streaming_sentence(sig), ""]
    for g in sig.graphs:
        parts += [f"### Graph `{g.name}`", "",
                  _table(["input", "shape", "dtype", "meaning"],
                         [[f"`{t.name}`", _shape(t.shape), t.dtype, t.doc] for t in g.inputs]), "",
                  _table(["output", "shape", "dtype", "meaning"],
                         [[f"`{t.name}`", _shape(t.shape), t.dtype, t.doc] for t in g.outputs]), ""]
        if g.states:
            parts += [_table(["state in", "state out", "shape", "dtype", "initial", "batch axis", "reset", "meaning"],
                             [[f"`{s.name}`", f"`{s.next_name}`", _shape(s.shape), s.dtype, s.initial, s.batch_axis,
                               s.reset, s.doc] for s in g.states]), ""]
    parts += ["## The state loop", "",
              "1. Allocate every state with its shape, dtype and initial value (table above).",
              "2. For each chunk, call the encoder with the chunk and all states, by name.",
              "3. Replace each state by the matching `*_next` output.",
              "4. " + (
                  "Decode the encoder output: CTC greedy (argmax per frame, collapse repeats, drop blank id "
                  f"{sig.blank_id})." if sig.decoder == "ctc" else
                  "Read every output of the chunk: the model has no decoding head (head `none`)."
                  if sig.decoder == "none"
                  else f"Decode the encoder output: transducer greedy: the decoder takes the last {sig.context_size} tokens "
                  f"(blank {sig.blank_id} before any); for each encoder frame run the joiner, emit non-blank "
                  "argmax tokens (re-running the decoder after each), move on at blank."),
              "5. At an endpoint (below: 600 ms of trailing silence) append the zeros, then reset the states whose "
              "reset scope is `utterance`.",
              "", *(["Tokens: `tokens.txt` (`symbol id`); `▁` marks a word start.", ""] if sig.decoder != "none"
                    else [""]),
              *(appcard.endpointing_section(sig) if sig.decoder != "none" else []),
              "## Code", "", _snippets(sig, target.name, artifacts, manifest.get("tools")), "",
              "## Golden check", "",
              f"`golden/audio.wav` (utterance `{manifest['golden']['utterance']}`) gives `golden/features.npy`; its "
              f"{manifest['golden']['chunks']} encoder chunks are in `golden/encoder_inputs.npz` and PyTorch's "
              "outputs (states carried) in `golden/encoder_outputs.npz`"
              + ("; the text is `golden/transcript.txt`. " if sig.decoder != "none" else ". ") +
              "Your integration is right when your outputs match within the tolerance of the file's precision.",
              *_cut_lines(manifest["golden"].get("cut"), sig), "",
              "## Tool versions", "",
              _table(["tool", "version"], [[k, v] for k, v in sorted(manifest["tools"].items())]), ""]
    return "\n".join(parts)
