"""What the Kotlin and Swift of an audio-in bundle's card share: every number
and name the app loop needs, taken from the signature and from the client's
own constants (runtime_py/vad.py, runtime_py/stream.py), and the template
filler. One table, so the two languages and the card's prose cannot drift."""

from __future__ import annotations

import re

from runtime_py import vad
from runtime_py.audio_in import AudioInPlan
from runtime_py.decoding import MAX_SYMBOLS_PER_FRAME
from runtime_py.runners import SPINNING_OFF
from runtime_py.signature import Signature
from runtime_py.stream import TAIL_PADDING_S

_SLOT = re.compile(r"@@([A-Z_0-9]+)@@")


def fill(template: str, values: dict) -> str:
    """Every @@NAME@@ replaced; a slot without a value is a bug in the
    generator, not something to print into a card."""
    missing = sorted({m for m in _SLOT.findall(template) if m not in values})
    if missing:
        raise KeyError(f"template slots without a value: {missing}")
    return _SLOT.sub(lambda m: str(values[m.group(1)]), template)


def shape_literal(shape, suffix: str = "") -> str:
    return ", ".join(f"{d}{suffix}" for d in shape)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def endpoint_numbers(rate: int) -> dict:
    """The energy VAD and endpointer as edge-demo runs them (runtime_py.vad defaults), in 10 ms frames."""
    frame = int(round(rate * vad.DEFAULT_FRAME_MS / 1000))

    def frames(ms: float) -> int:
        return max(1, int(round(ms / vad.DEFAULT_FRAME_MS)))

    return {"FRAME": frame, "FRAME_MS": f"{vad.DEFAULT_FRAME_MS:g}",
            "ON_DB": f"{vad.DEFAULT_THRESHOLD_DB:.1f}",
            "OFF_DB": f"{vad.DEFAULT_THRESHOLD_DB - vad.DEFAULT_HYSTERESIS_DB:.1f}",
            "HYST": f"{vad.DEFAULT_HYSTERESIS_DB:g}",
            "MIN_SPEECH": frames(vad.DEFAULT_MIN_SPEECH_MS), "MIN_SPEECH_MS": f"{vad.DEFAULT_MIN_SPEECH_MS:g}",
            "MIN_SILENCE": frames(vad.DEFAULT_MIN_SILENCE_MS), "MIN_SILENCE_MS": f"{vad.DEFAULT_MIN_SILENCE_MS:g}",
            "TRAILING": frames(vad.DEFAULT_TRAILING_SILENCE_MS),
            "TRAILING_MS": f"{vad.DEFAULT_TRAILING_SILENCE_MS:g}",
            "MAX_UTT": frames(vad.DEFAULT_MAX_UTTERANCE_S * 1000), "MAX_UTT_S": f"{vad.DEFAULT_MAX_UTTERANCE_S:g}",
            "MAX_IDLE": frames(vad.DEFAULT_MAX_IDLE_S * 1000), "MAX_IDLE_S": f"{vad.DEFAULT_MAX_IDLE_S:g}"}


def endpoint_sentences(e: dict) -> list[str]:
    """The Endpointer of the generated code, sentence by sentence, in the
    order its `step` decides (the card's prose and the code's comment are
    both these sentences, so they cannot say different things)."""
    return [f"Energy per {e['FRAME_MS']} ms frame ({e['FRAME']} samples): 10 log10 of the mean square of the float "
            "samples, in dBFS (0 dBFS is a full-scale square wave). The thresholds are fixed: no noise adaptation.",
            f"While speech is off, a frame above {e['ON_DB']} dBFS is loud and one at or below it is silence; "
            f"{e['MIN_SPEECH']} loud frames in a row ({e['MIN_SPEECH_MS']} ms) switch speech on (a shorter loud run "
            "counts as silence).",
            f"While speech is on, only a frame below {e['OFF_DB']} dBFS ({e['HYST']} dB hysteresis) is quiet; "
            f"{e['MIN_SILENCE']} quiet frames in a row ({e['MIN_SILENCE_MS']} ms) switch speech off, and a frame "
            f"between {e['OFF_DB']} and {e['ON_DB']} dBFS keeps it on.",
            f"An utterance ends when {e['TRAILING']} frames ({e['TRAILING_MS']} ms) of silence have passed since "
            f"speech went off (the {e['MIN_SILENCE']} quiet frames count), or is cut at {e['MAX_UTT']} frames "
            f"({e['MAX_UTT_S']} s) after it began; with no utterance open, {e['MAX_IDLE']} frames ({e['MAX_IDLE_S']} s) "
            "of silence end in a reset anyway, so the states never run unbounded.",
            f"So background noise between {e['OFF_DB']} and {e['ON_DB']} dBFS (e.g. -45 dBFS) never ends an "
            f"utterance: only the {e['MAX_UTT_S']} s cut does; in such a room raise both thresholds above the noise "
            "floor or use your own VAD."]


def tail_sentences(v: dict) -> list[str]:
    """The tailPadding rule of the generated code, in words."""
    return [f"Zeros after an utterance of n samples (the toolchain's runtime_py.stream.signature_tail_padding): "
            f"start from {v['MIN_PAD']} ({v['MIN_PAD_S']} s) and add {v['HOP']} until the last real frame is in a "
            f"complete encoder step of {v['C']} frames; then the utterance and its zeros together fill a whole "
            f"number of calls of {v['N']} samples: the steps that covers plus the {v['WARMUP']} call(s) the in-graph "
            "frontend lags behind. The whole stream is rounded up to whole calls, not the zeros: n + zeros is a "
            f"multiple of {v['N']}."]


def comment(sentences: list[str], indent: str = "", width: int = 116) -> str:
    """A /** ... */ doc comment holding the sentences, wrapped."""
    import textwrap

    lines = textwrap.wrap(" ".join(sentences), width - len(indent) - 3)
    return "\n".join([f"{indent}/** {lines[0]}", *[f"{indent} *  {x}" for x in lines[1:]]]) + " */"


# -- ONNX Runtime session options: the Python client's (runtime_py.runners.ort_session_options) in Kotlin and Swift

THREADS_DOC = ["The options of every ONNX Runtime session. One intra-op thread by default: the files were verified",
               "on the CPU provider (README: parity table), a streaming step is small, and ONNX Runtime's own",
               "default would take every core for each small call. More threads go to the encoder's session only",
               "(time 1, 2 and 4 on the phone): the decoder and joiner run one row per call, where a pool only adds",
               "wake-ups. ONNX Runtime's spinning stays on, as in the Python client: on 2 free cores 2 threads ran",
               "1.20x of 1 that way and 0.95x with spinning off; on cores busy with other work keep 1 thread",
               f"(or turn spinning off: session config entry {SPINNING_OFF[0]} = {SPINNING_OFF[1]})."]


def ort_options_kotlin(body_notes: tuple[str, ...] = ()) -> str:
    """`fun sessionOptions(threads: Int = 1)` on ai.onnxruntime's
    OrtSession.SessionOptions (setIntraOpNumThreads);
    `body_notes`: comment lines inside it (e.g. the execution providers)."""
    return "\n".join([comment(THREADS_DOC),
                      "fun sessionOptions(threads: Int = 1): OrtSession.SessionOptions = "
                      "OrtSession.SessionOptions().apply {",
                      "    setIntraOpNumThreads(threads)",
                      *[f"    // {note}" for note in body_notes],
                      "}"])


def ort_options_swift() -> str:
    """`func sessionOptions(threads: Int32 = 1) throws` on onnxruntime-objc's
    ORTSessionOptions (`setIntraOpNumThreads:error:`, as Swift imports it)."""
    return "\n".join([comment(THREADS_DOC),
                      "func sessionOptions(threads: Int32 = 1) throws -> ORTSessionOptions {",
                      "    let options = try ORTSessionOptions()",
                      "    try options.setIntraOpNumThreads(threads)",
                      "    return options",
                      "}"])


def loop_numbers(sig: Signature, plan: AudioInPlan) -> dict:
    enc = sig.graph("encoder")
    x, out = enc.inputs[0], enc.outputs[0]
    fe = plan.frontend
    rate = fe.sample_rate
    v = {"N": plan.samples_per_call, "CALL_MS": f"{1000 * plan.samples_per_call / rate:g}",
         "WARMUP": plan.warmup_calls, "C": plan.chunk_frames, "S": plan.shift_frames, "HOP": fe.frame_shift,
         "SNIP": str(fe.snip_edges).lower(), "RATE": rate, "BLOCK": rate // 10,
         "MIN_PAD": int(round(TAIL_PADDING_S * rate)), "MIN_PAD_S": f"{TAIL_PADDING_S:g}",
         "X": x.name, "XSHAPE": "[" + shape_literal(x.shape) + "]", "XSHAPE_T": tuple(x.shape),
         "OUT": out.name, "OUTSHAPE": "[" + shape_literal(out.shape) + "]", "FRAMES": out.shape[1],
         "DIM": out.shape[-1], "OUT_SIZE": _size(out.shape), "BLANK": sig.blank_id,
         "MAX_SYMBOLS": MAX_SYMBOLS_PER_FRAME,
         "STATES": ", ".join(f"`{s.name}` [{shape_literal(s.shape)}]" for s in enc.states)}
    v["FRAMES_OF"] = (f"if (m < {fe.frame_length}) 0L else 1 + (m - {fe.frame_length}) / {fe.frame_shift}"
                      if fe.snip_edges else f"(m + {fe.frame_shift // 2}) / {fe.frame_shift}")
    v["FRAMES_OF_SWIFT"] = (f"m < {fe.frame_length} ? 0 : 1 + (m - {fe.frame_length}) / {fe.frame_shift}"
                            if fe.snip_edges else f"(m + {fe.frame_shift // 2}) / {fe.frame_shift}")
    v.update(endpoint_numbers(rate))
    v["ENDPOINT_DOC"] = comment(endpoint_sentences(v))
    v["TAIL_DOC"] = comment(tail_sentences(v), indent="    ")
    v["TAIL_DOC_KT"] = comment(tail_sentences(v), indent="        ")
    v["ORT_OPTIONS_KT"], v["ORT_OPTIONS_SWIFT"] = ort_options_kotlin(), ort_options_swift()
    if sig.decoder == "transducer":
        dg, jg = sig.graph("decoder"), sig.graph("joiner")
        y, dec_out = dg.inputs[0], dg.outputs[0]
        j_enc, j_dec = jg.inputs[0], jg.inputs[1]
        start = sig.start_context()
        v.update({"CONTEXT": sig.context_size, "START": ", ".join(f"{t}L" for t in start),
                  "START_SWIFT": ", ".join(str(t) for t in start),
                  "START_DOC": ("signature.decoder_start " + str(start) + ": -1 is \"no token\", the decoder graph "
                                "gives it a zero embedding") if sig.decoder_start is not None
                  else f"all blank: {start}, the model has no decoder_start",
                  "Y": y.name, "YSHAPE": "[" + shape_literal(y.shape) + "]", "YSHAPE_L": shape_literal(y.shape, "L"),
                  "DEC_OUT": dec_out.name, "DEC_SIZE": _size(dec_out.shape), "J_ENC": j_enc.name,
                  "J_DEC": j_dec.name, "JSHAPE_L": shape_literal(j_enc.shape, "L"),
                  "DSHAPE_L": shape_literal(j_dec.shape, "L"), "J_SIZE": _size(j_enc.shape),
                  "D_SIZE": _size(j_dec.shape), "JSHAPE": shape_literal(j_enc.shape),
                  "DSHAPE": shape_literal(j_dec.shape), "LOGITS": jg.outputs[0].name, "VOCAB": sig.vocab_size})
    return v


__all__ = ["comment", "endpoint_numbers", "endpoint_sentences", "fill", "loop_numbers", "ort_options_kotlin",
           "ort_options_swift", "shape_literal", "tail_sentences"]
