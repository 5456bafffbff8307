"""The runtime-specific Kotlin of an audio-in bundle's card (templates filled
by targets/app_kotlin.py): ONNX Runtime (`OrtEncoder`, decoder/joiner),
LiteRT (`LiteRtEncoder`, decoder/joiner) and the `transcribe` function that
wires `AudioRecord` to the shared `Recognizer`."""

from __future__ import annotations

ORT = """\
// onnxruntime-android: @@GRADLE@@ (build.gradle.kts)
@@ANDROID_IMPORTS@@
import ai.onnxruntime.*
import java.nio.FloatBuffer
import java.nio.LongBuffer

@@ORT_OPTIONS_KT@@

/** The encoder on ONNX Runtime: states allocated from manifest.json and fed by name; each `<state>_next` output
 *  is copied into a tensor we own, so a call's Result can be closed at once. */
class OrtEncoder(private val env: OrtEnvironment, manifest: JSONObject, model: ByteArray) : SpeechEncoder {
    private val session = env.createSession(model, sessionOptions())
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
/** Every graph's interpreter (encoder, decoder, joiner): one thread, as the files were verified (README: parity table). */
fun interpreter(model: ByteBuffer): Interpreter = Interpreter(model, Interpreter.Options().setNumThreads(1))
fun floats(b: ByteBuffer): FloatArray = FloatArray(b.capacity() / 4).also { b.rewind(); b.asFloatBuffer().get(it) }

/** The encoder through `runSignature` (inputs and outputs by name, signature "@@SIGNATURE@@"). Each state has two
 *  buffers, swapped after every call: one is read as `<state>`, the other receives `<state>_next`. */
class LiteRtEncoder(manifest: JSONObject, model: ByteBuffer) : SpeechEncoder {
    private val interpreter = interpreter(model)
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


__all__ = ["ANDROID_IMPORTS", "LITERT", "LITERT_TRANSDUCER", "MIC", "ORT", "ORT_TRANSDUCER"]
