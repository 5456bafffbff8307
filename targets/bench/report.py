"""The bench result as JSON, as a table with notes (paired ratios, the
Raspberry Pi estimate), as Markdown for docs/benchmarks.md (with the project's
performance targets as pass/miss lines), and a chart title."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .stats import PI_PEAK_GFLOPS


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def write_json(result: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(result), indent=2, sort_keys=True) + "\n")
    return path


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _per(v, fmt) -> str:
    if isinstance(v, dict):
        return "/".join(format(x, fmt) for x in v.values()) + f" ({'/'.join(v)})"
    return format(v, fmt)


def format_table(result: dict) -> str:
    head = ("family", "backend", "thr", "p50 ms", "p90 ms", "p99 ms", "RTF", "e2e RTF", "x torch", "cold ms",
            "peak MB", "size MB", "GFLOP/s", "% peak", "parity")
    lines = []
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append((r["family"], r["label"], str(r["threads"]), f"FAILED: {r['error']}"))
            continue
        lines.append((r["family"], r["label"], str(r["threads"]), _f(r["p50_ms"], ".2f"), _f(r["p90_ms"], ".2f"),
                      _f(r["p99_ms"], ".2f"), _f(r["rtf"], ".4f"), _f(r.get("e2e_rtf"), ".4f"),
                      _f(r["speedup_vs_pytorch"], ".2f"),
                      _f(r["cold_start_ms"], ".0f"), _f(r["peak_rss_mb"], ".0f"),
                      _f(r["size_bytes"] / 2 ** 20 if r["size_bytes"] else None, ".2f"), _f(r["gflops"], ".2f"),
                      _f(r["peak_fraction"] * 100 if r["peak_fraction"] is not None else None, ".1f"),
                      {True: "ok", False: "FAIL", None: "-"}[r["parity"]]))
        if r.get("error"):  # ran, with a caveat (e.g. the memory child failed)
            lines.append((r["family"], r["label"], str(r["threads"]), f"note: {r['error']}"))
    widths = [max(len(head[i]), *(len(ln[i]) for ln in lines if len(ln) == len(head))) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), "  ".join("-" * w for w in widths)]
    for ln in lines:
        out.append(fmt(ln) if len(ln) == len(head) else "  ".join(c.ljust(w) for c, w in zip(ln[:3], widths))
                   + "  " + ln[3])
    m, w = result["machine"], result["workload"]
    notes = [f"machine: {m['cpu']} ({m['cores']} cores), python {m['versions']['python']}, torch "
             f"{m['versions'].get('torch')}, onnxruntime {m['versions'].get('onnxruntime')}; load average "
             f"{m['loadavg_start'][0]:.2f} -> {(m.get('loadavg_end') or [float('nan')])[0]:.2f}",
             f"workload: {_per(w['audio_s'], '.1f')}s of audio, {_per(w['chunks'], 'd')} chunks, {w['includes']}; median of "
             f"{w['repeats']} round-robin rounds"]
    used = {f"{r['label']} x{r['threads']}": r["provider"] for r in result["rows"] if r.get("provider")}
    if used:
        notes.append("ONNX Runtime execution provider used: " + "; ".join(f"{k} {v}" for k, v in used.items()))
    if result.get("peak_matmul_gflops_1thread"):
        notes.append(f"peak: {result['peak_matmul_gflops_1thread']:.1f} GFLOP/s (512x512 fp32 matmul, 1 thread; "
                     "% peak uses peak x threads)")
    if result.get("paired"):
        notes.append("paired speed-ups (per round: ratio of the two p50s; median [quartiles] over rounds): "
                     + "; ".join(f"{p['family']} x{p['threads']} {p['faster']} vs {p['than']} {p['median']:.2f}x "
                                 f"[{p['q25']:.2f}, {p['q75']:.2f}]" for p in result["paired"]))
    for fam, mi in result["models"].items():
        if mi.get("flops_per_audio_s"):
            notes.append(f"{fam}: {mi['parameters'] / 1e6:.2f}M parameters, "
                         f"{mi['flops_per_audio_s'] / 1e6:.1f} MFLOP per second of audio ({mi['source']}"
                         f"{'' if mi['trained'] else ', untrained'})")
        c = mi.get("int8_matmul_ceiling") or {}
        if c.get("ratio"):
            notes.append(f"{fam}: int8 ceiling: the encoder's {c['matmuls']} weight matmuls alone, at the rows "
                         f"one step gives them ({', '.join(map(str, c['rows_per_call']))}), take "
                         f"{c['fp32_ms']:.3f} ms fp32 vs {c['int8_ms']:.3f} ms int8 (ORT, 1 thread): "
                         f"{c['ratio']:.2f}x is the most dynamic int8 can speed up the step")
    # The project's own performance targets are not the user's: they go to the benchmark docs
    # (markdown below) and the JSON, not to the terminal.
    notes += pi_lines(result)
    from .streams import describe
    notes += [f"{fam}: {describe(b)}" for fam, b in (result.get("batching") or {}).items()]
    about = dict.fromkeys(f"{r['label']}: {r['about']}" for r in result["rows"] if r.get("about"))
    if about:
        notes.append("columns: " + "; ".join(about))
    return "\n".join(out + [""] + notes)


def chart_title(result: dict) -> str:
    """What a chart shows, so it can be read on its own: the model(s), the
    machine, the threads and the workload."""
    m, w = result["machine"], result["workload"]
    models = ", ".join(f"{fam} ({mi['source']}{'' if mi.get('trained', True) else ', untrained'})"
                       for fam, mi in result["models"].items())
    threads = ", ".join(str(t) for t in w["threads"])
    audio = w["audio_s"] if not isinstance(w["audio_s"], dict) else max(w["audio_s"].values())
    return (f"edge-bench: {models}\n{m['cpu']}, {m['cores']} cores; threads {threads}; "
            f"{audio:.0f} s of audio, median of {w['repeats']} rounds")




def target_lines(result: dict) -> list[str]:
    out = []
    for t in result.get("targets") or []:
        fam = f"{t['family']}: " if t.get("family") else ""
        out.append(f"target {'PASS' if t['passed'] else 'MISS'}: {fam}{t['target']}: {t['value']:.3g} "
                   f"(needs {t['op']} {t['limit']:g}; {t['detail']})")
    return out


def pi_lines(result: dict) -> list[str]:
    pi = result.get("pi") or []
    if not pi:
        return []
    peak = result.get("peak_matmul_gflops_1thread")
    head = (f"Raspberry Pi estimate (e2e RTF; 1 core: e2e RTF here x ({peak:.1f} GFLOP/s here / the Pi core's fp32 "
            f"matmul peak: " + ", ".join(f"{k} {v:.1f}" for k, v in PI_PEAK_GFLOPS.items())
            + "); assumes matmul-bound work scaling with that peak; int8 rows are rougher. N threads: the 1-core "
            "figure / the 1 -> N speed-up measured here; 4 threads, when not measured: Amdahl's law from the "
            "1 -> 2 speed-up, an upper bound on a Pi when that comes from a quiet machine):")
    return [head] + [f"  {p['family']} {p['label']} x{p.get('threads', 1)}: "
                     + (f"here {p['rtf_here']:.4f}" if p.get("rtf_here") is not None else "not measured here")
                     + (f" (x{p['speedup']:.2f} over 1 thread, {p['basis']})" if p.get("threads", 1) > 1 else "")
                     + (" -> " + ", ".join(f"{k.split(' (')[0]} {p[k]:.3f}" for k in PI_PEAK_GFLOPS)
                        if all(p[k] is not None for k in PI_PEAK_GFLOPS) else "") for p in pi]


def markdown(result: dict) -> str:
    """The table, the target lines and the Pi estimate as Markdown, for
    docs/benchmarks.md: `python -m targets.bench.report docs/bench-zipformer.json`."""
    head = "| column | thr | p50 ms | p90 ms | RTF | e2e RTF | × PyTorch | cold ms | peak MB | size MiB |"
    out = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in result["rows"]:
        if r["status"] != "ok":
            out.append(f"| {r['label']} | {r['threads']} | {r['error']} |||||||")
            continue
        size = r["size_bytes"] / 2 ** 20 if r.get("size_bytes") else None
        out.append(f"| {r['label']} | {r['threads']} | {_f(r['p50_ms'], '.2f')} | {_f(r['p90_ms'], '.2f')} | "
                   f"{_f(r['rtf'], '.4f')} | {_f(r.get('e2e_rtf'), '.4f')} | {_f(r['speedup_vs_pytorch'], '.2f')} | "
                   f"{_f(r['cold_start_ms'], '.0f')} | {_f(r['peak_rss_mb'], '.0f')} | {_f(size, '.1f')} |")
    out.append("")
    targets = target_lines(result)
    if targets:
        out += ["Project targets (ours, for the benchmark docs; not printed by edge-bench):", ""]
        out += [f"- {ln}" for ln in targets]
    pi = pi_lines(result)
    if pi:
        out += ["", pi[0], ""] + [f"- {ln.strip()}" for ln in pi[1:]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    print(markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
