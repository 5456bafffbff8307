"""The model card's code for app developers, generated from the signature so
every name and shape is the bundle's own.

- `fbank_blocks`: the bundle's frontend as kaldi-native-fbank options, in
  Python and in C++ (the same field names; the C++ library is what
  sherpa-onnx uses on Android and iOS). tests/test_snippets.py runs the
  Python block and checks it reproduces golden/features.npy.
- `kotlin_ort`: ONNX Runtime Android (`ai.onnxruntime`): states allocated
  from manifest.json, the state loop, CTC greedy or the transducer's
  decoder/joiner loop, tokens to text.
- `kotlin_litert`: LiteRT's `Interpreter.runSignature` with ping-pong state
  buffers.
The JavaScript version of the ORT loop is run by the test suite
(examples/js); Kotlin cannot be compiled here, so it sticks to the same
calls (`session.run` with a name -> tensor map, `*_next` fed back).
"""

from __future__ import annotations

from runtime_py.signature import Signature

from . import appdeps
from .app_common import ort_options_kotlin


def _knf_options(fe) -> list[tuple[str, object]]:
    ms = 1000.0 / fe.sample_rate
    opts = [("frame_opts.samp_freq", float(fe.sample_rate)), ("frame_opts.frame_length_ms", fe.frame_length * ms),
            ("frame_opts.frame_shift_ms", fe.frame_shift * ms), ("frame_opts.dither", float(fe.dither)),
            ("frame_opts.preemph_coeff", float(fe.preemphasis)), ("frame_opts.remove_dc_offset", fe.remove_dc_offset),
            ("frame_opts.window_type", fe.window), ("frame_opts.snip_edges", fe.snip_edges),
            ("mel_opts.num_bins", fe.num_mel_bins), ("mel_opts.low_freq", float(fe.low_freq)),
            ("mel_opts.high_freq", float(fe.high_freq))]
    if fe.kind == "mfcc":
        opts += [("num_ceps", fe.num_ceps), ("use_energy", False)]
    return opts


def _py(v) -> str:
    return repr(v)


def _cpp(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def fbank_blocks(sig: Signature) -> tuple[str, str]:
    fe = sig.frontend
    kind = "Fbank" if fe.kind == "fbank" else "Mfcc"
    opts = _knf_options(fe)
    py = "\n".join([
        "```python",
        f"# kaldi-native-fbank (pip install kaldi-native-fbank): the bundle's {fe.kind} settings",
        "import kaldi_native_fbank as knf",
        f"opts = knf.{kind}Options()",
        *[f"opts.{k} = {_py(v)}" for k, v in opts],
        f"online = knf.Online{kind}(opts)",
        f"online.accept_waveform({fe.sample_rate}, (samples * {fe.sample_scale:g}).tolist())  "
        "# float samples in [-1, 1], scaled to the int16 range",
        "online.input_finished()  # at the end of the stream; frames come out as soon as their window is full",
        f"feats = [online.get_frame(i) for i in range(online.num_frames_ready)]  # {fe.feature_dim} values each",
        "```"])
    cpp = "\n".join([
        "```cpp",
        "// Android NDK / iOS: the C++ kaldi-native-fbank (github.com/csukuangfj/kaldi-native-fbank), via JNI",
        '#include "kaldi-native-fbank/csrc/online-feature.h"',
        f"knf::{kind}Options opts;",
        *[f"opts.{k} = {_cpp(v)};" for k, v in opts],
        f"knf::Online{kind} online(opts);",
        f"// per audio block: n float samples already multiplied by {fe.sample_scale:g}",
        f"online.AcceptWaveform({fe.sample_rate}, scaled, n);",
        "for (; taken < online.NumFramesReady(); ++taken) {  // int32_t taken = 0 when the stream starts",
        f"  const float *frame = online.GetFrame(taken);  // {fe.feature_dim} values: append to the chunk buffer",
        "}",
        "// at the end of the stream: online.InputFinished(), then take the last frames the same way",
        "```"])
    return py, cpp


_KOTLIN_HELPERS = """\
// manifest.json helpers (org.json ships with Android)
fun objects(a: JSONArray): List<JSONObject> = (0 until a.length()).map { a.getJSONObject(it) }
fun graph(manifest: JSONObject, name: String): JSONObject =
    objects(manifest.getJSONObject("signature").getJSONArray("graphs")).first { it.getString("name") == name }
fun shapeOf(spec: JSONObject): LongArray = spec.getJSONArray("shape").let { a -> LongArray(a.length()) { a.getLong(it) } }
fun argmax(v: FloatArray): Int = v.indices.maxBy { v[it] }"""


# execution providers go in sessionOptions: the files were verified on the CPU provider
_PROVIDER_NOTES = ('execution providers in order, CPU is always the fallback: addXnnpack(mapOf("intra_op_num_threads" '
                   'to "2"))', "or addNnapi() (XNNPACK runs its own pool: keep threads at 1 with it); the files were verified "
                   "on the CPU provider (see the parity table)")


def _gradle(backend: str, tools: dict | None) -> str:
    return appdeps.gradle_line(appdeps.library("android", backend), tools)


def kotlin_ort(sig: Signature, files: dict[str, str], tools: dict | None = None) -> str:
    enc = sig.graph("encoder")
    x, out = enc.inputs[0], enc.outputs[0]
    shape = ", ".join(f"{d}L" for d in x.shape)
    size = 1
    for d in x.shape:
        size *= d
    what = "raw samples" if sig.frontend.kind == "raw" else f"{sig.frontend.kind} values"
    lines = ["```kotlin",
             f"// ONNX Runtime Android: {_gradle('ort', tools)} (build.gradle.kts)",
             "import ai.onnxruntime.*",
             "import org.json.JSONArray",
             "import org.json.JSONObject",
             "import java.nio.FloatBuffer",
             "import java.nio.LongBuffer",
             "",
             _KOTLIN_HELPERS,
             "",
             ort_options_kotlin(_PROVIDER_NOTES),
             "",
             "/** The encoder's state loop. Every state is allocated from manifest.json and owned here: each",
             " *  `<state>_next` output is copied into a fresh tensor, so a Result can be closed at once. */",
             "class StreamingEncoder(private val env: OrtEnvironment, manifest: JSONObject, model: ByteArray) : AutoCloseable {",
             "    private val session = env.createSession(model, sessionOptions())",
             "    private val specs = objects(graph(manifest, \"encoder\").getJSONArray(\"states\"))",
             "    private var states: Map<String, OnnxTensor> = specs.associate { it.getString(\"name\") to initial(it) }",
             "",
             "    private fun initial(s: JSONObject): OnnxTensor {",
             "        val shape = shapeOf(s)",
             "        val n = shape.fold(1L) { a, b -> a * b }.toInt()",
             "        return when (s.getString(\"dtype\")) {",
             "            \"float32\" -> OnnxTensor.createTensor(env, FloatBuffer.wrap(FloatArray(n) { s.getDouble(\"initial\").toFloat() }), shape)",
             "            \"int64\" -> OnnxTensor.createTensor(env, LongBuffer.wrap(LongArray(n) { s.getLong(\"initial\") }), shape)",
             "            else -> error(\"state dtype ${s.getString(\"dtype\")}\")",
             "        }",
             "    }",
             "",
             "    private fun copy(t: OnnxTensor): OnnxTensor = when (t.info.type) {",
             "        OnnxJavaType.FLOAT -> OnnxTensor.createTensor(env, t.floatBuffer, t.info.shape)",
             "        OnnxJavaType.INT64 -> OnnxTensor.createTensor(env, t.longBuffer, t.info.shape)",
             "        else -> error(\"state type ${t.info.type}\")",
             "    }",
             "",
             f"    /** One chunk: {x.shape[1]} x {x.shape[2]} {what}, row-major ({size} floats).",
             *_returns_doc(sig),
             f"    fun step(chunk: FloatArray): {_step_type(sig)} {{",
             f"        val result = OnnxTensor.createTensor(env, FloatBuffer.wrap(chunk), longArrayOf({shape})).use {{ x ->",
             f"            session.run(states + (\"{x.name}\" to x))",
             "        }",
             "        result.use {",
             "            val next = specs.associate { s -> s.getString(\"name\") to copy(it.get(s.getString(\"name\") + \"_next\").get() as OnnxTensor) }",
             "            states.values.forEach(OnnxTensor::close)",
             "            states = next",
             *_return_lines(sig),
             "        }",
             "    }",
             "",
             "    /** At an endpoint (e.g. 600 ms of silence): states with this reset scope go back to their initial values. */",
             "    fun reset(scope: String = \"utterance\") {",
             "        states = states.mapValues { (name, t) ->",
             "            val s = specs.first { it.getString(\"name\") == name }",
             "            if (s.getString(\"reset\") == scope) { t.close(); initial(s) } else t",
             "        }",
             "    }",
             "",
             "    override fun close() { states.values.forEach(OnnxTensor::close); session.close() }",
             "}", ""]
    if sig.decoder == "ctc":
        lines += ["/** CTC greedy: argmax per frame, collapse repeats, drop the blank. */",
                  f"class CtcGreedy(private val blank: Int = {sig.blank_id}) {{",
                  "    val tokens = mutableListOf<Int>()",
                  "    private var prev = blank",
                  "    fun accept(logProbs: Array<FloatArray>) {",
                  "        for (frame in logProbs) {",
                  "            val k = argmax(frame)",
                  "            if (k != blank && k != prev) tokens += k",
                  "            prev = k",
                  "        }",
                  "    }",
                  "    fun reset() { tokens.clear(); prev = blank }",
                  "}"]
    elif sig.decoder == "none":
        lines += ["/** Head \"none\": nothing to decode; the app reads the encoder's outputs for every chunk. */",
                  "fun floats(t: OnnxTensor): FloatArray = when (t.info.type) {  // any rank, row-major",
                  "    OnnxJavaType.FLOAT -> t.floatBuffer.let { b -> FloatArray(b.remaining()).also { b.get(it) } }",
                  "    OnnxJavaType.INT64 -> t.longBuffer.let { b -> FloatArray(b.remaining()) { b.get().toFloat() } }",
                  "    else -> error(\"output type ${t.info.type}\")",
                  "}"]
    else:
        dg, jg = sig.graph("decoder"), sig.graph("joiner")
        lines += [f"/** Transducer greedy search: the decoder takes the last {sig.context_size} tokens (blank-padded), the",
                  " *  joiner scores one encoder frame against the decoder output; emit non-blank argmax tokens",
                  " *  (at most 3 per frame), re-running the decoder after each. */",
                  f"class TransducerGreedy(private val env: OrtEnvironment, private val decoder: OrtSession,",
                  f"                       private val joiner: OrtSession, private val blank: Int = {sig.blank_id}) {{",
                  "    val tokens = mutableListOf<Int>()",
                  f"    private val context = LongArray({sig.context_size}) {{ blank.toLong() }}",
                  "    private var decOut = runDecoder()",
                  "",
                  "    private fun runDecoder(): Array<FloatArray> =",
                  f"        OnnxTensor.createTensor(env, arrayOf(context.copyOf())).use {{ y ->  // int64 {list(dg.inputs[0].shape)}",
                  f"            decoder.run(mapOf(\"{dg.inputs[0].name}\" to y)).use {{ r ->",
                  "                @Suppress(\"UNCHECKED_CAST\")",
                  f"                (r.get(\"{dg.outputs[0].name}\").get() as OnnxTensor).value as Array<FloatArray>",
                  "            }",
                  "        }",
                  "",
                  "    fun accept(encoderOut: Array<FloatArray>) {",
                  "        for (frame in encoderOut) {",
                  "            for (n in 0 until 3) {",
                  f"                val logits = OnnxTensor.createTensor(env, arrayOf(frame)).use {{ e ->",
                  "                    OnnxTensor.createTensor(env, decOut).use { d ->",
                  f"                        joiner.run(mapOf(\"{jg.inputs[0].name}\" to e, \"{jg.inputs[1].name}\" to d)).use {{ r ->",
                  "                            @Suppress(\"UNCHECKED_CAST\")",
                  f"                            ((r.get(\"{jg.outputs[0].name}\").get() as OnnxTensor).value as Array<FloatArray>)[0]",
                  "                        }",
                  "                    }",
                  "                }",
                  "                val k = argmax(logits)",
                  "                if (k == blank) break",
                  "                tokens += k",
                  "                context.copyInto(context, 0, 1)",
                  "                context[context.size - 1] = k.toLong()",
                  "                decOut = runDecoder()",
                  "            }",
                  "        }",
                  "    }",
                  "}"]
    dec_files = "" if sig.decoder != "transducer" else (
        f"\nval decoder = env.createSession(assets.open(\"{files.get('decoder', 'decoder.fp32.ort')}\").readBytes(), "
        "sessionOptions(1))  // one row per call: one thread"
        f"\nval joiner = env.createSession(assets.open(\"{files.get('joiner', 'joiner.fp32.ort')}\").readBytes(), "
        "sessionOptions(1))")
    load = ["val env = OrtEnvironment.getEnvironment()",
            "val manifest = JSONObject(assets.open(\"manifest.json\").bufferedReader().readText())",
            f"val encoder = StreamingEncoder(env, manifest, assets.open(\"{files.get('encoder', 'encoder.fp32.ort')}\").readBytes())"
            + dec_files]
    if sig.decoder == "none":
        first = enc.outputs[0]
        return "\n".join(lines + ["", "// Use:", *load,
                                   f"for (chunk in chunks) {{  // chunks: {what} as in the tables",
                                   "    val outputs = encoder.step(chunk)",
                                   f"    val {_kotlin_name(first.name)} = outputs.getValue(\"{first.name}\")  "
                                   f"// {list(first.shape)} {first.dtype}, row-major",
                                   "}", "```"])
    make_dec = {"ctc": "CtcGreedy()"}.get(sig.decoder, "TransducerGreedy(env, decoder, joiner)")
    lines += ["",
              "// Use: tokens.txt maps ids to symbols; '\u2581' starts a word.",
              *load,
              f"val search = {make_dec}",
              "val symbols = assets.open(\"tokens.txt\").bufferedReader().readLines().filter { it.isNotBlank() }",
              "    .associate { val i = it.lastIndexOf(' '); it.substring(i + 1).toInt() to it.substring(0, i) }",
              "for (chunk in chunks) search.accept(encoder.step(chunk))  // chunks: from the fbank frames below",
              "val text = search.tokens.joinToString(\"\") { symbols.getValue(it) }.replace('\u2581', ' ').trim()",
              "```"]
    return "\n".join(lines)


def _kotlin_name(name: str) -> str:
    parts = [p for p in name.replace(".", "_").split("_") if p]
    return (parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])) if parts else "output"


def _step_type(sig: Signature) -> str:
    """A head "none" model's outputs can have any rank: every one, flat. A
    CTC or transducer encoder output is [1, frames, dim] (edge.declare checks)."""
    return "Map<String, FloatArray>" if sig.decoder == "none" else "Array<FloatArray>"


def _returns_doc(sig: Signature) -> list[str]:
    enc = sig.graph("encoder")
    out = enc.outputs[0]
    if sig.decoder == "none":
        return ["     *  Returns every output by name, flattened row-major: "
                + ", ".join(f"`{t.name}` {list(t.shape)}" for t in enc.outputs) + ". */"]
    return [f"     *  Returns `{out.name}` {list(out.shape)} as [frames][{out.shape[-1]}]. */"]


def _return_lines(sig: Signature) -> list[str]:
    enc = sig.graph("encoder")
    if sig.decoder == "none":
        return ["            return mapOf(" + ", ".join(
            f"\"{t.name}\" to floats(it.get(\"{t.name}\").get() as OnnxTensor)" for t in enc.outputs) + ")"]
    return ["            @Suppress(\"UNCHECKED_CAST\")",
            f"            return ((it.get(\"{enc.outputs[0].name}\").get() as OnnxTensor).value as Array<Array<FloatArray>>)[0]"]


def kotlin_litert(sig: Signature, file: str, tools: dict | None = None) -> str:
    enc = sig.graph("encoder")
    x, out = enc.inputs[0], enc.outputs[0]
    n_out = 1
    for d in out.shape:
        n_out *= d
    return "\n".join([
        "```kotlin",
        f"// LiteRT: {_gradle('tflite', tools)} (build.gradle.kts); package org.tensorflow.lite",
        "import org.tensorflow.lite.Interpreter",
        "import java.nio.ByteBuffer",
        "import java.nio.ByteOrder",
        "",
        "fun direct(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())",
        "",
        "/** The same loop through `runSignature` (inputs and outputs by name, signature \"serving_default\").",
        " *  Each state has two buffers, swapped after every call: one is read as the state, the other",
        " *  receives `<state>_next`. */",
        "class LiteRtEncoder(manifest: JSONObject, model: ByteBuffer) : AutoCloseable {",
        "    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(1))",
        "    private val specs = objects(graph(manifest, \"encoder\").getJSONArray(\"states\"))",
        "    private var states = specs.associate { it.getString(\"name\") to filled(it) }",
        "    private var next = specs.associate { it.getString(\"name\") to filled(it) }",
        f"    private val out = direct(4 * {n_out})  // {out.name} {list(out.shape)} float32",
        "",
        "    private fun filled(s: JSONObject): ByteBuffer {",
        "        val n = shapeOf(s).fold(1L) { a, b -> a * b }.toInt()",
        "        return when (s.getString(\"dtype\")) {",
        "            \"float32\" -> direct(4 * n).apply { repeat(n) { putFloat(s.getDouble(\"initial\").toFloat()) } }",
        "            \"int64\" -> direct(8 * n).apply { repeat(n) { putLong(s.getLong(\"initial\")) } }",
        "            else -> error(\"state dtype ${s.getString(\"dtype\")}\")",
        "        }",
        "    }",
        "",
        f"    fun step(chunk: FloatArray): FloatArray {{  // {list(x.shape)} row-major",
        "        val x = direct(4 * chunk.size).apply { asFloatBuffer().put(chunk) }",
        f"        val inputs = HashMap<String, Any>().apply {{ put(\"{x.name}\", x); states.forEach {{ (k, b) -> put(k, b.rewind()) }} }}",
        f"        val outputs = HashMap<String, Any>().apply {{ put(\"{out.name}\", out.rewind()); next.forEach {{ (k, b) -> put(k + \"_next\", b.rewind()) }} }}",
        "        interpreter.runSignature(inputs, outputs, \"serving_default\")",
        "        states = next.also { next = states }  // swap: what was written is the state now",
        f"        return FloatArray({n_out}).also {{ out.rewind(); out.asFloatBuffer().get(it) }}",
        "    }",
        "",
        "    override fun close() = interpreter.close()",
        "}",
        f"// model: the {file} file memory-mapped (FileChannel.map) or read into a direct ByteBuffer."
        + ("" if sig.decoder != "transducer" else
           "\n// A transducer's decoder and joiner .tflite files run the same way (runSignature, names from the tables);"
           "\n// the greedy loop is TransducerGreedy above."),
        "```"])
