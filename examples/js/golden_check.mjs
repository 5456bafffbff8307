// The model card's recipe, outside Python: run a bundle's encoder state loop
// with ONNX Runtime for JavaScript on golden/encoder_inputs.npz, compare each
// chunk's outputs with golden/encoder_outputs.npz, decode greedily and compare
// the text with golden/transcript.txt.
//
//   npm install            # onnxruntime-node (same API as onnxruntime-react-native / -web)
//   node golden_check.mjs path/to/bundle [ort|onnx|ort:int8|...]   (BACKEND[:PRECISION], fp32 by default)
//
// fp32 files must match the golden outputs within the manifest's tolerance and give the golden
// transcript; int8/fp16 files differ from the fp32 reference by design, so for them only the
// transcript is compared (their worst difference is printed). Exit status 0 when everything
// matches, 1 otherwise, 2 when the bundle has no such file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readNpz } from './npz.mjs';

const [bundle, choice = 'ort'] = process.argv.slice(2);
if (!bundle) { console.error('usage: node golden_check.mjs BUNDLE [ort|onnx|ort:int8]'); process.exit(2); }
const [backend, precision = 'fp32'] = choice.split(':');
if (!['ort', 'onnx'].includes(backend)) {
  console.error(`error: ONNX Runtime for JavaScript runs ort and onnx files, not ${backend}`);
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
const sig = manifest.signature;
const graph = (name) => sig.graphs.find((g) => g.name === name);
const artifact = (name) => manifest.artifacts.find((a) => a.graph === name && a.backend === backend && a.precision === precision);
for (const g of sig.graphs) {
  if (!artifact(g.name)) {
    const have = [...new Set(manifest.artifacts.filter((a) => a.backend !== 'coreml').map((a) => `${a.backend}:${a.precision}`))];
    console.error(`error: ${bundle} has no ${backend} ${precision} file for graph '${g.name}'; it has: ${have.join(', ')}`);
    process.exit(2);
  }
}

const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array };
function tensor(dtype, shape, values) {
  const Type = ARRAYS[dtype];
  const size = shape.reduce((a, b) => a * b, 1);
  const data = values ?? new Type(size);
  return new ort.Tensor(dtype, data, shape);
}
// 1. every state from the manifest: shape, dtype, initial value
function initialStates(g) {
  const states = {};
  for (const s of g.states) {
    const t = tensor(s.dtype, s.shape);
    t.data.fill(s.dtype === 'int64' ? BigInt(s.initial) : s.initial);
    states[s.name] = t;
  }
  return states;
}
const argmax = (a, from = 0, to = a.length) => { let k = from; for (let i = from; i < to; i++) if (a[i] > a[k]) k = i; return k - from; };

const opts = { executionProviders: ['cpu'], intraOpNumThreads: 1 };
const open = (name) => ort.InferenceSession.create(join(bundle, artifact(name).path), opts);
const enc = graph('encoder');
const encoder = await open('encoder');
const inputs = readNpz(join(bundle, manifest.golden.inputs.encoder));
const golden = readNpz(join(bundle, manifest.golden.outputs.encoder));
const tolerance = precision === 'fp32' ? (artifact('encoder').parity.tolerance ?? 1e-4) : null;

// 2.-3. the state loop: each chunk with all states by name; every <state>_next replaces its state
let states = initialStates(enc);
let worst = 0;
const encoderOutputs = [];
const x = enc.inputs[0];
for (let i = 0; i < manifest.golden.chunks; i++) {
  const key = `${x.name}_${String(i).padStart(4, '0')}`;
  const out = await encoder.run({ [x.name]: tensor(x.dtype, x.shape, inputs[key].data), ...states });
  for (const s of enc.states) states[s.name] = out[`${s.name}_next`];
  for (const o of enc.outputs) {
    const want = golden[`${o.name}_${String(i).padStart(4, '0')}`].data;
    const got = out[o.name].data;
    for (let j = 0; j < want.length; j++) worst = Math.max(worst, Math.abs(got[j] - want[j]));
  }
  encoderOutputs.push(out[enc.outputs[0].name]);
}

// 4. greedy decoding: CTC, or the transducer's decoder/joiner loop
const tokens = readFileSync(join(bundle, manifest.tokens), 'utf8').split('\n').filter(Boolean)
  .reduce((t, line) => { const k = line.lastIndexOf(' '); t[Number(line.slice(k + 1))] = line.slice(0, k); return t; }, []);
const ids = [];
if (sig.decoder === 'ctc') {
  let prev = sig.blank_id;
  for (const lp of encoderOutputs) {
    const V = lp.dims.at(-1);
    for (let t = 0; t < lp.data.length / V; t++) {
      const label = argmax(lp.data, t * V, (t + 1) * V);
      if (label !== sig.blank_id && label !== prev) ids.push(label);
      prev = label;
    }
  }
} else {
  const [decoder, joiner] = [await open('decoder'), await open('joiner')];
  const [dg, jg] = [graph('decoder'), graph('joiner')];
  // the context the decoder was trained to start from (icefall: [-1, blank]; ours: all blank)
  const context = sig.decoder_start ? [...sig.decoder_start] : Array(sig.context_size).fill(sig.blank_id);
  const runDecoder = async () => (await decoder.run({
    [dg.inputs[0].name]: tensor('int64', dg.inputs[0].shape, BigInt64Array.from(context.map(BigInt))),
  }))[dg.outputs[0].name];
  let decOut = await runDecoder();
  for (const eo of encoderOutputs) {
    const J = eo.dims.at(-1);
    for (let t = 0; t < eo.data.length / J; t++) {
      const frame = tensor('float32', jg.inputs[0].shape, eo.data.slice(t * J, (t + 1) * J));
      for (let n = 0; n < 3; n++) { // at most 3 symbols per frame, as the Python client
        const logits = (await joiner.run({ [jg.inputs[0].name]: frame, [jg.inputs[1].name]: decOut }))[jg.outputs[0].name];
        const label = argmax(logits.data);
        if (label === sig.blank_id) break;
        ids.push(label);
        context.shift(); context.push(label);
        decOut = await runDecoder();
      }
    }
  }
}
const text = ids.map((i) => tokens[i]).join('').replaceAll('\u2581', ' ').trim().split(/\s+/).filter(Boolean).join(' ');
const expected = readFileSync(join(bundle, manifest.golden.transcript), 'utf8').trim();

const ok = (tolerance === null || worst <= tolerance) && text === expected;
console.log(JSON.stringify({ backend, precision, chunks: manifest.golden.chunks, max_abs_diff: worst, tolerance, text, expected, ok }));
process.exit(ok ? 0 : 1);
