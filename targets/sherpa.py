"""sherpa-onnx target: the Transducer family as a streaming LSTM transducer
that `sherpa_onnx.OnlineRecognizer.from_transducer(...)` loads and decodes.

    paths = export_sherpa(model, "dist/sherpa", tokens)   # encoder/decoder/joiner.onnx + tokens.txt
    rec = sherpa_recognizer("dist/sherpa")                 # from_transducer with the right options
    ours = OurTransducerClient("dist/sherpa")              # our client on the very same files

    python -m targets.sherpa export --out dist/sherpa
    python -m targets.sherpa compare --utterances 50

The contract, as read from sherpa-onnx's source (online-transducer-model.cc,
online-lstm-transducer-model.{h,cc}, online-recognizer-transducer-impl.h,
online-transducer-greedy-search-decoder.cc, features.{h,cc}, symbol-table.cc)
and checked against sherpa-onnx 2.0.1 by tests/test_sherpa.py:

- Model type: the encoder's metadata `model_type` = "lstm" picks
  OnlineLstmTransducerModel. It reads, as integers, from the encoder
  `num_encoder_layers`, `T` (feature frames per encoder call = ChunkSize),
  `decode_chunk_len` (frames advanced per call = ChunkShift), `d_model`
  (last dim of h) and `rnn_hidden_size` (last dim of c); from the decoder
  `vocab_size` and `context_size`. A missing key is a fatal error.
- I/O is taken by position, not by name: encoder (features [N, T, F],
  h [L, N, d_model], c [L, N, rnn_hidden]) -> (encoder_out [N, T', J],
  h_next, c_next); decoder (y [N, context] int64) -> decoder_out [N, J];
  joiner (encoder_out [N, J], decoder_out [N, J]) -> logits [N, V]. Our
  names are kept, so our own client runs the same files.
- Batch: `decode_streams` runs N streams in one call, stacking the states
  along axis 1 (h, c) and everything else along axis 0, so every graph here
  has a dynamic batch axis (fixed-shape batch-1 files load but fail as soon
  as two streams are decoded together).
- Greedy search: blank id hard-coded 0, at most ONE symbol per encoder frame,
  and the initial context is [-1, ..., -1, 0]. The decoder graph therefore
  maps negative ids to blank (our client pads the context with blanks, so
  both see the same decoder input); our client must use
  max_symbols_per_frame=1 to follow the same search (SHERPA_MAX_SYMBOLS).
- Chunking: IsReady is `processed + T < frames_ready` (strict), so sherpa
  needs one feature frame beyond a chunk before it runs it. Give it one
  frame shift (10 ms) of zeros more tail padding than our client
  (`sherpa_tail_padding`) and both run exactly the same chunks.
- Features: kaldi-native-fbank with our FrontendSpec's options (16 kHz, 80
  bins, povey, dither 0, snip_edges False, low 20, high -400, 25/10 ms).
  With its default `normalize_samples=True` it does NOT scale the [-1, 1]
  samples; with `normalize_samples=False` it multiplies them by 32768, which
  is what our frontend (sample_scale 32768) and our training did. The two
  differ by ln(32768^2) = 20.79 per bin, except where the mel energy of
  [-1, 1] samples is below FLT_EPSILON (silence, exact zeros, tail
  padding): there the log floor clips at a different level, so no constant
  can convert one into the other exactly. Hence two flavours:
    input_range="int16" (default): the training features exactly; needs
      `normalize_samples=False` (Python / C++), or samples * 32768 passed to
      accept_waveform (C API, Kotlin, Swift: they do not expose the option).
    input_range="unit": stock sherpa-onnx defaults (CLI, Android/iOS apps);
      the encoder adds 20.79 to its input first, exact except in the floored
      (near-silent) bins. Its embedded signature says sample_scale=1, so our
      client computes the same features as sherpa.
- tokens.txt: "symbol id" per line (whitespace-separated, so symbols must
  not contain spaces); "▁" is turned into a space in the text.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from runtime_py.decoding import TransducerGreedy, edit_distance, tokens_to_text
from runtime_py.frontend import compute_features
from runtime_py.recognizer import TAIL_PADDING_S, tail_padding_samples
from runtime_py.signature import Signature
from runtime_py.stateloop import StateLoop

MODEL_TYPE = "lstm"
OPSET = 17
INPUT_RANGES = ("int16", "unit")
INT16_SCALE = 32768.0
SHERPA_MAX_SYMBOLS = 1  # sherpa-onnx greedy search: one symbol per encoder frame
SHERPA_BLANK_ID = 0  # hard-coded in sherpa-onnx's transducer decoders
INPUT_RANGE_KEY = "edge.sherpa.input_range"
FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx", "joiner": "joiner.onnx", "tokens": "tokens.txt"}


class SherpaExportError(ValueError):
    pass


# -- export ---------------------------------------------------------------------

def _check_exportable(model, tokens: list[str]) -> Signature:
    sig = model.signature()
    if sig.decoder != "transducer" or {g.name for g in sig.graphs} != {"encoder", "decoder", "joiner"}:
        raise SherpaExportError(f"family {sig.family!r} is not a transducer with encoder/decoder/joiner graphs; "
                                "only the 'transducer' family has a sherpa-onnx flavour")
    enc = sig.graph("encoder")
    if [s.name for s in enc.states] != ["h", "c"] or any(len(s.shape) != 3 or s.batch_axis != 1 for s in enc.states):
        raise SherpaExportError(f"sherpa-onnx's LSTM transducer needs encoder states h, c of shape "
                                f"[layers, batch, dim]; got {[(s.name, s.shape) for s in enc.states]}")
    if sig.blank_id != SHERPA_BLANK_ID:
        raise SherpaExportError(f"sherpa-onnx hard-codes blank id 0; this model's blank id is {sig.blank_id}")
    if sig.context_size < 1:
        raise SherpaExportError(f"context_size={sig.context_size}: sherpa-onnx needs a stateless decoder "
                                "with context_size >= 1")
    if sig.frontend.kind != "fbank" or sig.frontend.window != "povey" or sig.frontend.dither != 0.0:
        raise SherpaExportError(f"sherpa-onnx's online transducer computes a povey fbank without dither; "
                                f"this model's frontend is {sig.frontend}")
    if len(tokens) != sig.vocab_size:
        raise SherpaExportError(f"{len(tokens)} tokens given, the model's vocabulary has {sig.vocab_size}")
    bad = [t for t in tokens if not t or any(ch.isspace() for ch in t)]
    if bad:
        raise SherpaExportError(f"tokens.txt is 'symbol id' per line: symbols must be non-empty and "
                                f"contain no whitespace; offending: {bad[:5]}")
    if len(set(tokens)) != len(tokens):
        raise SherpaExportError("duplicate symbols in the token list")
    return sig


def sherpa_signature(sig: Signature, input_range: str) -> Signature:
    """The signature embedded in the sherpa files: the unit flavour's features
    are computed from unscaled samples."""
    scale = INT16_SCALE if input_range == "int16" else 1.0
    frontend = dataclasses.replace(sig.frontend, sample_scale=scale)
    extra = dict(sig.extra, sherpa_input_range=input_range)
    return dataclasses.replace(sig, frontend=frontend, extra=extra)


def _graph_modules(model, sig: Signature, input_range: str):
    import torch
    from torch import nn

    offset = 2.0 * math.log(INT16_SCALE) if input_range == "unit" else 0.0
    blank = sig.blank_id

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x, h, c):
            if offset:
                x = x + offset  # log-power of [-1, 1] samples -> of int16-range samples
            return self.m.encoder_step(x, h, c)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, y):
            # sherpa-onnx starts the context with -1 (no token yet): treat as blank
            return self.m.decoder_step(torch.where(y < 0, torch.full_like(y, blank), y))

    class Joiner(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, enc, dec):
            return self.m.joiner_step(enc, dec)

    return {"encoder": Encoder().eval(), "decoder": Decoder().eval(), "joiner": Joiner().eval()}


def _metadata(sig: Signature, graph: str, input_range: str) -> dict:
    enc = sig.graph("encoder")
    h, c = enc.states
    common = {"model_type": MODEL_TYPE, INPUT_RANGE_KEY: input_range,
              "comment": "edge-speech transducer, sherpa-onnx LSTM transducer flavour"}
    if graph == "encoder":
        return common | {
            "num_encoder_layers": h.shape[0], "T": sig.chunk_frames, "decode_chunk_len": sig.shift_frames,
            "d_model": h.shape[2], "rnn_hidden_size": c.shape[2],
            "feature_dim": sig.frontend.feature_dim, "sample_rate": sig.frontend.sample_rate,
            "subsampling_factor": sig.subsampling,
            "normalize_samples": int(input_range == "unit"),
        }
    if graph == "decoder":
        return common | {"vocab_size": sig.vocab_size, "context_size": sig.context_size}
    return common | {"vocab_size": sig.vocab_size, "joiner_dim": sig.graph("joiner").inputs[0].shape[-1]}


def _batch_axes(graph) -> tuple[list[int], list[int]]:
    """The batch axis of every input and output: 0, or the state's own."""
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    ins = [0] * n_in + [s.batch_axis for s in graph.states]
    outs = [0] * n_out + [s.batch_axis for s in graph.states]
    return ins, outs


def _check_dynamic_io(proto, graph) -> None:
    """Names/dtypes/ranks as declared, the batch axis dynamic, all else fixed."""
    import onnx

    dtypes = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    init = {i.name for i in proto.graph.initializer}

    def got(values):
        return [(v.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim),
                 v.type.tensor_type.elem_type) for v in values if v.name not in init]

    def want(specs, axes):
        return [(t.name, tuple(-1 if k == ax else d for k, d in enumerate(t.shape)), dtypes[t.dtype])
                for t, ax in zip(specs, axes)]

    in_axes, out_axes = _batch_axes(graph)
    w_in, w_out = want(graph.all_inputs(), in_axes), want(graph.all_outputs(), out_axes)
    # The exporter leaves dims computed by reshapes symbolic: declare the
    # outputs' fixed dims (checked at run time by tests/test_sherpa.py).
    for v, (name, shape, _) in zip(proto.graph.output, w_out):
        dims = v.type.tensor_type.shape.dim
        if v.name == name and len(dims) == len(shape):
            for d, n in zip(dims, shape):
                if n >= 0 and not d.HasField("dim_value"):
                    d.dim_value = n
    g_in, g_out = got(proto.graph.input), got(proto.graph.output)
    if g_in != w_in or g_out != w_out:
        raise SherpaExportError(f"graph {graph.name!r}: exported I/O differs from the sherpa layout\n"
                                f"  inputs  got {g_in}\n          want {w_in}\n"
                                f"  outputs got {g_out}\n          want {w_out}")


def export_sherpa(model, out_dir: Path | str, tokens: list[str], input_range: str = "int16") -> dict[str, Path]:
    """Write encoder.onnx, decoder.onnx, joiner.onnx and tokens.txt for
    sherpa-onnx's streaming LSTM transducer. Returns {name: path} with the
    keys encoder, decoder, joiner, tokens.

    Re-exported (not edge.export.export_onnx's files plus metadata) because
    sherpa-onnx needs a dynamic batch axis while our bundle graphs are fixed
    batch 1 (mobile targets want fixed shapes), and because the decoder
    needs the negative-id guard and the unit flavour the feature offset.
    Same exporter settings as edge.export (TorchScript, opset 17, constant
    folding); edge.export.embed_metadata stores our signature too, so our
    client reads the files like a bundle graph."""
    import onnx
    import torch

    from edge.export import embed_metadata

    if input_range not in INPUT_RANGES:
        raise SherpaExportError(f"input_range {input_range!r} must be one of {INPUT_RANGES}")
    model = model.eval()
    sig = sherpa_signature(_check_exportable(model, tokens), input_range)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modules = _graph_modules(model, sig, input_range)
    paths: dict[str, Path] = {}
    for graph in sig.graphs:
        rng = np.random.default_rng(0)
        args = []
        for t in graph.all_inputs():
            if t.dtype == "int64":
                args.append(torch.from_numpy(rng.integers(0, sig.vocab_size, size=t.shape).astype(np.int64)))
            else:
                args.append(torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32)))
        in_axes, out_axes = _batch_axes(graph)
        dynamic = {t.name: {ax: "N"} for t, ax in zip(graph.all_inputs(), in_axes)}
        dynamic.update({t.name: {ax: "N"} for t, ax in zip(graph.all_outputs(), out_axes)})
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            # h0/c0 are graph inputs, so the exporter's LSTM batch warning does
            # not apply; tests/test_sherpa.py runs batch 2 through sherpa-onnx.
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript.*")
            torch.onnx.export(modules[graph.name], tuple(args), buf, input_names=graph.input_names,
                              output_names=graph.output_names, dynamic_axes=dynamic, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
        proto = onnx.load_from_string(buf.getvalue())
        _check_dynamic_io(proto, graph)
        embed_metadata(proto, sig, graph, _metadata(sig, graph.name, input_range))
        onnx.checker.check_model(proto)
        path = out_dir / FILES[graph.name]
        path.write_bytes(proto.SerializeToString())
        paths[graph.name] = path
    tok = out_dir / FILES["tokens"]
    tok.write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")
    paths["tokens"] = tok
    return paths


# -- running: sherpa-onnx and our client on the same files -----------------------

def read_sherpa_dir(model_dir: Path | str) -> tuple[Signature, list[str], str]:
    """(signature, tokens, input_range) of an export, torch- and onnx-free."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_dir / FILES["encoder"]), opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    if "edge.signature" not in meta:
        raise SherpaExportError(f"{model_dir / FILES['encoder']}: no edge.signature metadata; "
                                "not written by targets.sherpa.export_sherpa")
    sig = Signature.from_json(meta["edge.signature"])
    tokens = []
    for line in (model_dir / FILES["tokens"]).read_text(encoding="utf-8").splitlines():
        if line.strip():
            sym, idx = line.rsplit(None, 1)
            if int(idx) != len(tokens):
                raise SherpaExportError(f"tokens.txt: id {idx} out of order")
            tokens.append(sym)
    return sig, tokens, meta.get(INPUT_RANGE_KEY, "int16")


def sherpa_recognizer(model_dir: Path | str, threads: int = 1, decoding_method: str = "greedy_search"):
    """`OnlineRecognizer.from_transducer` with the options this export needs
    (normalize_samples=False for the int16 flavour)."""
    import sherpa_onnx

    model_dir = Path(model_dir)
    sig, _, input_range = read_sherpa_dir(model_dir)
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        tokens=str(model_dir / FILES["tokens"]), encoder=str(model_dir / FILES["encoder"]),
        decoder=str(model_dir / FILES["decoder"]), joiner=str(model_dir / FILES["joiner"]),
        num_threads=threads, sample_rate=sig.frontend.sample_rate, feature_dim=sig.frontend.feature_dim,
        normalize_samples=(input_range == "unit"), decoding_method=decoding_method)


def tail_padding(num_samples: int, sig: Signature) -> int:
    """Zeros our client appends at the end of an utterance (as the streaming
    recognizer does)."""
    return tail_padding_samples(num_samples, sig.frontend, sig.chunk_frames, sig.shift_frames, TAIL_PADDING_S)


def sherpa_tail_padding(num_samples: int, sig: Signature) -> int:
    """sherpa-onnx runs a chunk only once one more frame exists: one frame
    shift more zeros than ours makes it run the same chunks."""
    return tail_padding(num_samples, sig) + sig.frontend.frame_shift


def _sherpa_ids(result_tokens: list[str], tokens: list[str]) -> list[int]:
    index = {t.replace("\u2581", " "): i for i, t in enumerate(tokens)}
    index.update({t: i for i, t in enumerate(tokens)})
    return [index[s] for s in result_tokens]


def decode_sherpa(recognizer, samples: np.ndarray, sig: Signature, tokens: list[str]) -> list[int]:
    """Token ids sherpa-onnx decodes from one utterance (float samples in [-1, 1])."""
    samples = np.asarray(samples, dtype=np.float32)
    stream = recognizer.create_stream()
    stream.accept_waveform(sig.frontend.sample_rate, samples)
    stream.accept_waveform(sig.frontend.sample_rate,
                           np.zeros(sherpa_tail_padding(len(samples), sig), dtype=np.float32))
    stream.input_finished()
    while recognizer.is_ready(stream):
        recognizer.decode_stream(stream)
    return _sherpa_ids(list(recognizer.get_result_all(stream).tokens), tokens)


class OurTransducerClient:
    """Our torch-free client on a sherpa export: our frontend, the state loop
    over the encoder, TransducerGreedy over decoder/joiner, all through ONNX
    Runtime on the CPU."""

    def __init__(self, model_dir: Path | str, threads: int = 1, max_symbols_per_frame: int = SHERPA_MAX_SYMBOLS):
        from runtime_py.backends import open_runner

        model_dir = Path(model_dir)
        self.signature, self.tokens, self.input_range = read_sherpa_dir(model_dir)
        sig = self.signature
        runs = {g.name: open_runner(model_dir / FILES[g.name], g, "onnx", threads) for g in sig.graphs}
        self.encoder = StateLoop(sig.graph("encoder"), runs["encoder"])
        dec, join = sig.graph("decoder"), sig.graph("joiner")
        self.decoder = TransducerGreedy(
            decoder=lambda y: runs["decoder"]({dec.inputs[0].name: y})[dec.outputs[0].name],
            joiner=lambda e, d: runs["joiner"]({join.inputs[0].name: e, join.inputs[1].name: d})[join.outputs[0].name],
            context_size=sig.context_size, blank_id=sig.blank_id, max_symbols_per_frame=max_symbols_per_frame)
        self._x = sig.graph("encoder").inputs[0]
        self._out = sig.graph("encoder").outputs[0].name

    def decode(self, samples: np.ndarray) -> list[int]:
        """Token ids of one utterance (float samples in [-1, 1])."""
        sig = self.signature
        self.encoder.reset("session")
        self.decoder.reset()
        x = np.concatenate([np.asarray(samples, dtype=np.float32),
                            np.zeros(tail_padding(len(samples), sig), dtype=np.float32)])
        feats = compute_features(x, sig.frontend)
        start = 0
        while start + sig.chunk_frames <= len(feats):
            chunk = feats[start: start + sig.chunk_frames].reshape(self._x.shape)
            self.decoder.accept(self.encoder.step({self._x.name: chunk})[self._out])
            start += sig.shift_frames
        return list(self.decoder.tokens)

    def text(self, ids: list[int]) -> str:
        return tokens_to_text(ids, self.tokens)


# -- compare: agreement, WER, RTF ------------------------------------------------

def _utterances(n: int, corpus: Path | None, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    if corpus is not None and (corpus / "test.jsonl").exists():
        from edge.data.corpus import load_split, read_wav16

        rows = load_split(corpus, "test")[:n]
        return [(r["text"], read_wav16(corpus / r["path"])[0]) for r in rows]
    from edge.data.corpus import VOCABULARY, speaker_split, synthesize

    rng = np.random.default_rng(seed)
    speakers = speaker_split()["test"]
    out = []
    for i in range(n):
        words = " ".join(rng.choice(VOCABULARY, size=int(rng.integers(1, 6))))
        out.append((words, synthesize(words, speakers[i % len(speakers)], seed=seed * 100000 + i)))
    return out


def compare(model_dir: Path | str, utterances: list[tuple[str, np.ndarray]], threads: int = 1) -> dict:
    """Decode each (reference text, samples) with sherpa-onnx and our client."""
    ours = OurTransducerClient(model_dir, threads)
    sig, tokens = ours.signature, ours.tokens
    rec = sherpa_recognizer(model_dir, threads)
    rate = sig.frontend.sample_rate
    rows = []
    for ref, audio in utterances:
        t0 = time.perf_counter()
        a = decode_sherpa(rec, audio, sig, tokens)
        t1 = time.perf_counter()
        b = ours.decode(audio)
        t2 = time.perf_counter()
        seconds = len(audio) / rate
        rows.append({"ref": ref, "sherpa": tokens_to_text(a, tokens), "ours": tokens_to_text(b, tokens),
                     "same_tokens": a == b, "rtf_sherpa": (t1 - t0) / seconds, "rtf_ours": (t2 - t1) / seconds})
    ref_words = sum(len(r["ref"].split()) for r in rows)

    def wer(key):
        return sum(edit_distance(r["ref"].split(), r[key].split()) for r in rows) / max(1, ref_words)

    return {
        "utterances": len(rows), "input_range": ours.input_range, "threads": threads,
        "agreement": sum(r["same_tokens"] for r in rows) / max(1, len(rows)),
        "wer_sherpa": wer("sherpa"), "wer_ours": wer("ours"),
        "rtf_sherpa_median": float(np.median([r["rtf_sherpa"] for r in rows])),
        "rtf_ours_median": float(np.median([r["rtf_ours"] for r in rows])),
        "rows": rows,
    }


def _load_model(checkpoint: str | None):
    from edge.checkpoint import load_or_init
    from edge.data.corpus import tokens as corpus_tokens

    model, info = load_or_init("transducer", checkpoint)
    tokens = list(info.get("tokens") or corpus_tokens())
    return model, tokens, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.sherpa", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write the sherpa-onnx files of the transducer")
    e.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("compare", help="sherpa-onnx vs our client on test utterances")
    c.add_argument("--utterances", type=int, default=20)
    c.add_argument("--corpus", type=Path, default=Path("data/corpus"),
                   help="corpus with test.jsonl (else utterances are synthesised with test-split voices)")
    c.add_argument("--out", type=Path, default=None, help="export here (default: a temporary folder)")
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    for a in (e, c):
        a.add_argument("--checkpoint", default=None, help="default: the shipped transducer, else untrained")
        a.add_argument("--input-range", choices=INPUT_RANGES, default="int16")
    args = p.parse_args(argv)
    model, tokens, info = _load_model(args.checkpoint)
    if args.cmd == "export":
        paths = export_sherpa(model, args.out, tokens, args.input_range)
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        export_sherpa(model, out, tokens, args.input_range)
        utts = _utterances(args.utterances, args.corpus)
        r = compare(out, utts)
    r["model"] = info.get("source")
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"model {r['model']}, input_range {r['input_range']}, threads {r['threads']}, "
          f"{r['utterances']} utterances")
    print(f"identical transcripts (token ids): {r['agreement']:.3f}")
    print(f"WER  sherpa-onnx {r['wer_sherpa']:.4f}   ours {r['wer_ours']:.4f}")
    print(f"RTF (median)  sherpa-onnx {r['rtf_sherpa_median']:.4f}   ours {r['rtf_ours_median']:.4f}")
    for row in r["rows"]:
        if not row["same_tokens"]:
            print(f"  differ: ref={row['ref']!r} sherpa={row['sherpa']!r} ours={row['ours']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
