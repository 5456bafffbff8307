// Audio in, text out: what an app does with an audio-in bundle (edge-build
// --audio-in), in JavaScript. Reads a 16-bit PCM WAV, feeds the encoder a
// fixed number of samples per call with every state carried (the frontend
// is inside the graph: no feature code here), decodes greedily and prints
// the transcript.
//
//   node transcribe.mjs BUNDLE [ort|onnx|ort:int8] FILE.wav
//   node transcribe.mjs ../../dist/demo-conformer-audio-android ort:int8 ../../edge/checkpoints/samples/one_two_three.wav
//   # one two three
//
// Exit status 0 with the transcript on stdout; 2 with one error line for a
// bundle that takes features, a missing file, or a WAV it cannot read.
import { readFileSync } from 'node:fs';
import { fail, greedyDecoder, initialStates, openBundle, tensor, toText } from './stateloop.mjs';

const TAIL_PADDING_S = 0.3; // seconds of zeros at least after the speech (the Python client's rule)

// A 16-bit PCM WAV's samples as floats in [-1, 1], channels averaged to mono.
export function readWav(path) {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') throw new Error(`${path} is not a WAV file`);
  let fmt = null;
  for (let at = 12; at + 8 <= buf.length;) {
    const id = buf.toString('latin1', at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    const body = at + 8;
    if (id === 'fmt ') {
      fmt = { format: buf.readUInt16LE(body), channels: buf.readUInt16LE(body + 2), rate: buf.readUInt32LE(body + 4), bits: buf.readUInt16LE(body + 14) };
      if (fmt.format === 0xfffe) fmt.format = buf.readUInt16LE(body + 24); // WAVE_FORMAT_EXTENSIBLE: the sub-format
    } else if (id === 'data') {
      if (!fmt) throw new Error(`${path}: data before the fmt chunk`);
      if (fmt.format !== 1 || fmt.bits !== 16) throw new Error(`${path}: ${fmt.bits}-bit format ${fmt.format}; this reader takes 16-bit PCM`);
      const frames = Math.floor(Math.min(size, buf.length - body) / (2 * fmt.channels));
      const samples = new Float32Array(frames);
      for (let i = 0; i < frames; i++) {
        let sum = 0;
        for (let c = 0; c < fmt.channels; c++) sum += buf.readInt16LE(body + 2 * (i * fmt.channels + c));
        samples[i] = sum / fmt.channels / 32768;
      }
      return { samples, rate: fmt.rate };
    }
    at = body + size + (size & 1); // chunks are word-aligned
  }
  throw new Error(`${path}: no data chunk`);
}

// kaldi's frame count (runtime_py.frontend.num_frames with flush)
function numFrames(n, fe) {
  if (fe.snip_edges) return n < fe.frame_length ? 0 : 1 + Math.floor((n - fe.frame_length) / fe.frame_shift);
  return Math.floor((n + Math.floor(fe.frame_shift / 2)) / fe.frame_shift);
}

// Zeros after the speech, in whole calls (runtime_py.stream.signature_tail_padding):
// at least TAIL_PADDING_S, enough that the last real frame lands in a complete chunk,
// plus the calls the graph lags behind (warmup_calls).
function tailPadding(n, plan) {
  const fe = plan.frontend;
  const [C, S, N] = [plan.chunk_frames, plan.shift_frames, plan.samples_per_call];
  const steps = (total) => (total >= C ? Math.floor((total - C) / S) + 1 : 0);
  const real = numFrames(n, fe);
  let pad = Math.round(TAIL_PADDING_S * fe.sample_rate);
  while (steps(numFrames(n + pad, fe)) * S < real) pad += fe.frame_shift;
  return (steps(numFrames(n + pad, fe)) + plan.warmup_calls) * N - n;
}

const [bundle, choice, wav] = process.argv.slice(2);
if (!bundle || !choice || !wav) fail('usage: node transcribe.mjs BUNDLE [ort|onnx|ort:int8] FILE.wav');
const b = openBundle(bundle, choice);
const plan = b.sig.extra?.audio_in;
if (!plan) fail(`${bundle} takes ${b.sig.frontend.kind} features, not audio; build it with edge-build --audio-in`);
let audio;
try { audio = readWav(wav); } catch (e) { fail(e.message); }
if (audio.rate !== b.sig.frontend.sample_rate) fail(`${wav} is ${audio.rate} Hz; the model needs ${b.sig.frontend.sample_rate} Hz (resample it first)`);

const enc = b.graph('encoder');
const encoder = await b.open('encoder');
const decoder = await greedyDecoder(b);
const x = enc.inputs[0]; // [1, samples_per_call, 1] float32 in [-1, 1]
const N = plan.samples_per_call;
const pcm = new Float32Array(audio.samples.length + tailPadding(audio.samples.length, plan)); // zeros after the speech
pcm.set(audio.samples);
const states = initialStates(enc); // the frontend's history is states too: audio_samples, audio_frames, audio_calls
for (let call = 0; call * N < pcm.length; call++) {
  const out = await encoder.run({ [x.name]: tensor('float32', x.shape, pcm.slice(call * N, (call + 1) * N)), ...states });
  for (const s of enc.states) states[s.name] = out[`${s.name}_next`];
  if (call >= plan.warmup_calls) await decoder.accept(out[enc.outputs[0].name]); // the first calls fill the graph's history
}
console.log(toText(decoder.ids, b.tokens));
