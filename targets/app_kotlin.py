"""The Android code of an audio-in bundle's card: Kotlin from microphone PCM
to text, generated from the signature (every name, shape and number is the
bundle's own; tests/test_app_code.py checks them against it).

- `shared`: what both runtimes use: manifest.json helpers, greedy decoding
  (CTC, or the transducer's from `decoder_start`), tokens to text, the
  project's endpointing (runtime_py/vad.py's numbers) and the loop
  (`Recognizer`): whole calls of PCM, the warmup calls skipped, zeros at an
  endpoint or at stop, then every utterance state reset.
- `ort`: `OrtEncoder` and the transducer's decoder/joiner on
  onnxruntime-android, and the wiring to `AudioRecord`.
- `litert`: the same on LiteRT's `Interpreter.runSignature`.
(The runtime blocks' templates are in targets/app_kotlin_runtimes.py.)
Kotlin cannot be compiled here: the calls are the libraries' documented
ones, and the same loop runs in JavaScript in the test suite
(examples/js/transcribe.mjs).
"""

from __future__ import annotations

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature

from . import appdeps
from .app_common import fill, loop_numbers, shape_literal
from .app_kotlin_runtimes import ANDROID_IMPORTS, LITERT, LITERT_TRANSDUCER, MIC, ORT, ORT_TRANSDUCER

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

/** The encoder with its states: OrtEncoder or LiteRtEncoder below (named as in the Swift, where `Encoder` is taken). */
interface SpeechEncoder : AutoCloseable {
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

@@ENDPOINT_DOC@@
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
class Recognizer(private val encoder: SpeechEncoder, private val search: Search, private val symbols: Map<Int, String>) {
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
@@TAIL_DOC_KT@@
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
/** Transducer greedy search (the toolchain's runtime_py.decoding.TransducerGreedy): the decoder takes the last @@CONTEXT@@ token ids,
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
            open_ += [f'val decoder = env.createSession(assets.open("{f["decoder"]}").readBytes(), sessionOptions(1))',
                      f'val joiner = env.createSession(assets.open("{f["joiner"]}").readBytes(), sessionOptions(1))',
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
            open_ += [f'val search = TransducerGreedy(liteRtDecoder(interpreter(mapped(assets, "{f["decoder"]}"))),',
                      f'    liteRtJoiner(interpreter(mapped(assets, "{f["joiner"]}"))))']
        else:
            w["LITERT_TRANSDUCER"] = ""
            open_ += ["val search = CtcGreedy()"]
        w["MIC"] = fill(MIC, dict(w, OPEN="\n".join("    " + line for line in open_)))
        out["litert"] = "```kotlin\n" + fill(LITERT, w)
    return out


__all__ = ["kotlin_blocks"]
