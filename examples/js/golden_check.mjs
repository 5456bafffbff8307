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
import { readNpz } from './npz.mjs';
import { greedyDecoder, initialStates, openBundle, tensor, toText } from './stateloop.mjs';

const [bundle, choice = 'ort'] = process.argv.slice(2);
if (!bundle) { console.error('usage: node golden_check.mjs BUNDLE [ort|onnx|ort:int8]'); process.exit(2); }
const b = openBundle(bundle, choice);
const { manifest, sig, backend, precision } = b;
const enc = b.graph('encoder');
const encoder = await b.open('encoder');
const inputs = readNpz(join(bundle, manifest.golden.inputs.encoder));
const golden = readNpz(join(bundle, manifest.golden.outputs.encoder));
const tolerance = precision === 'fp32' ? (b.artifact('encoder').parity.tolerance ?? 1e-4) : null;
// an audio-in encoder's first calls after a reset complete no encoder step: not decoded
const warmup = sig.extra?.audio_in?.warmup_calls ?? 0;

// the state loop: each chunk with all states by name; every <state>_next replaces its state
const states = initialStates(enc);
const decoder = await greedyDecoder(b);
let worst = 0;
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
  if (i >= warmup) await decoder.accept(out[enc.outputs[0].name]);
}
const text = toText(decoder.ids, b.tokens);
const expected = readFileSync(join(bundle, manifest.golden.transcript), 'utf8').trim();

const ok = (tolerance === null || worst <= tolerance) && text === expected;
console.log(JSON.stringify({ backend, precision, chunks: manifest.golden.chunks, max_abs_diff: worst, tolerance, text, expected, ok }));
process.exit(ok ? 0 : 1);
