"""The runtime-specific Swift of an audio-in bundle's card (templates filled
by targets/app_swift.py): onnxruntime-objc (`OrtEncoder`, decoder/joiner),
Core ML (`CoreMLEncoder`, decoder/joiner; int64 is int32 and shape [] is [1]
there) and the `startTranscribing` function that wires the microphone to
the shared `Recognizer`."""

from __future__ import annotations

ORT = """\
// onnxruntime-objc: @@POD@@ (Podfile), or Swift Package Manager @@SPM@@
@@IMPORT@@

@@ORT_OPTIONS_SWIFT@@

func ortValue(_ values: [Float], _ shape: [Int]) throws -> ORTValue {
    let data = values.withUnsafeBufferPointer { NSMutableData(bytes: $0.baseAddress, length: $0.count * 4) }
    return try ORTValue(tensorData: data, elementType: .float, shape: shape.map { NSNumber(value: $0) })
}
func ortValue(_ values: [Int64], _ shape: [Int]) throws -> ORTValue {
    let data = values.withUnsafeBufferPointer { NSMutableData(bytes: $0.baseAddress, length: $0.count * 8) }
    return try ORTValue(tensorData: data, elementType: .int64, shape: shape.map { NSNumber(value: $0) })
}
func floats(_ value: ORTValue) throws -> [Float] {
    let data = try value.tensorData() as Data
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/** The encoder on ONNX Runtime: states allocated from manifest.json and fed by name; each `<state>_next`
 *  output is the next call's `<state>`. */
final class OrtEncoder: SpeechEncoder {
    private let session: ORTSession
    private let specs: [StateSpec]
    private var states: [String: ORTValue] = [:]

    init(env: ORTEnv, manifest: [String: Any], modelPath: String) throws {
        session = try ORTSession(env: env, modelPath: modelPath, sessionOptions: sessionOptions())
        specs = encoderStates(manifest)
        for s in specs { states[s.name] = try OrtEncoder.initial(s) }
    }

    private static func initial(_ s: StateSpec) throws -> ORTValue {
        let n = s.shape.reduce(1, *)
        switch s.dtype {
        case "float32": return try ortValue([Float](repeating: Float(s.initial), count: n), s.shape)
        case "int64": return try ortValue([Int64](repeating: Int64(s.initial), count: n), s.shape)
        default: fatalError("state dtype \\(s.dtype)")
        }
    }

    func step(_ pcm: [Float]) throws -> [[Float]] {
        var feeds = states
        feeds["@@X@@"] = try ortValue(pcm, [@@XSHAPE_C@@])
        let names = Set(["@@OUT@@"] + specs.map { $0.name + "_next" })
        let out = try session.run(withInputs: feeds, outputNames: names, runOptions: nil)
        for s in specs { states[s.name] = out[s.name + "_next"]! }
        let flat = try floats(out["@@OUT@@"]!)
        return (0..<@@FRAMES@@).map { Array(flat[$0 * @@DIM@@ ..< ($0 + 1) * @@DIM@@]) }
    }

    func reset() throws { for s in specs where s.reset == "utterance" { states[s.name] = try OrtEncoder.initial(s) } }
}
@@ORT_TRANSDUCER@@
@@USE@@"""

ORT_TRANSDUCER = """
/** The transducer's decoder and joiner on ONNX Runtime, as the functions TransducerGreedy takes. */
func ortDecoder(_ session: ORTSession) -> ([Int64]) throws -> [Float] {
    return { context in
        try floats(session.run(withInputs: ["@@Y@@": ortValue(context, [@@YSHAPE_C@@])], outputNames: ["@@DEC_OUT@@"],
                               runOptions: nil)["@@DEC_OUT@@"]!)
    }
}
func ortJoiner(_ session: ORTSession) -> ([Float], [Float]) throws -> [Float] {
    return { enc, dec in
        try floats(session.run(withInputs: ["@@J_ENC@@": ortValue(enc, [@@JSHAPE@@]), "@@J_DEC@@": ortValue(dec, [@@DSHAPE@@])],
                               outputNames: ["@@LOGITS@@"], runOptions: nil)["@@LOGITS@@"]!)
    }
}
"""

COREML = """\
// Core ML: part of iOS, nothing to add. Xcode compiles the .mlpackage into the app as .mlmodelc (set the model's
// "Model Class" code generation to None: the code below loads it by name). Core ML has no int64 or rank-0 tensors:
// an int64 tensor is int32 here and shape [] is [1] (manifest.json spec_checks).
import CoreML

func multiArray(_ values: [Float], _ shape: [Int]) throws -> MLMultiArray {
    let a = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)
    let p = a.dataPointer.bindMemory(to: Float.self, capacity: values.count)
    for (i, v) in values.enumerated() { p[i] = v }
    return a
}
func multiArray(_ values: [Int32], _ shape: [Int]) throws -> MLMultiArray {
    let a = try MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .int32)
    let p = a.dataPointer.bindMemory(to: Int32.self, capacity: values.count)
    for (i, v) in values.enumerated() { p[i] = v }
    return a
}
func floats(_ a: MLMultiArray) -> [Float] { (0..<a.count).map { a[$0].floatValue } }
func compiled(_ name: String) throws -> MLModel {
    let config = MLModelConfiguration()
    config.computeUnits = .all  // CPU, GPU and the Neural Engine
    return try MLModel(contentsOf: Bundle.main.url(forResource: name, withExtension: "mlmodelc")!, configuration: config)
}

/** The encoder on Core ML: states from manifest.json, fed by name; each `<state>_next` output is the next
 *  call's `<state>`. */
final class CoreMLEncoder: SpeechEncoder {
    private let model: MLModel
    private let specs: [StateSpec]
    private var states: [String: MLMultiArray] = [:]

    init(manifest: [String: Any], model: MLModel) throws {
        self.model = model
        specs = encoderStates(manifest)
        for s in specs { states[s.name] = try CoreMLEncoder.initial(s) }
    }

    private static func initial(_ s: StateSpec) throws -> MLMultiArray {
        let shape = s.shape.isEmpty ? [1] : s.shape
        let n = shape.reduce(1, *)
        return s.dtype == "float32" ? try multiArray([Float](repeating: Float(s.initial), count: n), shape)
            : try multiArray([Int32](repeating: Int32(s.initial), count: n), shape)
    }

    func step(_ pcm: [Float]) throws -> [[Float]] {
        var feeds: [String: Any] = states
        feeds["@@X@@"] = try multiArray(pcm, [@@XSHAPE_C@@])
        let out = try model.prediction(from: MLDictionaryFeatureProvider(dictionary: feeds))
        for s in specs { states[s.name] = out.featureValue(for: s.name + "_next")!.multiArrayValue! }
        let flat = floats(out.featureValue(for: "@@OUT@@")!.multiArrayValue!)
        return (0..<@@FRAMES@@).map { Array(flat[$0 * @@DIM@@ ..< ($0 + 1) * @@DIM@@]) }
    }

    func reset() throws { for s in specs where s.reset == "utterance" { states[s.name] = try CoreMLEncoder.initial(s) } }
}
@@COREML_TRANSDUCER@@
@@USE@@"""

USE = """\
/** Use, once microphone permission is granted (AVAudioSession.sharedInstance().requestRecordPermission, iOS 16;
 *  AVAudioApplication's from iOS 17); the files are in the app bundle. Keep the returned pair alive; to stop:
 *  `microphone.stop(recognizer, onFinal: onFinal, onError: onError)`. */
func startTranscribing(onPartial: @escaping (String) -> Void, onFinal: @escaping (String) -> Void,
                       onError: @escaping (Error) -> Void) throws -> (Microphone, Recognizer) {
    func path(_ name: String) -> String { Bundle.main.path(forResource: name, ofType: nil)! }
    let manifest = try loadJSON(URL(fileURLWithPath: path("manifest.json")))
    let symbols = try readTokens(String(contentsOfFile: path("tokens.txt"), encoding: .utf8))
@@OPEN@@
    let recognizer = Recognizer(encoder: encoder, search: search, symbols: symbols)
    let microphone = Microphone()
    try microphone.start(recognizer, onPartial: onPartial, onFinal: onFinal, onError: onError)
    return (microphone, recognizer)
}
```"""

COREML_TRANSDUCER = """
/** The transducer's decoder (`@@Y@@` is int32 in Core ML) and joiner, as the functions TransducerGreedy takes. */
func coreMLDecoder(_ model: MLModel) -> ([Int64]) throws -> [Float] {
    return { context in
        let y = try multiArray(context.map { Int32($0) }, [@@YSHAPE_C@@])
        return try floats(model.prediction(from: MLDictionaryFeatureProvider(dictionary: ["@@Y@@": y]))
            .featureValue(for: "@@DEC_OUT@@")!.multiArrayValue!)
    }
}
func coreMLJoiner(_ model: MLModel) -> ([Float], [Float]) throws -> [Float] {
    return { enc, dec in
        let feeds = try ["@@J_ENC@@": multiArray(enc, [@@JSHAPE@@]), "@@J_DEC@@": multiArray(dec, [@@DSHAPE@@])]
        return try floats(model.prediction(from: MLDictionaryFeatureProvider(dictionary: feeds))
            .featureValue(for: "@@LOGITS@@")!.multiArrayValue!)
    }
}
"""


__all__ = ["COREML", "COREML_TRANSDUCER", "ORT", "ORT_TRANSDUCER", "USE"]
