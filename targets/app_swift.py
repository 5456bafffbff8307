"""The iOS code of an audio-in bundle's card: Swift from microphone PCM to
text, generated from the signature like targets/app_kotlin.py (the same
loop, numbers from targets/app_common.py).

- `shared`: Foundation only: manifest.json's states, greedy decoding, tokens
  to text, the project's endpointing, `Recognizer` and the AVAudioEngine tap.
- `onnxruntime`: `OrtEncoder` (and decoder/joiner) on onnxruntime-objc.
- `coreml`: `CoreMLEncoder` (and decoder/joiner) on the compiled
  .mlpackage (Core ML has no int64 and no rank-0 tensors: int64 is int32 and
  shape [] is [1] there, as targets/coreml.py converts them).
Swift cannot be compiled here: see targets/app_kotlin.py. The runtime
blocks' templates are in targets/app_swift_runtimes.py.
"""

from __future__ import annotations

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature

from . import appdeps
from .app_common import fill, loop_numbers
from .app_swift_runtimes import COREML, COREML_TRANSDUCER, ORT, ORT_TRANSDUCER, USE

SHARED = """\
// Shared by both runtimes (Foundation, AVFoundation): manifest.json's states, greedy decoding, tokens to text,
// endpointing and the PCM -> text loop. Generated for this bundle.
import AVFoundation
import Foundation

struct StateSpec { let name: String; let shape: [Int]; let dtype: String; let initial: Double; let reset: String }

/** manifest.json's encoder states: name, shape, dtype, initial value, reset scope. */
func encoderStates(_ manifest: [String: Any]) -> [StateSpec] {
    let graphs = (manifest["signature"] as! [String: Any])["graphs"] as! [[String: Any]]
    let encoder = graphs.first { ($0["name"] as! String) == "encoder" }!
    return (encoder["states"] as! [[String: Any]]).map {
        StateSpec(name: $0["name"] as! String, shape: $0["shape"] as! [Int], dtype: $0["dtype"] as! String,
                  initial: ($0["initial"] as! NSNumber).doubleValue, reset: $0["reset"] as! String)
    }
}
func loadJSON(_ url: URL) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any] }
func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] }! }

/** The encoder with its states: OrtEncoder or CoreMLEncoder below. (Not `Encoder`: that name would shadow
 *  Swift.Encoder, which every Encodable in the app target refers to.) */
protocol SpeechEncoder {
    /** One call: @@N@@ samples in [-1, 1] (`@@X@@` @@XSHAPE@@). Returns `@@OUT@@` @@OUTSHAPE@@ as
     *  [@@FRAMES@@][@@DIM@@]; every `<state>_next` output becomes the next call's `<state>`.
     *  The states, allocated from manifest.json at run time: @@STATES@@. */
    func step(_ pcm: [Float]) throws -> [[Float]]
    /** Every state whose reset scope is "utterance" back to its initial value (manifest.json). */
    func reset() throws
}

/** Greedy decoding, fed one call's encoder output at a time. */
protocol Search: AnyObject {
    var tokens: [Int] { get }
    func accept(_ out: [[Float]]) throws
    func reset() throws
}
@@SEARCH@@
/** tokens.txt: one `symbol id` per line; "\\u{2581}" starts a word. */
func readTokens(_ text: String) -> [Int: String] {
    var out: [Int: String] = [:]
    for line in text.split(separator: "\\n") where line.contains(" ") {
        let i = line.lastIndex(of: " ")!
        out[Int(line[line.index(after: i)...].trimmingCharacters(in: .whitespacesAndNewlines))!] = String(line[..<i])
    }
    return out
}
func toText(_ ids: [Int], _ symbols: [Int: String]) -> String {
    ids.map { symbols[$0]! }.joined().replacingOccurrences(of: "\\u{2581}", with: " ")
        .split(separator: " ").joined(separator: " ")
}

@@ENDPOINT_DOC@@
final class Endpointer {
    enum Event { case none, utterance, idle }
    private var frame = [Float](); private var speech = false
    private var pending = 0, silent = 0, utterance = -1, idle = 0

    func reset() { frame = []; speech = false; pending = 0; silent = 0; utterance = -1; idle = 0 }

    func accept(_ pcm: [Float]) -> Event {
        var event = Event.none
        for x in pcm {
            frame.append(x)
            if frame.count < @@FRAME@@ { continue }
            let db = 10 * log10(frame.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(frame.count) + 1e-12)
            frame.removeAll(keepingCapacity: true)
            let now = step(db)
            if now != .none { event = now }
        }
        return event
    }

    private func step(_ db: Double) -> Event {
        if !speech {
            if db > @@ON_DB@@ {
                pending += 1
                if pending >= @@MIN_SPEECH@@ { speech = true; pending = 0; silent = 0; idle = 0; if utterance < 0 { utterance = 0 } }
            } else { silent += pending + 1; idle += pending + 1; pending = 0 }  // a loud run too short to count is silence
        } else if db < @@OFF_DB@@ {
            pending += 1
            if pending >= @@MIN_SILENCE@@ { speech = false; silent = pending; pending = 0 }
        } else { pending = 0 }
        if utterance >= 0 {
            utterance += 1
            if (!speech && silent >= @@TRAILING@@) || (speech && utterance >= @@MAX_UTT@@) {
                utterance = -1; silent = 0; idle = 0; speech = false; pending = 0
                return .utterance
            }
        } else if !speech && idle >= @@MAX_IDLE@@ { idle = 0; return .idle }
        return .none
    }
}

/** Microphone PCM in, text out. The encoder takes @@N@@ samples (@@CALL_MS@@ ms) per call; after each reset the first
 *  @@WARMUP@@ call(s) only fill the in-graph frontend's history (their output means nothing). */
final class Recognizer {
    private let encoder: SpeechEncoder, search: Search, symbols: [Int: String]
    private var call = [Float](), calls = 0, samples = 0
    private let endpointer = Endpointer()

    init(encoder: SpeechEncoder, search: Search, symbols: [Int: String]) {
        self.encoder = encoder; self.search = search; self.symbols = symbols
    }

    /** @@RATE@@ Hz mono float samples in [-1, 1], any block size. Returns the final text of an utterance that ended
     *  in this block, else nil. */
    func accept(_ pcm: [Float]) throws -> String? {
        try feed(pcm)
        switch endpointer.accept(pcm) {
        case .utterance: return try finish()
        case .idle: let text = try finish(); return text.isEmpty ? nil : text
        case .none: return nil
        }
    }

    /** The current utterance's text so far. */
    func partial() -> String { toText(search.tokens, symbols) }

    /** At an endpoint and when the user stops: zeros after the speech (whole calls) so its last frames reach the
     *  output, the text, then every utterance state, the decoder and the frontend history back to the start. */
    func finish() throws -> String {
        if samples > 0 { try feed([Float](repeating: 0, count: Recognizer.tailPadding(samples))) }
        let text = partial()
        try encoder.reset(); try search.reset(); endpointer.reset()
        call = []; calls = 0; samples = 0
        return text
    }

    private func feed(_ pcm: [Float]) throws {
        for x in pcm {
            call.append(x)
            if call.count < @@N@@ { continue }
            let out = try encoder.step(call)
            call.removeAll(keepingCapacity: true)
            if calls >= @@WARMUP@@ { try search.accept(out) } else { calls += 1 }
        }
        samples += pcm.count
    }

@@TAIL_DOC@@
    static func tailPadding(_ n: Int) -> Int {
        func frames(_ m: Int) -> Int { @@FRAMES_OF_SWIFT@@ }  // kaldi's frame count, snip_edges=@@SNIP@@
        func steps(_ f: Int) -> Int { f >= @@C@@ ? (f - @@C@@) / @@S@@ + 1 : 0 }
        var pad = @@MIN_PAD@@
        while steps(frames(n + pad)) * @@S@@ < frames(n) { pad += @@HOP@@ }
        return (steps(frames(n + pad)) + @@WARMUP@@) * @@N@@ - n
    }
}

/** The microphone at @@RATE@@ Hz mono float32 through AVAudioEngine; the model runs on `queue`, off the audio thread.
 *  Needs NSMicrophoneUsageDescription in Info.plist. */
final class Microphone {
    private let engine = AVAudioEngine()
    private let queue = DispatchQueue(label: "speech")

    /** `onError` gets what the model throws (the loop stops feeding nothing silently: every call's error arrives). */
    func start(_ recognizer: Recognizer, onPartial: @escaping (String) -> Void, onFinal: @escaping (String) -> Void,
               onError: @escaping (Error) -> Void) throws {
        try AVAudioSession.sharedInstance().setCategory(.record, mode: .measurement)
        try AVAudioSession.sharedInstance().setActive(true)
        let input = engine.inputNode
        let native = input.outputFormat(forBus: 0)
        let format = AVAudioFormat(commonFormat: .pcmFormatFloat32, sampleRate: @@RATE@@, channels: 1, interleaved: false)!
        let converter = AVAudioConverter(from: native, to: format)!
        input.installTap(onBus: 0, bufferSize: 4096, format: native) { buffer, _ in
            let capacity = AVAudioFrameCount(Double(buffer.frameLength) * @@RATE@@ / native.sampleRate) + 1
            let out = AVAudioPCMBuffer(pcmFormat: format, frameCapacity: capacity)!
            var given = false
            _ = converter.convert(to: out, error: nil) { _, status in
                if given { status.pointee = .noDataNow; return nil }
                given = true; status.pointee = .haveData; return buffer
            }
            let pcm = Array(UnsafeBufferPointer(start: out.floatChannelData![0], count: Int(out.frameLength)))
            self.queue.async {
                do {
                    if let text = try recognizer.accept(pcm) { onFinal(text) }  // an utterance ended (endpoint)
                    onPartial(recognizer.partial())
                } catch { onError(error) }
            }
        }
        try engine.start()
    }

    /** Stop: the zeros flush the last words. */
    func stop(_ recognizer: Recognizer, onFinal: @escaping (String) -> Void, onError: @escaping (Error) -> Void) {
        engine.inputNode.removeTap(onBus: 0)
        engine.stop()
        queue.async {
            do { onFinal(try recognizer.finish()) } catch { onError(error) }
        }
    }
}
```"""

CTC = """
/** CTC greedy: argmax per frame, collapse repeats, drop the blank (id @@BLANK@@). */
final class CtcGreedy: Search {
    private(set) var tokens: [Int] = []
    private var prev = @@BLANK@@
    func accept(_ out: [[Float]]) {
        for frame in out {
            let k = argmax(frame)
            if k != @@BLANK@@ && k != prev { tokens.append(k) }
            prev = k
        }
    }
    func reset() { tokens = []; prev = @@BLANK@@ }
}
"""

TRANSDUCER = """
/** Transducer greedy search (the toolchain's runtime_py.decoding.TransducerGreedy): the decoder takes the last @@CONTEXT@@ token ids,
 *  starting from `start` (@@START_DOC@@); for each encoder frame the joiner scores it against the decoder output;
 *  emit the argmax while it is not the blank (id @@BLANK@@), at most @@MAX_SYMBOLS@@ per frame, re-running the decoder. */
final class TransducerGreedy: Search {
    private let decoder: ([Int64]) throws -> [Float]             // `@@Y@@` @@YSHAPE@@ -> `@@DEC_OUT@@` (flat)
    private let joiner: ([Float], [Float]) throws -> [Float]     // `@@J_ENC@@`, `@@J_DEC@@` -> `@@LOGITS@@` (flat)
    private let start: [Int64]
    private(set) var tokens: [Int] = []
    private var context: [Int64], decOut: [Float]

    init(decoder: @escaping ([Int64]) throws -> [Float], joiner: @escaping ([Float], [Float]) throws -> [Float],
         start: [Int64] = [@@START_SWIFT@@]) throws {
        self.decoder = decoder; self.joiner = joiner; self.start = start
        context = start; decOut = try decoder(start)
    }
    func accept(_ out: [[Float]]) throws {
        for frame in out {
            for _ in 0..<@@MAX_SYMBOLS@@ {
                let k = try argmax(joiner(frame, decOut))
                if k == @@BLANK@@ { break }
                tokens.append(k)
                context = Array(context.dropFirst()) + [Int64(k)]
                decOut = try decoder(context)
            }
        }
    }
    func reset() throws { tokens = []; context = start; decOut = try decoder(context) }
}
"""

def _stem(path: str) -> str:
    return path[: -len(".mlpackage")] if path.endswith(".mlpackage") else path


def swift_blocks(sig: Signature, plan: AudioInPlan, files: dict[str, dict[str, str]], tools: dict | None) -> dict:
    """{'shared': ..., 'ort': ..., 'coreml': ...} (a runtime's block only when
    `files` names its encoder file). `files`: backend -> graph -> path."""
    v = loop_numbers(sig, plan)
    v["SEARCH"] = fill(CTC if sig.decoder == "ctc" else TRANSDUCER, v)
    v["XSHAPE_C"] = ", ".join(str(d) for d in v["XSHAPE_T"])
    if sig.decoder == "transducer":
        v["YSHAPE_C"] = ", ".join(str(d) for d in sig.graph("decoder").inputs[0].shape)
    out = {"shared": "```swift\n" + fill(SHARED, v)}
    if "ort" in files:
        f = files["ort"]
        lib = appdeps.library("ios", "ort")
        w = dict(v, POD=f"`{appdeps.pod_line(lib, tools)}`", SPM=f"{lib.spm}, version {lib.version(tools)}",
                 IMPORT=appdeps.swift_imports(lib))
        open_ = ["let env = try ORTEnv(loggingLevel: ORTLoggingLevel.warning)",
                 f'let encoder = try OrtEncoder(env: env, manifest: manifest, modelPath: path("{f["encoder"]}"))']
        if sig.decoder == "transducer":
            w["ORT_TRANSDUCER"] = fill(ORT_TRANSDUCER, w)
            open_ += [f'let decoder = try ORTSession(env: env, modelPath: path("{f["decoder"]}"), sessionOptions: sessionOptions(threads: 1))',
                      f'let joiner = try ORTSession(env: env, modelPath: path("{f["joiner"]}"), sessionOptions: sessionOptions(threads: 1))',
                      "let search = try TransducerGreedy(decoder: ortDecoder(decoder), joiner: ortJoiner(joiner))"]
        else:
            w["ORT_TRANSDUCER"] = ""
            open_ += ["let search = CtcGreedy()"]
        w["USE"] = fill(USE, dict(w, OPEN="\n".join("    " + line for line in open_)))
        out["ort"] = "```swift\n" + fill(ORT, w)
    if "coreml" in files:
        f = files["coreml"]
        w = dict(v)
        open_ = [f'let encoder = try CoreMLEncoder(manifest: manifest, model: compiled("{_stem(f["encoder"])}"))']
        if sig.decoder == "transducer":
            w["COREML_TRANSDUCER"] = fill(COREML_TRANSDUCER, w)
            open_ += [f'let search = try TransducerGreedy(decoder: coreMLDecoder(compiled("{_stem(f["decoder"])}")),',
                      f'                                  joiner: coreMLJoiner(compiled("{_stem(f["joiner"])}")))']
        else:
            w["COREML_TRANSDUCER"] = ""
            open_ += ["let search = CtcGreedy()"]
        w["USE"] = fill(USE, dict(w, OPEN="\n".join("    " + line for line in open_)))
        out["coreml"] = "```swift\n" + fill(COREML, w)
    return out


__all__ = ["swift_blocks"]
