"""The parts of a model card that depend on the model's kind: an ASR model
(its own vocabulary: a whole-word one listed, placeholders said to be
placeholders, the demo-training text only for the project's shipped
checkpoints) or a head-`none` model (samples or features in, outputs the app
reads), and on its input (fbank/MFCC frames, or raw samples). Used by
targets/modelcard.py; every sentence is derived from the signature and the
files the bundle holds."""

from __future__ import annotations

from runtime_py.decoding import word_vocabulary
from runtime_py.signature import Signature

from .app_common import ort_options_swift
from .appdeps import library, pod_line


def _shape(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def placeholder_tokens(tokens: list[str] | None, vocab_size: int) -> bool:
    """The build's stand-ins for a model that declared no tokens (targets/build/source.tokens_for)."""
    return list(tokens or []) == ["<blk>"] + [f"\u2581t{i}" for i in range(1, vocab_size)]


def is_shipped(model: dict) -> bool:
    """One of the project's own checkpoints (the 46-word demo models)."""
    return str(model.get("source", "")).startswith("shipped:")


def input_words(sig: Signature) -> str:
    """'raw samples' or 'fbank frames', for sentences about the encoder's input."""
    return "raw samples" if sig.frontend.kind == "raw" else f"{sig.frontend.kind} frames"


def scope_section(model: dict, sig: Signature, tokens: list[str] | None) -> list[str]:
    """What the model does, before anyone tries dictation on it."""
    if sig.decoder == "none":
        return _outputs_section(sig)
    n = len(tokens or [])
    if placeholder_tokens(tokens, sig.vocab_size):
        return ["## What it recognises", "",
                f"No vocabulary was declared: `tokens.txt` holds placeholders (`<blk>`, `\u2581t1` … "
                f"`\u2581t{sig.vocab_size - 1}`) for the model's {sig.vocab_size} output ids (blank id "
                f"{sig.blank_id}). Give the model's own tokens (`edge.declare(tokens=...)` or the spec's "
                "`tokens`) to get text.", ""]
    words = word_vocabulary(tokens or [], sig.blank_id)
    if words is None:
        return ["## What it recognises", "",
                f"The model's own vocabulary: {n} tokens in `tokens.txt` (blank id {sig.blank_id}); sub-words or "
                "characters can spell words the training data did not hold, with the accuracy the training data "
                "gives.", ""]
    # every token a whole word: it can output these and nothing else, whoever trained it
    example = ("(\"hello world, what is the weather\" might read \"home no quieter enter\")"
               if {"home", "no", "quieter", "enter"} <= set(words) else "")
    out = ["## What it recognises", "",
           f"**{len(words)} words and nothing else:** " + " ".join(f"`{w}`" for w in words) + ".", "",
           f"Any other speech comes out as the nearest sequence of these words{' ' + example if example else ''}: "
           "this is a command-word recogniser, not dictation."]
    if is_shipped(model):
        out += ["", "It is one of the project's demo models, trained on synthetic speech (espeak-ng: English "
                "accents and voice variants, 1-6 words per utterance, added noise; `edge/data/corpus.py` in the "
                "toolchain's repository) to show the export, bundle and client working end to end on real audio. "
                "Accuracy figures: `docs/accuracy.md` in the toolchain's repository."]
    rate = sig.frontend.sample_rate
    return out + ["", f"Audio must be {rate // 1000} kHz wideband speech (the client resamples other rates); "
                  "narrowband audio (8 kHz telephone audio, even resampled up) costs accuracy.", ""]


def _outputs_section(sig: Signature) -> list[str]:
    enc = sig.graph("encoder")
    x = enc.inputs[0]
    outs = ", ".join(f"`{t.name}` {_shape(t.shape)} {t.dtype}" + (f" ({t.doc})" if t.doc else "")
                     for t in enc.outputs)
    fe = sig.frontend
    feed = (f"{sig.chunk_frames} samples at {fe.sample_rate} Hz" if fe.kind == "raw"
            else f"{sig.chunk_frames} {fe.kind} frames")
    return ["## What it computes", "",
            f"Not a recogniser: the model has no decoding head (head `none`), so there are no tokens and no "
            f"decoder. Each encoder call takes {feed} (`{x.name}` {_shape(x.shape)}) with the states, and returns "
            f"{outs} for that chunk.", "",
            "How an app reads them: after every call, take these outputs as they are (the reference client "
            "returns them per chunk: `runtime_py.session.ModelSession(bundle).encode(chunk)`). What they mean "
            "(e.g. a speech probability to compare with a threshold) is the model's own; the tables below "
            "give each tensor's shape and the doc its author declared.", ""]


def frontend_section(sig: Signature) -> list[str]:
    fe = sig.frontend
    if fe.kind == "raw":
        return ["## Audio input", "",
                f"Raw samples, no feature extraction: {fe.sample_rate} Hz mono float32 samples in [-1, 1]"
                + (f" multiplied by {fe.sample_scale:g}" if fe.sample_scale != 1 else "")
                + f". Each call takes {sig.chunk_frames} samples and the next call starts {sig.shift_frames} "
                f"samples later, so {sig.chunk_frames - sig.shift_frames} samples of each call repeat the end "
                f"of the previous one" + (f"; before the first call, {fe.left_pad} zero samples stand in for "
                                          "the past" if fe.left_pad else "") + ".", ""]
    return ["## Audio frontend", "",
            f"{fe.kind} with {fe.feature_dim} bins, {fe.sample_rate} Hz mono, window {fe.frame_length} samples "
            f"({fe.window}), hop {fe.frame_shift} samples, preemphasis {fe.preemphasis}, dither {fe.dither}, "
            f"snip_edges={fe.snip_edges}, mel range {fe.low_freq}..{fe.high_freq} Hz (a high edge <= 0 counts down from "
            f"Nyquist, kaldi's convention), "
            f"float samples scaled by {fe.sample_scale:g}. Normalisation is inside the model. "
            "This is kaldi's / kaldi-native-fbank's fbank with these options.", ""]


def streaming_sentence(sig: Signature) -> str:
    fe = sig.frontend
    ms = sig.chunk_frames * fe.frame_shift / fe.sample_rate * 1000
    if fe.kind == "raw":
        return (f"Feed {sig.chunk_frames} samples per encoder call ({ms:.0f} ms), advance by {sig.shift_frames}.")
    return (f"Feed {sig.chunk_frames} feature frames per encoder call ({ms:.0f} ms), advance by {sig.shift_frames} "
            f"(right context {sig.right_context}); subsampling {sig.subsampling}. At the end of an utterance "
            f"append {0.3:g} s of zero samples so its last frames fill a chunk.")


def python_snippet(sig: Signature, ort_file: str) -> str:
    enc = sig.graph("encoder")
    x = enc.inputs[0]
    if sig.decoder == "none":
        first = ("from runtime_py.session import ModelSession\n"
                 "session = ModelSession(\"path/to/this/bundle\")\n"
                 f"outputs = session.encode(chunk)   # one chunk {_shape(x.shape)} -> "
                 + ", ".join(t.name for t in enc.outputs))
    else:
        first = ("from runtime_py.recognizer import transcribe_file\n"
                 "print(transcribe_file(\"path/to/this/bundle\", \"speech.wav\"))")
    return f"""```python
# in the edge-speech checkout: pip install -e '.[runtime]'   (numpy + onnxruntime; no torch)
{first}

# or the state loop by hand, for the encoder:
import json, numpy as np, onnxruntime as ort
m = json.load(open("manifest.json"))
g = next(g for g in m["signature"]["graphs"] if g["name"] == "encoder")
from runtime_py.runners import ort_session_options
threads = 1                               # intra-op threads for the encoder (the client's options; ORT's
so = ort_session_options(ort, threads)    # spinning stays on: more threads pay only on free cores)
sess = ort.InferenceSession("{ort_file}", so)
states = {{s["name"]: np.full(s["shape"], s["initial"], s["dtype"]) for s in g["states"]}}
for chunk in chunks:                      # each [{', '.join(map(str, x.shape))}] {input_words(sig)}
    outs = sess.run(None, {{"{x.name}": chunk, **states}})
    names = [o["name"] for o in g["outputs"]] + [s["name"] + "_next" for s in g["states"]]
    res = dict(zip(names, outs))
    states = {{s["name"]: res[s["name"] + "_next"] for s in g["states"]}}
```"""


# A features-in bundle's Swift is an outline: the app computes fbank frames in C++ too. The default ios
# bundle takes audio, and its card holds the whole Swift loop (targets/app_swift.py).
_FEATURES_IN_NOTE = ("// This bundle takes features: initialStates (every state of manifest.json: shape, dtype, initial\n"
                     "// value) and decoding follow the Kotlin above. The complete Swift loop (states, decoding,\n"
                     "// endpointing, microphone) is in the card of an audio-in bundle: edge-build --target ios")


def swift_snippet(sig: Signature, coreml_file: str | None, ort_file: str | None,
                  tools: dict | None = None) -> str | None:
    """CoreML when the bundle holds an .mlpackage, else onnxruntime-objc on its
    .ort file; None when it holds neither."""
    enc = sig.graph("encoder")
    x = enc.inputs[0]
    state_names = ", ".join(s.name for s in enc.states) or "(none)"
    read = ("decode(out" if sig.decoder != "none" else "use(out")
    if coreml_file:
        scalar = [s.name for s in enc.states if not s.shape]
        note = (f"\n// Core ML has no rank-0 tensors: {', '.join(scalar)} (shape [] in manifest.json) is a [1] array "
                "here,\n// in and out (manifest.json: the .mlpackage's spec_checks.rank0_as_shape_1)" if scalar else "")
        return f"""```swift
// CoreML ({coreml_file}, compiled by Xcode){note}
let model = try MLModel(contentsOf: compiledURL)
{_FEATURES_IN_NOTE}
var states: [String: MLMultiArray] = try initialStates(manifest)   // {state_names}
for chunk in chunks {{                      // MLMultiArray shape {_shape(x.shape)}
    var feeds = states; feeds["{x.name}"] = chunk
    let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: feeds))
    for name in states.keys {{ states[name] = out.featureValue(for: name + "_next")!.multiArrayValue! }}
    {read}.featureValue(for: "{enc.outputs[0].name}")!.multiArrayValue!)
}}
```"""
    if ort_file:
        outs = ", ".join(f'"{t.name}"' for t in enc.outputs)
        return f"""```swift
// onnxruntime-objc ({pod_line(library("ios", "ort"), tools)}) on {ort_file}
{ort_options_swift()}
let env = try ORTEnv(loggingLevel: ORTLoggingLevel.warning)
let session = try ORTSession(env: env, modelPath: path, sessionOptions: sessionOptions())
{_FEATURES_IN_NOTE}
var states: [String: ORTValue] = try initialStates(manifest)   // {state_names}
let names: Set<String> = Set([{outs}] + states.keys.map {{ $0 + "_next" }})
for chunk in chunks {{                      // ORTValue float32 shape {_shape(x.shape)}
    var feeds = states; feeds["{x.name}"] = chunk
    let out = try session.run(withInputs: feeds, outputNames: names, runOptions: nil)
    for name in states.keys {{ states[name] = out[name + "_next"]! }}
    {read}["{enc.outputs[0].name}"]!)
}}
```"""
    return None
