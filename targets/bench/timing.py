"""The timed part of a bench run: a warm-up pass per configuration, then
`repeats` rounds in an order rotated each round (machine drift hits every
configuration alike), and each row's figures from the medians over rounds,
with the paired ratios (stats.paired_speedup)."""

from __future__ import annotations

import numpy as np

from . import stats
from .artifacts import _first_line


def rounds(configs: dict, rows: dict, audio, audio_s: float, repeats: int, say) -> dict:
    """(label, threads) -> the pass figures of every round; a configuration
    whose warm-up pass fails is a failed row and gets no rounds."""
    order = list(configs)
    say(f"[bench] warm-up pass x {len(order)} configurations ...")
    passes = {k: [] for k in order}
    for k in order:
        try:
            configs[k].run(audio)
        except Exception as e:  # noqa: BLE001
            rows[k].update(status="failed", error=f"run failed: {_first_line(e)}")
    order = [k for k in order if rows[k]["status"] == "ok"]
    for r in range(repeats):
        rot = order[r % len(order):] + order[:r % len(order)] if order else []
        for k in rot:
            passes[k].append(stats.pass_stats(configs[k].run(audio), audio_s))
        say(f"[bench] round {r + 1}/{repeats} done")
    return passes


def summarise(rows: dict, passes: dict, configs: dict, macs: dict, peak, audio_s: float, family: str,
              thread_list) -> list[dict]:
    """Each working row's medians, FLOP rate and speed-ups against PyTorch;
    returns the paired ratios of stats.PAIRS."""
    for k in [k for k in passes if rows[k]["status"] == "ok"]:
        row, st = rows[k], passes[k]
        med = {q: float(np.median([s[q] for s in st])) for q in ("p50", "p90", "p99", "mean", "total",
                                                                  "frontend", "e2e")}
        calls = dict(configs[k].calls)
        flops = 2 * sum(macs.get(g, 0) * n for g, n in calls.items()) if row["kind"] != "sherpa" else 0
        row.update(chunks=st[-1]["chunks"], audio_s=audio_s, compute_s=med["total"], rtf=med["total"] / audio_s,
                   e2e_s=med["e2e"], e2e_rtf=med["e2e"] / audio_s, frontend_ms=med["frontend"] * 1e3,
                   p50_ms=med["p50"] * 1e3, p90_ms=med["p90"] * 1e3, p99_ms=med["p99"] * 1e3,
                   mean_ms=med["mean"] * 1e3, calls=calls, flops_per_pass=flops if macs and flops else None,
                   gflops=flops / med["total"] / 1e9 if macs and flops else None)
        if peak and row["gflops"]:
            row["peak_fraction"] = row["gflops"] / (peak * k[1])
    for (lb, t), row in rows.items():
        ref = rows.get(("pytorch", t))
        if row["status"] == "ok" and ref and ref["status"] == "ok" and ref["p50_ms"]:
            row["speedup_vs_pytorch"] = ref["p50_ms"] / row["p50_ms"]
            row["speedup_rtf_vs_pytorch"] = ref["rtf"] / row["rtf"]
            row["speedup_vs_pytorch_paired"] = stats.paired_speedup(passes[(lb, t)], passes[("pytorch", t)])

    def both_ok(a, b, t):
        return ((a, t) in passes and (b, t) in passes
                and rows[(a, t)]["status"] == rows[(b, t)]["status"] == "ok")
    return [dict(family=family, threads=t, faster=a, than=b, **stats.paired_speedup(passes[(a, t)], passes[(b, t)]))
            for t in thread_list for a, b in stats.PAIRS if both_ok(a, b, t)]
