"""The Android code of an audio-in bundle's card: Kotlin from microphone PCM
to text, generated from the signature (every name, shape and number is the
bundle's own; tests/test_app_code.py checks them against it).

- `shared`: what both runtimes use: manifest.json helpers, greedy decoding
  (CTC, or the transducer's from `decoder_start`), tokens to text, the
  project's endpointing (runtime_py/vad.py's numbers) and the loop
  (`Recognizer`): whole calls of PCM, the warmup calls skipped, zeros at an
  endpoint or at stop, then every utterance state reset.
- `onnxruntime`: `OrtEncoder` and the transducer's decoder/joiner on
  onnxruntime-android, and the wiring to `AudioRecord`.
- `litert`: the same on LiteRT's `Interpreter.runSignature`.
Kotlin cannot be compiled here: the calls are the libraries' documented
ones, and the same loop runs in JavaScript in the test suite
(examples/js/transcribe.mjs).
"""

from __future__ import annotations

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature

from . import appdeps
from .app_common import fill, loop_numbers, shape_literal

SHARED = """\
// Shared by both runtimes (org.json is part of Android): manifest helpers, greedy decoding,
// tokens to text, endpointing and the PCM -> text loop. Generated for this bundle.
import org.json.JSONArray
import org.json.JSONObject
import kotlin.math.log10

fun objects(a: JSONArray): List<JSONObject> = (0 until a.length()).map { a.getJSONObject(it) }
fun graph(manifest: JSONObject, name: String): JSONObject =
    objects(manifest.getJSONObject("signature").getJSONArray("graphs")).first { it.getString("name") == name }
fun shapeOf(spec: JSONObject): LongArray = spec.getJSONArray("shape").let { a -> LongArray(a.length()) { a.getLong(it) } }
fun sizeOf(spec: JSONObject): Int = shapeOf(spec).fold(1L) { a, b -> a * b }.toInt()
fun argmax(v: FloatArray): Int = v.indices.maxBy { v[it] }

/** The encoder with its states: OrtEncoder or LiteRtEncoder below. */
interface Encoder : AutoCloseable {
    /** One call: @@N@@ samples in [-1, 1] (`@@X@@` @@XSHAPE@@). Returns `@@OUT@@` @@OUTSHAPE@@ as
     *  [@@FRAMES@@][@@DIM@@]; every `<state>_next` output becomes the next call's `<state>`.
     *  The states, allocated from manifest.json at run time: @@STATES@@. */
    fun step(pcm: FloatArray): Array<FloatArray>
    /** Every state whose reset scope is "utterance" back to its initial value (manifest.json). */
    fun reset()
}

/** Greedy decoding, fed one call's encoder output at a time. */
interface Search {
    val tokens: List<Int>
    fun accept(out: Array<FloatArray>)
    fun reset()
}
@@SEARCH@@
/** tokens.txt: one `symbol id` per line; '\\u2581' starts a word. */
fun readTokens(text: String): Map<Int, String> = text.lines().filter { it.isNotBlank() }
    .associate { val i = it.lastIndexOf(' '); it.substring(i + 1).toInt() to it.substring(0, i) }
fun toText(ids: List<Int>, symbols: Map<Int, String>): String =
    ids.joinToString("") { symbols.getValue(it) }.replace('\\u2581', ' ').split(' ').filter { it.isNotEmpty() }.joinToString(" ")

/** The project's endpointing (runtime_py/vad.py, edge-demo's defaults) on 10 ms frames of @@FRAME@@ samples:
 *  a frame is loud above @@ON_DB@@ dBFS and quiet below @@OFF_DB@@ dBFS (@@HYST@@ dB hysteresis; 0 dBFS = a full-scale
 *  square wave); @@MIN_SPEECH@@ loud frames switch speech on, @@MIN_SILENCE@@ quiet frames switch it off. An utterance
 *  ends after @@TRAILING@@ frames (@@TRAILING_MS@@ ms) without speech, or is cut at @@MAX_UTT@@ frames (@@MAX_UTT_S@@ s); with no
 *  utterance open, @@MAX_IDLE@@ frames (@@MAX_IDLE_S@@ s) end in a reset anyway, so the states never run unbounded. */
class Endpointer {
    enum class Event { NONE, UTTERANCE, IDLE }
    private val rest = FloatArray(@@FRAME@@)
    private var filled = 0
    private var speech = false
    private var pending = 0       // frames of the current run whose label is not settled yet
    private var silent = 0        // settled frames without speech since the last speech
    private var utterance = -1    // frames since the utterance began; -1: none open
    private var idle = 0

    fun reset() { filled = 0; speech = false; pending = 0; silent = 0; utterance = -1; idle = 0 }

    /** Feed the same samples as the model; returns what the last frame decided. */
    fun accept(pcm: FloatArray): Event {
        var event = Event.NONE
        for (x in pcm) {
            rest[filled++] = x
            if (filled < rest.size) continue
            filled = 0
            val e = 10.0 * log10(rest.sumOf { (it * it).toDouble() } / rest.size + 1e-12)
            val now = frame(e)
            if (now != Event.NONE) event = now
        }
        return event
    }

    private fun frame(db: Double): Event {
        if (!speech) {
            if (db > @@ON_DB@@) {
                if (++pending >= @@MIN_SPEECH@@) { speech = true; pending = 0; silent = 0; idle = 0; if (utterance < 0) utterance = 0 }
            } else { silent += pending + 1; idle += pending + 1; pending = 0 }  // a loud run too short to count is silence
        } else if (db < @@OFF_DB@@) {
            if (++pending >= @@MIN_SILENCE@@) { speech = false; silent = pending; pending = 0 }
        } else pending = 0
        if (utterance >= 0) {
            utterance++
            if (!speech && silent >= @@TRAILING@@ || speech && utterance >= @@MAX_UTT@@) {
                utterance = -1; silent = 0; idle = 0; speech = false; pending = 0
                return Event.UTTERANCE
            }
        } else if (!speech && idle >= @@MAX_IDLE@@) { idle = 0; return Event.IDLE }
        return Event.NONE
    }
}

/** Microphone PCM in, text out. The encoder takes @@N@@ samples (@@CALL_MS@@ ms) per call; after each reset the first
 *  @@WARMUP@@ call(s) only fill the in-graph frontend's history (their output means nothing). */
class Recognizer(private val encoder: Encoder, private val search: Search, private val symbols: Map<Int, String>) {
    private val call = FloatArray(@@N@@)
    private var filled = 0
    private var calls = 0      // since the last reset
    private var samples = 0L   // since the last reset
    private val endpointer = Endpointer()

    /** 16 kHz mono float samples in [-1, 1], any block size (AudioRecord ENCODING_PCM_FLOAT).
     *  Returns the final text of an utterance that ended in this block, else null. */
    fun accept(pcm: FloatArray): String? {
        feed(pcm)
        return when (endpointer.accept(pcm)) {
            Endpointer.Event.UTTERANCE -> finish()
            Endpointer.Event.IDLE -> finish().ifEmpty { null }
            Endpointer.Event.NONE -> null
        }
    }

    /** The current utterance's text so far. */
    fun partial(): String = toText(search.tokens, symbols)

    /** At an endpoint and when the user stops: zeros after the speech (whole calls) so its last frames reach the
     *  output, the text, then every utterance state, the decoder and the frontend history back to the start. */
    fun finish(): String {
        if (samples > 0) feed(FloatArray(tailPadding(samples)))
        val text = partial()
        encoder.reset(); search.reset(); endpointer.reset()
        filled = 0; calls = 0; samples = 0
        return text
    }

    private fun feed(pcm: FloatArray) {
        for (x in pcm) {
            call[filled++] = x
            if (filled < call.size) continue
            filled = 0
            val out = encoder.step(call.copyOf())
            if (calls >= @@WARMUP@@) search.accept(out) else calls++
        }
        samples += pcm.size
    }

    companion object {
        /** Zeros after an utterance of n samples (runtime_py.stream.signature_tail_padding): at least @@MIN_PAD@@
         *  (@@MIN_PAD_S@@ s), more until the last real frame is in a complete chunk of @@C@@ frames (the encoder's
         *  right context and the frame window reach past the last sample), rounded up to whole calls, plus the
         *  @@WARMUP@@ call(s) the in-graph frontend lags behind. */
        fun tailPadding(n: Long): Int {
            fun frames(m: Long): Long = @@FRAMES_OF@@  // kaldi's frame count, snip_edges=@@SNIP@@
            fun steps(f: Long): Long = if (f >= @@C@@) (f - @@C@@) / @@S@@ + 1 else 0L
            var pad = @@MIN_PAD@@L
            while (steps(frames(n + pad)) * @@S@@ < frames(n)) pad += @@HOP@@
            return ((steps(frames(n + pad)) + @@WARMUP@@) * @@N@@ - n).toInt()
        }
    }
}
"""

CTC = """
/** CTC greedy: argmax per frame, collapse repeats, drop the blank (id @@BLANK@@). */
class CtcGreedy(private val blank: Int = @@BLANK@@) : Search {
    override val tokens = mutableListOf<Int>()
    private var prev = blank
    override fun accept(out: Array<FloatArray>) {
        for (frame in out) {
            val k = argmax(frame)
            if (k != blank && k != prev) tokens += k
            prev = k
        }
    }
    override fun reset() { tokens.clear(); prev = blank }
}
"""

TRANSDUCER = """
/** Transducer greedy search (runtime_py.decoding.TransducerGreedy): the decoder takes the last @@CONTEXT@@ token ids,
 *  starting from `start` (@@START_DOC@@); for each encoder frame the joiner scores it against the decoder output;
 *  emit the argmax while it is not the blank (id @@BLANK@@), at most @@MAX_SYMBOLS@@ per frame, re-running the decoder after each. */
class TransducerGreedy(
    private val decoder: (LongArray) -> FloatArray,              // `@@Y@@` @@YSHAPE@@ int64 -> `@@DEC_OUT@@` (flat)
    private val joiner: (FloatArray, FloatArray) -> FloatArray,  // `@@J_ENC@@`, `@@J_DEC@@` -> `@@LOGITS@@` (flat)
    private val start: LongArray = longArrayOf(@@START@@),
    private val blank: Int = @@BLANK@@,
) : Search {
    override val tokens = mutableListOf<Int>()
    private var context = start.copyOf()
    private var decOut = decoder(context)
    override fun accept(out: Array<FloatArray>) {
        for (frame in out) {
            for (n in 0 until @@MAX_SYMBOLS@@) {
                val k = argmax(joiner(frame, decOut))
                if (k == blank) break
                tokens += k
                context = context.copyOfRange(1, context.size) + k.toLong()
                decOut = decoder(context)
            }
        }
    }
    override fun reset() { tokens.clear(); context = start.copyOf(); decOut = decoder(context) }
}
"""

ORT = """\
// onnxruntime-android: @@GRADLE@@ (build.gradle.kts)
@@ANDROID_IMPORTS@@
import ai.onnxruntime.*
import java.nio.FloatBuffer
import java.nio.LongBuffer

/** The encoder on ONNX Runtime: states allocated from manifest.json and fed by name; each `<state>_next` output
 *  is copied into a tensor we own, so a call's Result can be closed at once. */
class OrtEncoder(private val env: OrtEnvironment, manifest: JSONObject, model: ByteArray) : Encoder {
    private val session = env.createSession(model, OrtSession.SessionOptions().apply {
        setIntraOpNumThreads(1)  // the files were verified on the CPU provider (README: parity table)
    })
    private val specs = objects(graph(manifest, "encoder").getJSONArray("states"))
    private var states: Map<String, OnnxTensor> = specs.associate { it.getString("name") to initial(it) }

    private fun initial(s: JSONObject): OnnxTensor = when (s.getString("dtype")) {
        "float32" -> OnnxTensor.createTensor(env, FloatBuffer.wrap(FloatArray(sizeOf(s)) { s.getDouble("initial").toFloat() }), shapeOf(s))
        "int64" -> OnnxTensor.createTensor(env, LongBuffer.wrap(LongArray(sizeOf(s)) { s.getLong("initial") }), shapeOf(s))
        else -> error("state dtype ${s.getString("dtype")}")
    }

    private fun copy(t: OnnxTensor): OnnxTensor = when (t.info.type) {
        OnnxJavaType.FLOAT -> OnnxTensor.createTensor(env, t.floatBuffer, t.info.shape)
        OnnxJavaType.INT64 -> OnnxTensor.createTensor(env, t.longBuffer, t.info.shape)
        else -> error("state type ${t.info.type}")
    }

    override fun step(pcm: FloatArray): Array<FloatArray> {
        val result = OnnxTensor.createTensor(env, FloatBuffer.wrap(pcm), longArrayOf(@@XSHAPE_L@@)).use { x ->
            session.run(states + ("@@X@@" to x))
        }
        result.use {
            val next = specs.associate { s -> s.getString("name") to copy(it.get(s.getString("name") + "_next").get() as OnnxTensor) }
            states.values.forEach(OnnxTensor::close)
            states = next
            @Suppress("UNCHECKED_CAST")
            return ((it.get("@@OUT@@").get() as OnnxTensor).value as Array<Array<FloatArray>>)[0]
        }
    }

    override fun reset() {
        states = states.mapValues { (name, t) ->
            val s = specs.first { it.getString("name") == name }
            if (s.getString("reset") == "utterance") { t.close(); initial(s) } else t
        }
    }

    override fun close() { states.values.forEach(OnnxTensor::close); session.close() }
}
@@ORT_TRANSDUCER@@
@@MIC@@"""

ORT_TRANSDUCER = """
/** The transducer's decoder and joiner on ONNX Runtime, as the functions TransducerGreedy takes. */
fun floats(t: OnnxTensor): FloatArray = t.floatBuffer.let { b -> FloatArray(b.remaining()).also { b.get(it) } }
fun ortDecoder(env: OrtEnvironment, session: OrtSession): (LongArray) -> FloatArray = { context ->
    OnnxTensor.createTensor(env, LongBuffer.wrap(context), longArrayOf(@@YSHAPE_L@@)).use { y ->
        session.run(mapOf("@@Y@@" to y)).use { r -> floats(r.get("@@DEC_OUT@@").get() as OnnxTensor) }
    }
}
fun ortJoiner(env: OrtEnvironment, session: OrtSession): (FloatArray, FloatArray) -> FloatArray = { enc, dec ->
    OnnxTensor.createTensor(env, FloatBuffer.wrap(enc), longArrayOf(@@JSHAPE_L@@)).use { e ->
        OnnxTensor.createTensor(env, FloatBuffer.wrap(dec), longArrayOf(@@DSHAPE_L@@)).use { d ->
            session.run(mapOf("@@J_ENC@@" to e, "@@J_DEC@@" to d)).use { r -> floats(r.get("@@LOGITS@@").get() as OnnxTensor) }
        }
    }
}
"""

MIC = """\
// Use: call transcribe() on a background thread once RECORD_AUDIO is granted; the files are in src/main/assets/.
@SuppressLint("MissingPermission")  // the caller checked RECORD_AUDIO
fun transcribe(context: Context, listening: () -> Boolean, onPartial: (String) -> Unit, onFinal: (String) -> Unit) {
    val assets = context.assets
    val manifest = JSONObject(assets.open("manifest.json").bufferedReader().readText())
    val symbols = readTokens(assets.open("tokens.txt").bufferedReader().readText())
@@OPEN@@
    val recognizer = Recognizer(encoder, search, symbols)
    val record = AudioRecord(MediaRecorder.AudioSource.VOICE_RECOGNITION, @@RATE@@, AudioFormat.CHANNEL_IN_MONO,
        AudioFormat.ENCODING_PCM_FLOAT, maxOf(AudioRecord.getMinBufferSize(@@RATE@@, AudioFormat.CHANNEL_IN_MONO,
        AudioFormat.ENCODING_PCM_FLOAT), 4 * @@RATE@@))
    val block = FloatArray(@@BLOCK@@)  // 100 ms
    record.startRecording()
    while (listening()) {
        val n = record.read(block, 0, block.size, AudioRecord.READ_BLOCKING)
        if (n <= 0) continue
        recognizer.accept(block.copyOf(n))?.let(onFinal)  // an utterance ended (endpoint)
        onPartial(recognizer.partial())
    }
    record.stop(); record.release()
    onFinal(recognizer.finish())  // stop: the zeros flush the last words
    encoder.close()
}
```"""

ANDROID_IMPORTS = """\
import android.annotation.SuppressLint
import android.content.Context
import android.media.AudioFormat
import android.media.AudioRecord
import android.media.MediaRecorder
import org.json.JSONObject"""


LITERT = """\
// LiteRT: @@GRADLE@@ (build.gradle.kts); package org.tensorflow.lite
@@ANDROID_IMPORTS@@
import android.content.res.AssetManager
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

fun direct(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())
fun filled(s: JSONObject): ByteBuffer = when (s.getString("dtype")) {
    "float32" -> direct(4 * sizeOf(s)).apply { repeat(sizeOf(s)) { putFloat(s.getDouble("initial").toFloat()) } }
    "int64" -> direct(8 * sizeOf(s)).apply { repeat(sizeOf(s)) { putLong(s.getLong("initial")) } }
    else -> error("state dtype ${s.getString("dtype")}")
}
fun floats(b: ByteBuffer): FloatArray = FloatArray(b.capacity() / 4).also { b.rewind(); b.asFloatBuffer().get(it) }

/** The encoder through `runSignature` (inputs and outputs by name, signature "@@SIGNATURE@@"). Each state has two
 *  buffers, swapped after every call: one is read as `<state>`, the other receives `<state>_next`. */
class LiteRtEncoder(manifest: JSONObject, model: ByteBuffer) : Encoder {
    private val interpreter = Interpreter(model, Interpreter.Options().setNumThreads(1))
    private val specs = objects(graph(manifest, "encoder").getJSONArray("states"))
    private var states = specs.associate { it.getString("name") to filled(it) }
    private var next = specs.associate { it.getString("name") to filled(it) }
    private val x = direct(4 * @@N@@)
    private val out = direct(4 * @@OUT_SIZE@@)  // @@OUT@@ @@OUTSHAPE@@ float32

    override fun step(pcm: FloatArray): Array<FloatArray> {
        x.rewind(); x.asFloatBuffer().put(pcm)
        val inputs = HashMap<String, Any>().apply { put("@@X@@", x.rewind()); states.forEach { (k, b) -> put(k, b.rewind()) } }
        val outputs = HashMap<String, Any>().apply { put("@@OUT@@", out.rewind()); next.forEach { (k, b) -> put(k + "_next", b.rewind()) } }
        interpreter.runSignature(inputs, outputs, "@@SIGNATURE@@")
        states = next.also { next = states }  // swap: what was written is the state now
        val flat = floats(out)
        return Array(@@FRAMES@@) { t -> flat.copyOfRange(t * @@DIM@@, (t + 1) * @@DIM@@) }
    }

    override fun reset() {
        for (s in specs) if (s.getString("reset") == "utterance") states = states + (s.getString("name") to filled(s))
    }

    override fun close() = interpreter.close()
}
@@LITERT_TRANSDUCER@@
/** A .tflite file in assets, memory-mapped (build.gradle.kts: `androidResources { noCompress += "tflite" }`). */
fun mapped(assets: AssetManager, name: String): ByteBuffer = assets.openFd(name).use { fd ->
    FileInputStream(fd.fileDescriptor).channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
}

@@MIC@@"""

LITERT_TRANSDUCER = """
/** The transducer's decoder and joiner on LiteRT, as the functions TransducerGreedy takes. */
fun liteRtDecoder(interpreter: Interpreter): (LongArray) -> FloatArray {
    val y = direct(8 * @@CONTEXT@@)
    val out = direct(4 * @@DEC_SIZE@@)
    return { context ->
        y.rewind(); y.asLongBuffer().put(context)
        interpreter.runSignature(mapOf("@@Y@@" to y.rewind()), mapOf("@@DEC_OUT@@" to out.rewind()), "@@SIGNATURE@@")
        floats(out)
    }
}
fun liteRtJoiner(interpreter: Interpreter): (FloatArray, FloatArray) -> FloatArray {
    val e = direct(4 * @@J_SIZE@@)
    val d = direct(4 * @@D_SIZE@@)
    val out = direct(4 * @@VOCAB@@)
    return { enc, dec ->
        e.rewind(); e.asFloatBuffer().put(enc); d.rewind(); d.asFloatBuffer().put(dec)
        interpreter.runSignature(mapOf("@@J_ENC@@" to e.rewind(), "@@J_DEC@@" to d.rewind()), mapOf("@@LOGITS@@" to out.rewind()), "@@SIGNATURE@@")
        floats(out)
    }
}
"""


def kotlin_blocks(sig: Signature, plan: AudioInPlan, files: dict[str, dict[str, str]], tools: dict | None,
                  tflite_signature: str) -> dict[str, str]:
    """{'shared': ..., 'ort': ..., 'litert': ...} (a runtime's block only
    when `files` names its encoder file). `files`: backend -> graph -> path."""
    v = loop_numbers(sig, plan)
    v["SEARCH"] = fill(CTC if sig.decoder == "ctc" else TRANSDUCER, v)
    out = {"shared": "```kotlin\n" + fill(SHARED, v) + "```"}
    v["ANDROID_IMPORTS"] = ANDROID_IMPORTS
    if "ort" in files:
        f = files["ort"]
        w = dict(v, GRADLE=appdeps.gradle_line(appdeps.library("android", "ort"), tools),
                 XSHAPE_L=shape_literal(v["XSHAPE_T"], "L"))
        open_ = ["val env = OrtEnvironment.getEnvironment()",
                 f'val encoder = OrtEncoder(env, manifest, assets.open("{f["encoder"]}").readBytes())']
        if sig.decoder == "transducer":
            w["ORT_TRANSDUCER"] = fill(ORT_TRANSDUCER, w)
            open_ += [f'val decoder = env.createSession(assets.open("{f["decoder"]}").readBytes())',
                      f'val joiner = env.createSession(assets.open("{f["joiner"]}").readBytes())',
                      "val search = TransducerGreedy(ortDecoder(env, decoder), ortJoiner(env, joiner))"]
        else:
            w["ORT_TRANSDUCER"] = ""
            open_ += ["val search = CtcGreedy()"]
        w["MIC"] = fill(MIC, dict(w, OPEN="\n".join("    " + line for line in open_)))
        out["ort"] = "```kotlin\n" + fill(ORT, w)
    if "tflite" in files:
        f = files["tflite"]
        w = dict(v, GRADLE=appdeps.gradle_line(appdeps.library("android", "tflite"), tools),
                 SIGNATURE=tflite_signature)
        open_ = [f'val encoder = LiteRtEncoder(manifest, mapped(assets, "{f["encoder"]}"))']
        if sig.decoder == "transducer":
            w["LITERT_TRANSDUCER"] = fill(LITERT_TRANSDUCER, w)
            open_ += [f'val search = TransducerGreedy(liteRtDecoder(Interpreter(mapped(assets, "{f["decoder"]}"))),',
                      f'    liteRtJoiner(Interpreter(mapped(assets, "{f["joiner"]}"))))']
        else:
            w["LITERT_TRANSDUCER"] = ""
            open_ += ["val search = CtcGreedy()"]
        w["MIC"] = fill(MIC, dict(w, OPEN="\n".join("    " + line for line in open_)))
        out["litert"] = "```kotlin\n" + fill(LITERT, w)
    return out


__all__ = ["kotlin_blocks"]
