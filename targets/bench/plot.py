"""The chart: per-chunk latency (p50/p90) and end-to-end RTF, and peak memory, per column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import chart_title


def plot(result: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [f"{r['family'][:4]} {r['label']} x{r['threads']}" for r in rows]
    ok = [r["status"] == "ok" for r in rows]
    val = lambda k: [r[k] if r["status"] == "ok" and r.get(k) is not None else 0.0 for r in rows]  # noqa: E731
    x = np.arange(len(rows))
    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(max(11, 1.5 * len(rows) + 5), 5.4))
    fig.suptitle(chart_title(result), fontsize=10)
    ax1.bar(x - 0.2, val("p50_ms"), 0.4, label="p50")
    ax1.bar(x + 0.2, val("p90_ms"), 0.4, label="p90")
    ax1.set_ylabel("latency per chunk (ms)")
    ax1.set_title("per-chunk latency (median of rounds)")
    ax1.legend()
    ax3.bar(x, val("e2e_rtf"), 0.6, color="tab:purple")
    ax3.set_ylabel("real-time factor (lower is faster)")
    ax3.set_title("end to end: fbank + encoder + decoding")
    ax2.bar(x, val("peak_rss_mb"), 0.6, color="tab:green")
    ax2.set_ylabel("peak resident memory (MB)")
    ax2.set_title("peak memory (median of fresh processes per backend)")
    for ax in (ax1, ax3, ax2):
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        for i, good in enumerate(ok):
            if not good:
                ax.text(i, 0, "not converted" if "not converted" in (rows[i]["error"] or "") else "failed", rotation=90, ha="center", va="bottom", fontsize=8, color="red")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


