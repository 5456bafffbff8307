// What every client of a bundle needs, read from manifest.json alone: the
// artifact for BACKEND[:PRECISION], tensors and zeroed states from the
// signature, the tokens, and greedy decoding (CTC, or the transducer's
// decoder/joiner loop). Used by golden_check.mjs and transcribe.mjs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array };
const MAX_SYMBOLS_PER_FRAME = 3; // the transducer's greedy search, as the Python client

export function tensor(dtype, shape, values) {
  const Type = ARRAYS[dtype];
  const size = shape.reduce((a, b) => a * b, 1);
  return new ort.Tensor(dtype, values ?? new Type(size), shape);
}

// every state from the manifest: shape, dtype, initial value
export function initialStates(graph) {
  const states = {};
  for (const s of graph.states) {
    const t = tensor(s.dtype, s.shape);
    t.data.fill(s.dtype === 'int64' ? BigInt(s.initial) : s.initial);
    states[s.name] = t;
  }
  return states;
}

// The bundle's manifest and a session opener for BACKEND[:PRECISION]; exits 2
// with one error line when the choice is not runnable or not in the bundle.
export function openBundle(bundle, choice = 'ort') {
  const [backend, precision = 'fp32'] = choice.split(':');
  if (!['ort', 'onnx'].includes(backend)) fail(`ONNX Runtime for JavaScript runs ort and onnx files, not ${backend}`);
  const manifest = JSON.parse(readFileSync(join(bundle, 'manifest.json'), 'utf8'));
  const sig = manifest.signature;
  const artifact = (name) => manifest.artifacts.find((a) => a.graph === name && a.backend === backend && a.precision === precision);
  for (const g of sig.graphs) {
    if (!artifact(g.name)) {
      const have = [...new Set(manifest.artifacts.filter((a) => a.backend !== 'coreml').map((a) => `${a.backend}:${a.precision}`))];
      fail(`${bundle} has no ${backend} ${precision} file for graph '${g.name}'; it has: ${have.join(', ')}`);
    }
  }
  const opts = { executionProviders: ['cpu'], intraOpNumThreads: 1 };
  return {
    manifest, sig, backend, precision, artifact,
    graph: (name) => sig.graphs.find((g) => g.name === name),
    open: (name) => ort.InferenceSession.create(join(bundle, artifact(name).path), opts),
    tokens: readFileSync(join(bundle, manifest.tokens), 'utf8').split('\n').filter(Boolean)
      .reduce((t, line) => { const k = line.lastIndexOf(' '); t[Number(line.slice(k + 1))] = line.slice(0, k); return t; }, []),
  };
}

export function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

const argmax = (a, from = 0, to = a.length) => { let k = from; for (let i = from; i < to; i++) if (a[i] > a[k]) k = i; return k - from; };

// Greedy decoding of the encoder's first output, chunk by chunk: push each
// call's output with accept(); ids holds the tokens so far.
export async function greedyDecoder(b) {
  const { sig } = b;
  const ids = [];
  if (sig.decoder === 'ctc') {
    let prev = sig.blank_id;
    return {
      ids,
      async accept(lp) {
        const V = lp.dims.at(-1);
        for (let t = 0; t < lp.data.length / V; t++) {
          const label = argmax(lp.data, t * V, (t + 1) * V);
          if (label !== sig.blank_id && label !== prev) ids.push(label);
          prev = label;
        }
      },
    };
  }
  const [decoder, joiner] = [await b.open('decoder'), await b.open('joiner')];
  const [dg, jg] = [b.graph('decoder'), b.graph('joiner')];
  // the context the decoder was trained to start from (icefall: [-1, blank]; ours: all blank)
  const context = sig.decoder_start ? [...sig.decoder_start] : Array(sig.context_size).fill(sig.blank_id);
  const runDecoder = async () => (await decoder.run({
    [dg.inputs[0].name]: tensor('int64', dg.inputs[0].shape, BigInt64Array.from(context.map(BigInt))),
  }))[dg.outputs[0].name];
  let decOut = await runDecoder();
  return {
    ids,
    async accept(eo) {
      const J = eo.dims.at(-1);
      for (let t = 0; t < eo.data.length / J; t++) {
        const frame = tensor('float32', jg.inputs[0].shape, eo.data.slice(t * J, (t + 1) * J));
        for (let n = 0; n < MAX_SYMBOLS_PER_FRAME; n++) {
          const logits = (await joiner.run({ [jg.inputs[0].name]: frame, [jg.inputs[1].name]: decOut }))[jg.outputs[0].name];
          const label = argmax(logits.data);
          if (label === sig.blank_id) break;
          ids.push(label);
          context.shift(); context.push(label);
          decOut = await runDecoder();
        }
      }
    },
  };
}

export const toText = (ids, tokens) => ids.map((i) => tokens[i]).join('').replaceAll('\u2581', ' ')
  .trim().split(/\s+/).filter(Boolean).join(' ');
