"""`python -m targets.sherpa compare`: sherpa-onnx and our client on test
utterances (agreement, WER, RTF); `export` writes the sherpa files; `score`
judges every sherpa route on a corpus split (targets/sherpa/score.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from runtime_py.decoding import edit_distance, tokens_to_text

from .client import OurTransducerClient, decode_sherpa, sherpa_recognizer
from .export import INPUT_RANGES, export_sherpa


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


def _load_model(checkpoint: str | None, factory: str | None = None):
    from edge.checkpoint import load_or_init
    from edge.data.corpus import tokens as corpus_tokens

    if factory:  # your own model, e.g. examples/zipformer_factory.py:build
        from edge.factory import load_model

        model = load_model(factory)
        info = model.info()
        return model, list(info["tokens"]), info
    model, info = load_or_init("transducer", checkpoint)
    tokens = list(info.get("tokens") or corpus_tokens())
    return model, tokens, info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m targets.sherpa", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write the sherpa-onnx files of the transducer")
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--model", default=None, metavar="FILE.py:FACTORY",
                   help="your own transducer, e.g. examples/zipformer_factory.py:build (sherpa's zipformer2 type)")
    e.add_argument("--int8", action="store_true", help="also encoder.int8.onnx / joiner.int8.onnx")
    e.add_argument("--ort-rewrites", metavar="LIST", default=None,
                   help="the .ort route's graph rewrites on these files, as edge-build's option: default (each "
                   "precision's own), none, or a comma list of them; edge-rewrites.json says which ran")
    c = sub.add_parser("compare", help="sherpa-onnx vs our client on test utterances")
    c.add_argument("--utterances", type=int, default=20)
    c.add_argument("--corpus", type=Path, default=Path("data/corpus"),
                   help="corpus with test.jsonl (else utterances are synthesised with test-split voices)")
    c.add_argument("--out", type=Path, default=None, help="export here (default: a temporary folder)")
    c.add_argument("--json", action="store_true", help="print the full report as JSON")
    for a in (e, c):
        a.add_argument("--checkpoint", default=None, help="default: the shipped transducer, else untrained")
        a.add_argument("--input-range", choices=INPUT_RANGES, default=None,
                       help="int16 (needs normalize_samples=False) or unit (sherpa's defaults); default: what the "
                            "model was trained on")
    from . import score

    score.add_parser(sub)
    args = p.parse_args(argv)
    rewrites = None
    if getattr(args, "ort_rewrites", None) is not None:  # a mistyped name is one error line, before any work
        from edge.errors import UserError, fail
        from targets.ort_rewrite import parse_names

        try:
            rewrites = parse_names(args.ort_rewrites)
        except UserError as e:
            return fail(str(e))
    model, tokens, info = _load_model(args.checkpoint, getattr(args, "model", None))
    if args.cmd == "score":
        return score.run(args, model, tokens)
    if args.cmd == "export":
        paths = export_sherpa(model, args.out, tokens, args.input_range, int8=args.int8, rewrites=rewrites)
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
        from .rewrite import summary  # on stderr: stdout stays the JSON of the paths

        for line in summary(json.loads(paths["rewrites"].read_text(encoding="utf-8"))):
            print(line, file=sys.stderr)
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
