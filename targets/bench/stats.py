"""Statistics of the passes, paired ratios, the project's performance targets as pass/miss
lines, and the Raspberry Pi estimate.

Paired: for two configurations timed in the same rounds, the ratio of their
per-pass figures round by round, then the median and quartiles over rounds.
Machine drift between rounds hits both alike, so this is steadier than a
ratio of two medians taken over the whole run.
"""

from __future__ import annotations

import numpy as np

from .columns import COLUMNS

# Speed-ups worth a line of their own: (faster candidate, baseline), per-chunk p50.
PAIRS = (("ort:int8", "ort:fp32"), ("tflite:fp32", "ort:fp32"), ("tflite:fp16", "tflite:fp32"),
         ("tflite:int8", "tflite:fp32"), ("tflite:int8", "ort:int8"),
         ("ort:fp32", "ort:fp32+beam"), ("ort:int8", "ort:int8+beam"),  # beam's cost: greedy x faster
         ("ort:int8+1sym", "ort:fp32+1sym"), ("ort:fp32+1sym", "ort:fp32"))  # one symbol per frame vs up to 3

# fp32 peak of one core, GFLOP/s = clock x fp32 FLOPs per cycle. Clocks: the
# Raspberry Pi 4 Model B and Raspberry Pi 5 product briefs (1.5 and 2.4 GHz).
# Cortex-A72: 8 (one 4-wide FMA per cycle; vfpbench measured 15.9 GFLOP/s on
# one A72 core at 2.0 GHz, wlog.flatlib.jp/2015/10/30/n1787). Cortex-A76: 16
# (two 128-bit FMA pipes, Arm Cortex-A76 Software Optimization Guide).
PI_PEAK_GFLOPS = {"Pi 4 (Cortex-A72, 1.5 GHz)": 1.5 * 8, "Pi 5 (Cortex-A76, 2.4 GHz)": 2.4 * 16}
E2E_RTF_TARGET = 0.025
PI_CORES = 4  # a Raspberry Pi 4 and a Pi 5 both have four cores


def pass_stats(res: dict, audio_s: float) -> dict:
    t = np.asarray(res["chunk_s"])
    p50, p90, p99 = np.percentile(t, [50, 90, 99]) if len(t) else (np.nan,) * 3
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(t.mean()) if len(t) else np.nan,
            "total": float(t.sum()), "frontend": res["frontend_s"], "e2e": res["e2e_s"], "chunks": int(len(t))}


def paired_speedup(a: list[dict], b: list[dict], key: str = "p50") -> dict:
    """Speed-up of configuration a over b from the same rounds: b / a per round."""
    r = np.array([y[key] / x[key] for x, y in zip(a, b)])
    return {"median": float(np.median(r)), "q25": float(np.percentile(r, 25)),
            "q75": float(np.percentile(r, 75)), "rounds": int(len(r))}


def _ok(rows, label):
    r = rows.get(label)
    return r if r and r["status"] == "ok" else None


def _fp32_for(rows: dict, label: str) -> str | None:
    """The ORT fp32 column an int8 column is compared with: the one with the same search (the same
    decoder and joiner calls per chunk), else ort:fp32."""
    same = [lb for lb, c in COLUMNS.items() if c.kind == "artifact" and c.backend == "ort"
            and c.precision == "fp32" and c.search == COLUMNS[label].search and _ok(rows, lb)]
    return same[0] if same else ("ort:fp32" if _ok(rows, "ort:fp32") else None)


def project_targets(rows: dict, passes: dict) -> list[dict]:
    """The project's performance targets that this run's columns can answer, each with its
    paired ratio (median over rounds) and pass/miss. `rows`/`passes` by label."""
    out = []

    def ratio(a, b, key):
        return paired_speedup(passes[a], passes[b], key)["median"]  # b / a

    def add(name, value, limit, better, detail):
        ok = value <= limit if better == "<=" else value >= limit
        out.append({"target": name, "value": value, "limit": limit, "op": better, "passed": bool(ok),
                    "detail": detail})

    if _ok(rows, "ort:fp32") and _ok(rows, "pytorch"):
        add("ORT fp32 >= 3x PyTorch eager per chunk", ratio("ort:fp32", "pytorch", "p50"), 3.0, ">=",
            "paired p50 per chunk")
    int8 = [lb for lb, c in COLUMNS.items() if c.kind == "artifact" and c.precision.startswith("int8")
            and _ok(rows, lb)]
    paired_int8 = [(lb, base) for lb in int8 if (base := _fp32_for(rows, lb))]
    if paired_int8:
        best, base = max(paired_int8, key=lambda p: ratio(p[0], p[1], "p50"))
        add("best int8 >= 2.2x ORT fp32", ratio(best, base, "p50"), 2.2, ">=", f"{best} vs {base}, paired p50")
    for prec, ours in (("fp32", ["ort:fp32", "ort:fp32+1sym"]), ("int8", int8)):
        sherpa = f"sherpa:pkg-{prec}"
        mine = [lb for lb in ours if _ok(rows, lb)]
        if mine and _ok(rows, sherpa):
            best = min(mine, key=lambda lb: 1 / ratio(lb, sherpa, "e2e"))
            add(f"our e2e RTF <= 0.8x sherpa-onnx on the package's export ({prec})", 1 / ratio(best, sherpa, "e2e"),
                0.8, "<=", f"{best} vs {sherpa}, paired e2e")
        client, same = f"client:sherpa-{prec}", f"sherpa:{prec}"
        if _ok(rows, client) and _ok(rows, same):
            add(f"identical files ({prec}): our e2e RTF <= 1.05x sherpa-onnx's", 1 / ratio(client, same, "e2e"),
                1.05, "<=", f"{client} vs {same}, paired e2e")
            a, b = rows[client].get("peak_rss_mb"), rows[same].get("peak_rss_mb")
            if a and b:
                add(f"identical files ({prec}): peak RSS <= sherpa-onnx's + 10 MB", a - b, 10.0, "<=",
                    f"{a:.0f} MB vs {b:.0f} MB (MB over)")
    if _ok(rows, "tflite:int8") and _ok(rows, "ort:int8"):
        add("TFLite int8 within 1.2x of ORT int8", 1 / ratio("tflite:int8", "ort:int8", "p50"), 1.2, "<=",
            "paired p50")
    e2e = {lb: r["e2e_rtf"] for lb, r in rows.items()  # ours: every column but sherpa-onnx's own
           if r["status"] == "ok" and r.get("e2e_rtf") and COLUMNS[lb].kind != "sherpa"}
    if e2e:
        best = min(e2e, key=e2e.get)
        add(f"our best e2e RTF <= {E2E_RTF_TARGET}", e2e[best], E2E_RTF_TARGET, "<=", best)
    return out


def amdahl_speedup(speedup_2: float, threads: int) -> float:
    """Speed-up at `threads` threads by Amdahl's law, with the parallel
    fraction p that gives the measured 1 -> 2 thread speed-up S2:
    S2 = 1 / (1 - p + p/2), so p = 2 (1 - 1/S2), clipped to [0, 1]."""
    p = min(max(2.0 * (1.0 - 1.0 / speedup_2), 0.0), 1.0)
    return 1.0 / ((1.0 - p) + p / threads)


def pi_estimates(rows: list[dict], peak_here: float | None, thread_speedups: dict | None = None) -> list[dict]:
    """The Raspberry Pi estimate per column and thread count.

    1 thread: e2e RTF on one Pi core = RTF here x (this machine's 1-thread
    matmul peak / the Pi core's). Assumes the pass is matmul-bound and scales
    with fp32 matmul throughput; int8 kernels scale differently (the A72 has
    no int8 dot-product instructions, the A76 has), so int8 rows are rougher.
    t threads measured here: the 1-thread Pi figure / the speed-up from 1 to t
    threads here (`thread_speedups[(label, t)]`, the paired e2e ratio; else
    the ratio of the two rows' e2e RTF). PI_CORES threads when not measured:
    Amdahl's law from the 1 -> 2 speed-up here (amdahl_speedup); an upper
    bound on a Pi, whose cores share a smaller cache and memory bus, when
    the speed-up comes from a quiet machine (a busy one measures less)."""
    if not peak_here:
        return []
    ok = {(r["label"], r["threads"]): r for r in rows if r["status"] == "ok" and r.get("e2e_rtf")}
    speedups = thread_speedups or {}
    out = []
    for (label, t), r in ok.items():
        if t != 1:
            continue
        one = {pi: r["e2e_rtf"] * peak_here / g for pi, g in PI_PEAK_GFLOPS.items()}

        def entry(threads, speedup, basis, rtf_here):
            # more threads that ran slower here say the machine was busy, not how a Pi scales: no estimate
            usable = threads == 1 or speedup > 1.0
            return {"label": label, "family": r["family"], "threads": threads, "rtf_here": rtf_here,
                    "speedup": speedup, "basis": basis if usable else f"{basis}; slower than 1 thread "
                    "(a busy machine?): no estimate", **{pi: v / speedup if usable else None for pi, v in one.items()}}
        out.append(entry(1, 1.0, "one Pi core", r["e2e_rtf"]))
        got = {}
        for tt in sorted(tt for (lb, tt) in ok if lb == label and tt > 1):
            got[tt] = speedups.get((label, tt)) or r["e2e_rtf"] / ok[(label, tt)]["e2e_rtf"]
            out.append(entry(tt, got[tt], f"1 -> {tt} thread speed-up measured here", ok[(label, tt)]["e2e_rtf"]))
        if got.get(2, 0.0) > 1.0 and PI_CORES not in got:
            out.append(entry(PI_CORES, amdahl_speedup(got[2], PI_CORES),
                             f"Amdahl's law from the 1 -> 2 speed-up here (x{got[2]:.2f})", None))
    return out
