"""Word error rate of a model on a corpus split, through the streaming path.

    edge-eval --family conformer --corpus data/corpus --split test [--limit N]

The streaming path is the client's: features of `audio + tail padding zeros`
(`runtime_py.stream.tail_padding_samples`), complete chunks of
`chunk_frames` advancing by `shift_frames`, stepped by the client's own
`runtime_py.stream.Stream` (here over the PyTorch step functions), then CTC or
transducer greedy decoding and `tokens_to_text`. The offline row runs the
batched whole-utterance `forward` on the same features.

`evaluate(decode_fn, utterances)` only needs a `waveform -> text` callable,
so any backend (ONNX Runtime, LiteRT through runtime_py) is scored by the same
code: build a decode_fn for it and pass `load_utterances(...)`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from runtime_py.decoding import SEARCHES, CtcGreedy, TransducerGreedy, tokens_to_text
from runtime_py.frontend import compute_features
from runtime_py.stream import Model, tail_padding_samples

from .cliutil import add_family, add_model, add_verbose, make_parser, preflight
from .errors import fail

if TYPE_CHECKING:  # torch is imported where it is used: --help and a runtime-only install stay torch-free
    from .families.base import StreamingModel


# -- alignment -----------------------------------------------------------------

def align_errors(ref: list, hyp: list) -> dict:
    """Levenshtein alignment of word lists: substitutions, deletions, insertions
    (ties broken toward substitutions, as sclite/kaldi do)."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=np.int64)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]), d[i - 1, j] + 1, d[i, j - 1] + 1)
    sub = dele = ins = 0
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            sub += ref[i - 1] != hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            dele += 1
            i -= 1
        else:
            ins += 1
            j -= 1
    return {"sub": int(sub), "del": int(dele), "ins": int(ins)}


# -- the backend-independent scorer ------------------------------------------

def load_utterances(corpus: Path | str, split: str, limit: int | None = None) -> list[dict]:
    """Rows of the split with their waveform: dicts with audio (float32, 16 kHz),
    text, speaker, path."""
    from .data.corpus import load_split, read_wav16

    rows = load_split(corpus, split)
    if limit:
        rows = rows[:limit]
    out = []
    for r in rows:
        audio, rate = read_wav16(Path(corpus) / r["path"])
        if rate != 16000:
            raise ValueError(f"{r['path']}: sample rate {rate}, expected 16000")
        out.append({**r, "audio": audio})
    return out


def evaluate(decode_fn: Callable[[np.ndarray], str], utterances: Iterable[dict],
             keep_hypotheses: bool = True) -> dict:
    """Score decode_fn(waveform) -> text against each utterance's "text".
    utterances: dicts with "audio" (float32 samples) and "text". Returns
    wer (%), utterances, words, errors, sub, del, ins, sentence_errors,
    seconds (decoding wall time) and, if asked, the hypotheses."""
    tot = {"sub": 0, "del": 0, "ins": 0}
    words = n = sent_err = 0
    hyps = []
    t0 = time.perf_counter()
    for utt in utterances:
        hyp = decode_fn(utt["audio"])
        ref_w, hyp_w = utt["text"].split(), hyp.split()
        e = align_errors(ref_w, hyp_w)
        for k in tot:
            tot[k] += e[k]
        words += len(ref_w)
        n += 1
        sent_err += int(ref_w != hyp_w)
        if keep_hypotheses:
            hyps.append({"path": utt.get("path"), "ref": utt["text"], "hyp": hyp})
    errors = sum(tot.values())
    result = {"wer": 100.0 * errors / max(words, 1), "utterances": n, "words": words, "errors": errors,
              **tot, "sentence_errors": sent_err, "seconds": time.perf_counter() - t0}
    if keep_hypotheses:
        result["hypotheses"] = hyps
    return result


# -- PyTorch decode functions --------------------------------------------------

def streaming_features(model: StreamingModel, audio: np.ndarray) -> np.ndarray:
    """What the client feeds the encoder: features of audio + tail padding,
    cut to complete chunks. [steps * shift + (chunk - shift), D]."""
    sig = model.signature()
    spec = sig.frontend
    pad = tail_padding_samples(len(audio), spec, sig.chunk_frames, sig.shift_frames)
    x = np.concatenate([np.asarray(audio, dtype=np.float32), np.zeros(pad, dtype=np.float32)])
    return compute_features(x, spec)


def _torch_fn(module):
    import torch

    @torch.no_grad()
    def run(*args):
        return module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in args]).numpy()
    return run


def streaming_decode_fn(model: StreamingModel, tokens: list[str], search: str = "greedy",
                        beam: int = 4) -> Callable[[np.ndarray], str]:
    """waveform -> text through the streaming step (a runtime_py Stream over
    the PyTorch graph modules) and greedy decoding: what an exported bundle computes."""
    from .export import torch_runner

    model = model.eval()
    sig = model.signature()
    client = Model(sig, {g.name: torch_runner(model, g) for g in sig.graphs}, tokens, batch=False, search=search,
                   beam=beam)

    def decode(audio: np.ndarray) -> str:
        stream = client.create_stream()
        stream.accept_features(streaming_features(model, audio))
        while client.decode_streams([stream]):
            pass
        return stream.text
    return decode


def offline_decode_fn(model: StreamingModel, tokens: list[str]) -> Callable[[np.ndarray], str]:
    """waveform -> text through the batched whole-utterance forward (batch 1)
    on the same features as the streaming path."""
    import torch

    model = model.eval()
    sig = model.signature()

    @torch.no_grad()
    def decode(audio: np.ndarray) -> str:
        feats = torch.from_numpy(streaming_features(model, audio))[None]
        out, lens = model(feats, torch.tensor([feats.shape[1]]))
        out = out[0, : int(lens[0])].numpy()
        if sig.decoder == "ctc":
            dec = CtcGreedy(sig.blank_id)
        else:
            dec = TransducerGreedy(_torch_fn(model.decoder), _torch_fn(model.joiner),
                                   sig.context_size, sig.blank_id, start=sig.start_context())
        dec.accept(out)
        return tokens_to_text(dec.tokens, tokens)
    return decode


def client_decode_fn(bundle: Path | str, backend: str, precision: str, threads: int = 1, search: str = "greedy",
                     beam: int = 4) -> Callable[[np.ndarray], str]:
    """The torch-free client on a bundle artifact: the whole utterance through
    the StreamingRecognizer (no VAD cuts, so it sees exactly the chunks the
    PyTorch streaming path sees), final text."""
    from runtime_py.recognizer import StreamingRecognizer
    from runtime_py.session import ModelSession

    session = ModelSession(bundle, backend=backend, precision=precision, threads=threads, search=search, beam=beam)

    def decode(audio: np.ndarray) -> str:
        session.reset("session")
        rec = StreamingRecognizer(session, vad=False, max_utterance_s=1e9)
        rec.accept_audio(audio, session.signature.frontend.sample_rate)
        rec.finish()
        return " ".join(f.text for f in rec.finals if f.text)
    return decode


def runnable_artifacts(bundle: Path | str) -> list[tuple[str, str]]:
    """(backend, precision) pairs of a bundle this host can execute."""
    from runtime_py.manifest import load_bundle

    return [(b, p) for b, p in load_bundle(bundle).backends() if b != "coreml"]


def _agreement(a: dict, b: dict) -> float:
    same = sum(x["hyp"] == y["hyp"] for x, y in zip(a["hypotheses"], b["hypotheses"]))
    return same / max(1, len(a["hypotheses"]))


def _fmt(name: str, r: dict) -> str:
    return (f"{name:<20} WER {r['wer']:6.2f}%  ({r['errors']} errors / {r['words']} words: "
            f"sub {r['sub']} del {r['del']} ins {r['ins']}; {r['sentence_errors']}/{r['utterances']} "
            f"utterances wrong; {r['seconds']:.1f} s)")


def build_parser():
    ap = make_parser("edge-eval", "Word error rate of a model on a corpus split, through the streaming path "
                     "(PyTorch streaming and offline; with --bundle, every artifact through the client).")
    add_family(ap)
    add_model(ap)
    ap.add_argument("--checkpoint", help="checkpoint .pt (default: the shipped edge/checkpoints/<family>/model.pt)")
    ap.add_argument("--corpus", default="data/corpus",
                    help="corpus folder (make one with: python -m edge.data.corpus --out data/corpus)")
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"), help="which split to score")
    ap.add_argument("--limit", type=int, default=None, help="first N utterances only")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch and ONNX Runtime threads")
    ap.add_argument("--no-offline", action="store_true", help="skip the offline-forward row")
    ap.add_argument("--show-errors", type=int, default=0, metavar="N", help="print up to N wrong utterances")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--decoding", choices=SEARCHES, default="greedy",
                    help="a transducer's search (CTC is always greedy)")
    ap.add_argument("--beam", type=int, default=4, help="hypotheses kept by modified_beam_search")
    ap.add_argument("--bundle", action="append", default=[],
                    help="also score every artifact of this bundle through the streaming client (repeatable)")
    add_verbose(ap)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    code = preflight(args)
    if code:
        return code
    split_file = Path(args.corpus) / f"{args.split}.jsonl"
    if not split_file.is_file():
        return fail(f"no {args.split} split at {split_file}; make a corpus with: "
                    f"python -m edge.data.corpus --out {args.corpus} (or give --corpus DIR)")
    for b in args.bundle:
        if not (Path(b) / "manifest.json").is_file():
            return fail(f"--bundle {b}: not a bundle folder (no manifest.json); build one with edge-build")
    import torch

    from .checkpoint import CheckpointError, load_checkpoint, shipped_checkpoint

    torch.set_num_threads(args.threads)
    if args.model:  # your own model: its factory loads it and names its tokens
        from .errors import UserError
        from .factory import load_model
        try:
            model = load_model(args.model)
        except UserError as e:
            return fail(str(e))
        if model.signature().decoder == "none":
            return fail(f"{args.model}: head 'none' produces no text; there is no word error rate to score")
        tokens = list(getattr(model, "tokens", []))
        args.no_offline = True  # a declared model's offline function returns outputs, not a batched forward
        return _run(args, args.model, lambda *_: (model, {"tokens": tokens}))
    path = args.checkpoint or shipped_checkpoint(args.family)
    if path is None:
        return fail(f"no checkpoint given and none shipped for {args.family!r}; train one with edge-train")
    try:
        return _run(args, path, load_checkpoint)
    except (CheckpointError, FileNotFoundError, ValueError) as e:  # includes ManifestError, SessionError
        return fail(str(e))


def _run(args, path, load_checkpoint) -> int:
    model, info = load_checkpoint(path, args.family)
    args.family = model.signature().family
    tokens = info["tokens"]
    if not tokens:
        from .data.corpus import tokens as corpus_tokens
        tokens = corpus_tokens()
    utts = load_utterances(args.corpus, args.split, args.limit)
    print(f"{args.family}: {path}  ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params; "
          f"{args.split} split, {len(utts)} utterances)")
    search = dict(search=args.decoding, beam=args.beam)
    if args.decoding != "greedy":
        print(f"decoding: {args.decoding}, beam {args.beam}" + (" (CTC: greedy)" if model.signature().decoder == "ctc" else ""))
    results = {"streaming": evaluate(streaming_decode_fn(model, tokens, **search), utts)}
    print(_fmt("pytorch streaming", results["streaming"]), flush=True)
    if not args.no_offline:
        results["offline"] = evaluate(offline_decode_fn(model, tokens), utts)
        print(_fmt("pytorch offline", results["offline"]))
    for bundle in args.bundle:
        for backend, precision in runnable_artifacts(bundle):
            name = f"{backend} {precision}"
            r = evaluate(client_decode_fn(bundle, backend, precision, args.threads, **search), utts)
            r["same_text_as_pytorch"] = _agreement(results["streaming"], r)
            results[f"{Path(bundle).name}:{backend}:{precision}"] = r
            print(_fmt(name, r) + f"  same text as PyTorch: {100 * r['same_text_as_pytorch']:.1f}%", flush=True)
    if args.show_errors:
        wrong = [h for h in results["streaming"]["hypotheses"] if h["ref"] != h["hyp"]]
        for h in wrong[: args.show_errors]:
            print(f"  {h['path']}: ref {h['ref']!r}  hyp {h['hyp']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps({"family": args.family, "checkpoint": str(path),
                                               "split": args.split, **results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
