"""`python -m targets.sherpa score`: every sherpa-onnx route of a trained
transducer on a corpus split, judged by word error rate and token agreement.

Routes (one export each, fp32 and int8):
- "ours": targets.sherpa.export_sherpa's files, decoded by sherpa-onnx and by
  our client on the very same files. Our client starts from the decoder
  context the model declares (signature.decoder_start), not sherpa's
  [-1, blank] forced on it: that the two agree is what is checked.
- "package": the zipformer package's own export (targets.sherpa.package),
  decoded by sherpa-onnx (our client cannot read its files).

Each route runs greedy search (sherpa's: at most one symbol per frame, which
our client follows) and modified_beam_search (beam 4, sherpa's default and
ours). Agreement is per token: 1 - edit distance / reference tokens, summed
over the split, against our client on our fp32 or int8 files (same search),
and against PyTorch streaming (the hypotheses of an `edge-eval --json`, same
search; compared as words, which are the tokens of a word vocabulary).
`table` prints the markdown table of edge-eval's JSON and this command's.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime_py.decoding import edit_distance, tokens_to_text

SHERPA_SEARCHES = {"greedy": "greedy_search", "beam": "modified_beam_search"}
CLIENT_SEARCHES = {"greedy": "greedy", "beam": "modified_beam_search"}


def token_agreement(refs: list[list], hyps: list[list]) -> float:
    """1 - sum of edit distances / sum of reference lengths (1.0 when both are empty)."""
    n = sum(len(r) for r in refs)
    if n == 0:
        raise ValueError("token agreement over no reference tokens: nothing was compared")
    return max(0.0, 1.0 - sum(edit_distance(r, h) for r, h in zip(refs, hyps)) / n)


def _score(name: str, decode_ids, utts: list[dict], tokens: list[str], say) -> dict:
    """WER (edge.evaluate's scorer) of decode_ids(audio) -> token ids, keeping the ids."""
    from edge.evaluate import evaluate

    ids: list[list[int]] = []

    def decode(audio):
        ids.append(list(decode_ids(audio)))
        return tokens_to_text(ids[-1], tokens)

    r = evaluate(decode, utts)
    r["ids"] = ids
    say(f"{name:<34} WER {r['wer']:6.2f} %  ({r['errors']} errors / {r['words']} words, {r['seconds']:.0f} s)")
    return r


def _sherpa_fn(rec, sig, tokens):
    from .client import decode_sherpa

    return lambda audio: decode_sherpa(rec, audio, sig, tokens)


def score_routes(model, tokens: list[str], utts: list[dict], work: Path, threads: int = 1,
                 routes=("ours", "package"), searches=("greedy", "beam"), say=print) -> dict:
    """{row name: edge.evaluate result + "ids"}; rows "<route> <precision> <runner> <search>"."""
    import dataclasses

    from .client import OurTransducerClient, sherpa_recognizer
    from .export import export_sherpa

    rows: dict[str, dict] = {}
    ours_dir = Path(work) / "ours"
    export_sherpa(model, ours_dir, tokens, int8=True)
    client = OurTransducerClient(ours_dir)
    sig = client.signature
    say(f"decoder start declared {list(sig.start_context())}; ours exported to {ours_dir}")
    for prec in ("fp32", "int8"):
        for search in searches:
            if "ours" in routes:
                rec = sherpa_recognizer(ours_dir, threads, SHERPA_SEARCHES[search], precision=prec)
                rows[f"ours {prec} sherpa-onnx {search}"] = _score(
                    f"ours {prec} sherpa-onnx {search}", _sherpa_fn(rec, sig, tokens), utts, tokens, say)
            ours = OurTransducerClient(ours_dir, threads, prec, declared_start=True, search=CLIENT_SEARCHES[search])
            rows[f"ours {prec} client {search}"] = _score(f"ours {prec} client {search}", ours.decode, utts,
                                                          tokens, say)
    if "ours" in routes:  # the same comparison with a decoder start the model was not trained from
        wrong = tuple([sig.blank_id] * sig.context_size)
        if wrong != tuple(sig.start_context()):
            bad = OurTransducerClient(ours_dir, threads, signature=dataclasses.replace(sig, decoder_start=wrong),
                                      declared_start=True)
            rows["ours fp32 client-wrong-start greedy"] = _score(
                f"ours fp32 client start {list(wrong)} greedy", bad.decode, utts, tokens, say)
    if "package" in routes:
        from .package import package_export

        paths = package_export(model, Path(work) / "package", tokens)
        unit = sig.frontend.sample_scale == 1.0
        for prec in ("fp32", "int8"):
            for search in searches:
                rec = sherpa_recognizer(None, threads, SHERPA_SEARCHES[search], paths=paths[prec],
                                        normalize_samples=unit)
                rows[f"package {prec} sherpa-onnx {search}"] = _score(
                    f"package {prec} sherpa-onnx {search}", _sherpa_fn(rec, sig, tokens), utts, tokens, say)
    return rows


def _words(result: dict) -> list[list[str]]:
    return [h["hyp"].split() for h in result["hypotheses"]]


def agreements(rows: dict, pytorch: dict) -> dict:
    """Per row: token agreement with our client on our files of the same precision and search
    ("client"; the package's rows: with our fp32 files) and with PyTorch streaming ("pytorch",
    words) where an edge-eval result of that search is given ({"greedy": result, "beam": result})."""
    out = {}
    for name, r in rows.items():
        route, prec, runner, search = name.split()
        a = {}
        ref = rows.get(f"ours {prec if route == 'ours' else 'fp32'} client {search}")
        if ref is not None and ref is not r:
            a["client"] = token_agreement(ref["ids"], r["ids"])
        if search in pytorch:
            a["pytorch"] = token_agreement(_words(pytorch[search]["streaming"]), _words(r))
        out[name] = a
    return out


# -- the table --------------------------------------------------------------------------------

_ARTIFACTS = {"ort:fp32": "ORT fp32 (our client)", "ort:int8": "ORT int8 (our client)",
              "tflite:fp32": "TFLite fp32 (our client)", "tflite:fp16": "TFLite fp16 (our client)",
              "tflite:int8": "TFLite int8 (our client)", "onnx:fp32": "ONNX fp32 (our client)"}
_ROUTES = {"ours": "our sherpa-form export", "package": "the package's own export"}


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f} %"


def table(evals: dict, rows: dict, agree: dict) -> str:
    """Markdown: one line per artifact and runner; WER greedy / beam, token agreement with
    PyTorch streaming and with our client (greedy / beam)."""
    lines = ["| artifact, runner | WER greedy | WER beam 4 | tokens = PyTorch (greedy / beam) "
             "| tokens = our client, same files (greedy / beam) |", "|---|---|---|---|---|"]

    def line(label, r_g, r_b, a_g, a_b):
        wer = [f"{r['wer']:.2f} %" if r else "" for r in (r_g, r_b)]
        cells = [" / ".join(_pct(a.get(k)) if a else "" for a in (a_g, a_b)).strip(" /") for k in ("pytorch", "client")]
        lines.append(f"| {label} | {wer[0]} | {wer[1]} | {cells[0]} | {cells[1]} |")

    g, b = evals.get("greedy", {}), evals.get("beam", {})
    if g or b:
        line("PyTorch streaming", g.get("streaming"), b.get("streaming"), None, None)
    for key in [k for k in (g or b) if k.count(":") == 2]:  # "<bundle>:<backend>:<precision>"
        art = key.split(":", 1)[1]
        a = {s: {"pytorch": token_agreement(_words(e["streaming"]), _words(e[key]))}
             for s, e in (("greedy", g), ("beam", b)) if key in e}
        line(_ARTIFACTS.get(art, art), g.get(key), b.get(key), a.get("greedy"), a.get("beam"))
    for route in ("ours", "package"):
        for prec in ("fp32", "int8"):
            for runner, label in (("sherpa-onnx", f"sherpa-onnx, {_ROUTES[route]} {prec}"),
                                  ("client", f"our client, {_ROUTES[route]} {prec}")):
                name = f"{route} {prec} {runner}"
                if f"{name} greedy" in rows or f"{name} beam" in rows:
                    line(label, rows.get(f"{name} greedy"), rows.get(f"{name} beam"),
                         agree.get(f"{name} greedy"), agree.get(f"{name} beam"))
    if "ours fp32 client-wrong-start greedy" in rows:
        name = "ours fp32 client-wrong-start greedy"
        line("our client, our export fp32, decoder start all blank (wrong)", rows[name], None, agree[name], None)
    return "\n".join(lines)


def add_parser(sub) -> None:
    s = sub.add_parser("score", help="WER and token agreement of sherpa-onnx and our client on a corpus split")
    s.add_argument("--model", default=None, metavar="FILE.py:FACTORY",
                   help="your own transducer, e.g. examples/zipformer_factory.py:build_small")
    s.add_argument("--checkpoint", default=None, help="a built-in transducer's checkpoint (without --model)")
    s.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    s.add_argument("--split", default="test", choices=("train", "valid", "test"))
    s.add_argument("--limit", type=int, default=None, help="first N utterances only")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--routes", default="ours,package", help="ours, package (the zipformer package's export)")
    s.add_argument("--searches", default="greedy,beam", help="greedy, beam (modified_beam_search, beam 4)")
    s.add_argument("--eval", action="append", default=[], metavar="SEARCH=JSON",
                   help="an edge-eval --json of the same model and split, e.g. greedy=g.json beam=b.json: "
                        "agreement with its PyTorch streaming, and its bundle rows in the table")
    s.add_argument("--out", type=Path, default=None, help="write the exports here (default: a temporary folder)")
    s.add_argument("--json", type=Path, default=None, help="write every row (WER, hypotheses, ids) here")
    s.add_argument("--from-json", type=Path, default=None,
                   help="the rows of an earlier --json instead of decoding again (only the table is made)")


def run(args, model, tokens) -> int:
    import sys
    import tempfile

    from edge.errors import fail
    from edge.evaluate import load_utterances

    evals = {}
    for spec in args.eval:
        search, _, path = spec.partition("=")
        if search not in SHERPA_SEARCHES or not Path(path).is_file():
            return fail(f"--eval {spec!r}: expected greedy=FILE or beam=FILE, an edge-eval --json output")
        evals[search] = json.loads(Path(path).read_text())
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731 - progress; the table goes to stdout
    if args.from_json:
        rows = json.loads(args.from_json.read_text())["rows"]
        refs = [h["ref"] for h in next(iter(rows.values()))["hypotheses"]]
    else:
        utts = load_utterances(args.corpus, args.split, args.limit)
        refs = [u["text"] for u in utts]
        with tempfile.TemporaryDirectory() as tmp:
            rows = score_routes(model, tokens, utts, args.out or Path(tmp), args.threads,
                                tuple(args.routes.split(",")), tuple(args.searches.split(",")), say)
    for search, e in evals.items():
        if [h["ref"] for h in e["streaming"]["hypotheses"]] != refs:
            return fail(f"--eval {search}: its utterances are not this split's (same --corpus, --split, --limit?)")
    agree = agreements(rows, evals)
    print(table(evals, rows, agree))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "agreement": agree}, indent=1) + "\n")
    return 0
