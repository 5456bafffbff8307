"""The bundle's README.md, generated from the manifest (never hand-written,
so it cannot drift from the files)."""

from __future__ import annotations

from runtime_py.decoding import word_vocabulary
from runtime_py.signature import Signature
from .snippets import fbank_blocks, kotlin_litert, kotlin_ort
from .tflite import FP16_KEEP_FP32_VALUES


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


def _snippets(sig: Signature, target: str, artifacts: list[dict]) -> str:
    enc = sig.graph("encoder")
    x = enc.inputs[0]
    first = {b: next((a["path"] for a in artifacts if a["backend"] == b and a["graph"] == "encoder"), None)
             for b in ("ort", "tflite", "coreml")}
    state_names = ", ".join(s.name for s in enc.states) or "(none)"
    py = f"""```python
# in the edge-speech checkout: pip install -e '.[runtime]'   (numpy + onnxruntime; no torch)
from runtime_py.recognizer import transcribe_file
print(transcribe_file("path/to/this/bundle", "speech.wav"))

# or the state loop by hand, for the encoder:
import json, numpy as np, onnxruntime as ort
m = json.load(open("manifest.json"))
g = next(g for g in m["signature"]["graphs"] if g["name"] == "encoder")
sess = ort.InferenceSession("{first['ort'] or 'encoder.fp32.ort'}")
states = {{s["name"]: np.full(s["shape"], s["initial"], s["dtype"]) for s in g["states"]}}
for chunk in chunks:                      # each [{', '.join(map(str, x.shape))}] fbank frames
    outs = sess.run(None, {{"{x.name}": chunk, **states}})
    names = [o["name"] for o in g["outputs"]] + [s["name"] + "_next" for s in g["states"]]
    res = dict(zip(names, outs))
    states = {{s["name"]: res[s["name"] + "_next"] for s in g["states"]}}
```"""
    files = {g.name: next((a["path"] for a in artifacts if a["backend"] == "ort" and a["graph"] == g.name
                           and a["precision"] == "fp32"), f"{g.name}.fp32.ort") for g in sig.graphs}
    kt = kotlin_ort(sig, files)
    tfl = next((a["path"] for a in artifacts if a["backend"] == "tflite" and a["graph"] == "encoder"), None)
    fb_py, fb_cpp = fbank_blocks(sig)
    sw = f"""```swift
// CoreML ({first['coreml'] or 'encoder.fp16.mlpackage'}, compiled by Xcode) — or onnxruntime-objc with the .ort file
let model = try MLModel(contentsOf: compiledURL)
// initialStates / decode are yours to write, as in the Kotlin above: every state from manifest.json
// (shape, dtype, initial value), then CTC or transducer greedy decoding
var states: [String: MLMultiArray] = try initialStates(manifest)   // {state_names}
for chunk in chunks {{                      // MLMultiArray shape {_shape(x.shape)}
    var feeds = states; feeds["{x.name}"] = chunk
    let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: feeds))
    for name in states.keys {{ states[name] = out.featureValue(for: name + "_next")!.multiArrayValue! }}
    decode(out.featureValue(for: "{enc.outputs[0].name}")!.multiArrayValue!)
}}
```"""
    parts = [py, "### Android: ONNX Runtime (Kotlin)", kt]
    if tfl:
        parts += ["### Android: LiteRT (Kotlin)", kotlin_litert(sig, tfl)]
    parts += ["### iOS", sw,
              "### Features on the device",
              "The encoder takes fbank frames, not audio. kaldi-native-fbank computes them with exactly this bundle's "
              "settings (the same field names in Python and C++; the C++ library is what sherpa-onnx uses on Android "
              "and iOS, called through JNI or Swift's C interop). Feed every new frame into a buffer; a chunk is "
              f"{sig.chunk_frames} consecutive frames, and the next chunk starts {sig.shift_frames} frames later.",
              fb_py, fb_cpp]
    if any(a["backend"] == "ort" for a in artifacts):
        parts += ["### required_operators.config",
                  "Lists the operators (with their opsets) the `.ort` files use. ONNX Runtime Mobile can be built "
                  "with only those, which makes the library much smaller than the full package: "
                  "`./build.sh --android ... --minimal_build --include_ops_by_config required_operators.config` "
                  "(onnxruntime.ai, 'Build' -> 'Custom build'). The stock `onnxruntime-android` package runs the "
                  "files too; the config only matters when you build ONNX Runtime yourself."]
    return "\n\n".join(parts)


# What each (backend, precision) file holds, for the app developer choosing one.
PRECISION_NOTES = {
    ("onnx", "fp32"): "float32 weights and compute.",
    ("ort", "fp32"): "float32 weights and compute; graph pre-optimised offline.",
    ("ort", "int8"): "Conv: static int8 (per-channel weights, activation ranges calibrated on speech); "
                     "MatMul/Gemm/LSTM: dynamic int8 (per-tensor weights, activations quantised per call); "
                     "I/O and states stay float32. The recipe and the ops quantised are in manifest.json.",
    ("tflite", "fp32"): "float32 weights and compute.",
    ("tflite", "fp16"): "weight matrices stored float16 and dequantised at load (CPU computes float32; "
                        "GPU delegates may compute in fp16); vectors (biases, norms, CMVN) and tensors of at most "
                        f"{FP16_KEEP_FP32_VALUES} values (e.g. depthwise kernels) kept float32.",
    ("tflite", "int8"): "dynamic range: int8 weights for tensors of 1024+ values, float activations; "
                        "I/O and states stay float32.",
    ("coreml", "fp32"): "ML program, float32 compute.",
    ("coreml", "fp16"): "ML program, fp16 compute except the log-softmax (kept fp32 so small "
                        "probabilities do not underflow to log 0); I/O and states float32.",
}


def _scope(model: dict, sig: Signature, tokens: list[str] | None) -> list[str]:
    """What the model can recognise at all, before anyone tries dictation on it."""
    words = word_vocabulary(tokens or [], sig.blank_id)
    if words is None:
        n = len(tokens or [])
        return ["## What it recognises", "", f"{n} tokens (`tokens.txt`); sub-words or characters can spell "
                "words the training data did not hold, with the accuracy the training data gives.", ""]
    out = ["## What it recognises", "",
           f"**{len(words)} words and nothing else:** " + " ".join(f"`{w}`" for w in words) + ".", "",
           "Any other speech comes out as the nearest sequence of these words (\"hello world, what is the "
           "weather\" might read \"home no quieter enter\"): this is a command-word recogniser, not dictation."]
    if str(model.get("source", "")).startswith("shipped:"):
        out += ["", "It is one of the project's demo models, trained on synthetic speech (espeak-ng: English "
                "accents and voice variants, 1-6 words per utterance, added noise; `edge/data/corpus.py`) to show "
                "the export, bundle and client working end to end on real audio. Accuracy figures: "
                "`docs/accuracy.md`."]
    rate = sig.frontend.sample_rate
    return out + ["", f"Audio must be {rate // 1000} kHz wideband speech (the client resamples other rates); "
                  "narrowband audio (8 kHz telephone audio, even resampled up) costs accuracy.", ""]


def model_card(manifest: dict, artifacts: list[dict], target, tokens: list[str] | None = None) -> str:
    sig = Signature.from_dict(manifest["signature"])
    fe = sig.frontend
    model = manifest["model"]
    parts = [f"# {manifest['name']} — {sig.family} streaming model for {target.name}", ""]
    if not model.get("trained"):
        parts += ["> **This bundle holds an UNTRAINED model** (seeded random weights). Its files, contract and",
                  "> parity checks are real; its transcripts are not. Build from a trained checkpoint for use.", ""]
    parts += [f"{target.description}. Source: `{model['source']}`. Decoder: {sig.decoder} greedy. "
              f"Run on this host with: `{target.runtime}`.", "",
              *_scope(model, sig, tokens),
              "## Files", "",
              _table(["file", "graph", "backend", "precision", "bytes", "parity vs PyTorch"],
                     [[f"`{a['path']}`", a["graph"], a["backend"], a["precision"], a["bytes"],
                       _parity_cell(a["parity"])] for a in sorted(artifacts, key=lambda a: a["path"])]),
              "", *[f"- {b} {p}: {PRECISION_NOTES[(b, p)]}"
                    for b, p in sorted({(a["backend"], a["precision"]) for a in artifacts})
                    if (b, p) in PRECISION_NOTES],
              "", "sha256 of every file is in `manifest.json`; `edge-verify .` re-checks them and re-runs the golden "
              "check on every artifact this host can execute.", ""]
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
        parts += ["**How long it can stream.** " + _stream_sentence(stream), ""]
    parts += ["## Audio frontend", "",
              f"{fe.kind} with {fe.feature_dim} bins, {fe.sample_rate} Hz mono, window {fe.frame_length} samples "
              f"({fe.window}), hop {fe.frame_shift} samples, preemphasis {fe.preemphasis}, dither {fe.dither}, "
              f"snip_edges={fe.snip_edges}, mel range {fe.low_freq}..{fe.high_freq} Hz (kaldi convention), "
              f"float samples scaled by {fe.sample_scale:g}. Normalisation is inside the model. "
              "This is kaldi's / kaldi-native-fbank's fbank with these options.", "",
              "## Streaming", "",
              f"Feed {sig.chunk_frames} feature frames per encoder call ({sig.chunk_frames * fe.frame_shift / fe.sample_rate * 1000:.0f} ms), "
              f"advance by {sig.shift_frames} (right context {sig.right_context}); subsampling {sig.subsampling}. "
              f"At the end of an utterance append {0.3:g} s of zero samples so its last frames fill a chunk.", ""]
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
              "4. Decode the encoder output: " + (
                  "CTC greedy (argmax per frame, collapse repeats, drop blank id "
                  f"{sig.blank_id})." if sig.decoder == "ctc" else
                  "nothing to decode (head `none`): the app reads every output of every chunk." if sig.decoder == "none"
                  else f"transducer greedy: the decoder takes the last {sig.context_size} tokens "
                  f"(blank {sig.blank_id} before any); for each encoder frame run the joiner, emit non-blank "
                  "argmax tokens (re-running the decoder after each), move on at blank."),
              "5. At an endpoint (e.g. 600 ms of silence) reset the states whose reset scope is `utterance`.",
              "", "Tokens: `tokens.txt` (`symbol id`); `▁` marks a word start.", "",
              "## Code", "", _snippets(sig, target.name, artifacts), "",
              "## Golden check", "",
              f"`golden/audio.wav` (utterance `{manifest['golden']['utterance']}`) gives `golden/features.npy`; its "
              f"{manifest['golden']['chunks']} encoder chunks are in `golden/encoder_inputs.npz` and PyTorch's "
              "outputs (states carried) in `golden/encoder_outputs.npz`; the text is `golden/transcript.txt`. "
              "Your integration is right when your outputs match within the tolerance of the file's precision.", "",
              "## Tool versions", "",
              _table(["tool", "version"], [[k, v] for k, v in sorted(manifest["tools"].items())]), ""]
    return "\n".join(parts)
