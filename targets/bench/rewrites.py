"""Each ORT graph rewrite (targets/ort_rewrite.py) measured alone on exported graphs:

    edge-export --model examples/zipformer_factory.py:build -o /tmp/zip
    python -m targets.bench.rewrites /tmp/zip/encoder.onnx [--rounds 9 --chunks 16 --json out.json]

Per rewrite and precision (fp32, int8 by the bundle's recipe): the nodes of
the `.ort` file before and after, the parity of the rewritten `.ort` against
the unrewritten one over a chunk rollout with the states carried, and the
speed-up per chunk at 1 thread as a paired ratio: in every round both files
run the same chunks, one after the other in an order that alternates, and
the ratio (unrewritten time / rewritten time) of that round is kept; the
median and quartiles over rounds are reported, so drift of a shared machine
hits both sides of each ratio alike (targets/bench/timing.py does the same
for edge-bench's columns). A ratio above 1 means the rewrite is faster.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _session(path: Path):
    import onnxruntime as ort

    from runtime_py.runners import ort_session_options

    # the client's options at 1 thread: the rewrites are timed as the client runs the files
    return ort.InferenceSession(str(path), ort_session_options(ort, 1), providers=["CPUExecutionProvider"])


def chunk_feeds(onnx_path: Path, graph, signature, n: int) -> list[dict]:
    """n chunks of complete feeds (speech, states carried by the fp32 graph): what both files are timed on."""
    from ..calibration import rollout_feeds
    from ..golden import parity_stream
    from ..parity import graph_chunks

    speech = parity_stream(signature, n) if graph.name == "encoder" else []
    return rollout_feeds(onnx_path, graph, graph_chunks(signature, graph, speech, n, seed=0))


def paired_ratio(base: Path, cand: Path, feeds: list[dict], rounds: int) -> dict:
    """Per round: seconds of `feeds` on each file (alternating which goes first); b / a per round."""
    a, b = _session(base), _session(cand)
    for s in (a, b):  # warm-up: first-run allocations out of the rounds
        for f in feeds[:2]:
            s.run(None, f)

    def timed(s):
        t0 = time.perf_counter()
        for f in feeds:
            s.run(None, f)
        return time.perf_counter() - t0

    ratios, per_chunk = [], []
    for r in range(rounds):
        if r % 2:
            tb, ta = timed(b), timed(a)
        else:
            ta, tb = timed(a), timed(b)
        ratios.append(ta / tb)
        per_chunk.append((ta / len(feeds), tb / len(feeds)))
    r = np.array(ratios)
    return {"median": float(np.median(r)), "q25": float(np.percentile(r, 25)), "q75": float(np.percentile(r, 75)),
            "rounds": rounds, "chunks_per_round": len(feeds),
            "ms_per_chunk": [round(float(np.median([p[0] for p in per_chunk])) * 1e3, 3),
                             round(float(np.median([p[1] for p in per_chunk])) * 1e3, 3)]}


def measure(onnx_path: Path, names, precisions, rounds: int, chunks: int, parity_chunks: int, say,
            together: bool = True, on_top_of=()) -> list[dict]:
    import onnx

    from edge.export import read_signature

    from .. import ort as ort_target
    from .. import ort_rewrite
    from ..ort_ops import op_counts

    signature = read_signature(onnx_path)
    graph = signature.graph(onnx_path.stem)
    label = f"{onnx_path.parent.name}/{onnx_path.name}"  # the export folder names the model
    feeds = chunk_feeds(onnx_path, graph, signature, chunks)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-rewrites-") as tmp:
        tmp = Path(tmp)
        if on_top_of:  # the baseline already has these: what the rewrites measured add to them
            model, _ = ort_rewrite.rewrite(onnx.load(str(onnx_path)), tuple(on_top_of))
            (tmp / "on-top-of").mkdir()
            onnx_path = tmp / "on-top-of" / onnx_path.name
            onnx.save(model, str(onnx_path))
        base = {p: ort_target.to_ort(onnx_path, tmp / "base", p, graph, signature, rewrites=()) for p in precisions}
        runs = [(n,) for n in names] + ([tuple(names)] if together and len(names) > 1 else [])
        for run in runs:
            name = "+".join(run)
            say(f"[rewrites] {label}: {name} ...")
            model, counts = ort_rewrite.rewrite(onnx.load(str(onnx_path)), run)
            row = {"graph": label, "rewrite": name, "matches": sum(counts.values()), "counts": counts,
                   "on_top_of": list(on_top_of)}
            rows.append(row)
            if not row["matches"]:
                continue
            src = tmp / name / onnx_path.name
            src.parent.mkdir(parents=True)
            onnx.save(model, str(src))
            for p in precisions:
                cand = ort_target.to_ort(src, tmp / name, p, graph, signature, rewrites=())
                check = ort_rewrite.rollout_check(base[p], cand, graph, signature, parity_chunks)
                if p != "fp32" and "fp32" in base:  # int8 against fp32: the quantisation error, before and after
                    check["relative_error_vs_fp32"] = [
                        ort_rewrite.rollout_check(base["fp32"], f, graph, signature, parity_chunks,
                                                  relative=True)["relative_error"] for f in (base[p], cand)]
                row[p] = {"nodes_before": sum(op_counts(base[p]).values()),
                          "nodes_after": sum(op_counts(cand).values()),
                          "bytes_before": base[p].stat().st_size, "bytes_after": cand.stat().st_size,
                          "parity": check, "speedup": paired_ratio(base[p], cand, feeds, rounds)}
                say(_line(row, p))
    return rows


def _line(row: dict, p: str) -> str:
    r = row[p]
    s = r["speedup"]
    rel = r["parity"].get("relative_error_vs_fp32")
    rel = f" (rel. error vs fp32 {rel[0]:.2e} -> {rel[1]:.2e})" if rel else ""
    name = row["rewrite"] + (f" after {'+'.join(row['on_top_of'])}" if row["on_top_of"] else "")
    return (f"  {row['graph']:24s} {name:22s} {p:5s} nodes {r['nodes_before']} -> {r['nodes_after']}  "
            f"max|diff| {r['parity']['max_abs_diff']:.2e}{rel} over {r['parity']['chunks']} chunks  "
            f"speed-up x{s['median']:.3f} [{s['q25']:.3f}, {s['q75']:.3f}] ({s['rounds']} rounds x "
            f"{s['chunks_per_round']} chunks; {s['ms_per_chunk'][0]:.2f} -> {s['ms_per_chunk'][1]:.2f} ms)")


def main(argv=None) -> int:
    from .. import ort_rewrite

    ap = argparse.ArgumentParser(prog="python -m targets.bench.rewrites", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("onnx", nargs="+", type=Path, help="graphs exported by edge-export (<graph>.onnx)")
    ap.add_argument("--rewrites", default=",".join(n for n, _ in ort_rewrite.REWRITES),
                    help="comma-separated rewrites to measure, each alone")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--rounds", type=int, default=9, help="paired rounds")
    ap.add_argument("--chunks", type=int, default=16, help="chunks per round (states carried)")
    ap.add_argument("--parity-chunks", type=int, default=ort_rewrite.CHECK_CHUNKS)
    ap.add_argument("--no-together", action="store_true", help="skip the row of all named rewrites at once")
    ap.add_argument("--on-top-of", default="", help="comma-separated rewrites the baseline already has (a "
                    "rewrite that only matches after another one, e.g. linear_chains_2d after swoosh_fewer_nodes)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    rows = []
    for path in args.onnx:
        rows += measure(path, [n for n in args.rewrites.split(",") if n], args.precisions.split(","), args.rounds,
                        args.chunks, args.parity_chunks, lambda m: print(m, flush=True), not args.no_together,
                        [n for n in args.on_top_of.split(",") if n])
    for row in rows:
        if not row["matches"]:
            print(f"  {row['graph']:24s} {row['rewrite']:22s} no match (nodes unchanged)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
