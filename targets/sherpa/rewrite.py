"""The .ort route's graph rewrites (targets/ort_rewrite.py) on the sherpa-form
files: the same rewrites (`ort_rewrite.DEFAULT` per precision), the same check
(rewritten vs exported graph in ONNX Runtime over a rollout with the states
carried, ort_rewrite.CHECK_TOLERANCE) and the same refusal: a graph outside
the bar, or a pass that crashes, leaves the exported graph as it is, and the
record says so. Nothing here renames an input or output or touches the
metadata sherpa-onnx reads: the rewrites edit nodes between them.

What ran goes into `REPORT` beside the files (one record per shipped file:
the int8 files are quantised from the rewritten fp32 graph and carry its
record), and `summary(report)` is the export command's printed form of it.
"""

from __future__ import annotations

import json
from pathlib import Path

REPORT = "edge-rewrites.json"


def rewrite_graph(plain: Path, graph, signature, precision: str, work: Path,
                  names: tuple[str, ...] | None = None) -> tuple[Path, dict]:
    """(the graph file to ship or quantise for `precision`, its record). `names`: the rewrites to try
    (None: ort_rewrite.DEFAULT[precision]); the work folder caches one check per (graph, rewrites)."""
    from targets import ort_rewrite

    # a choice other than the default is said, as targets/ort.py says it in the manifest
    chosen = {} if names is None else {"rewrites_selected": list(names)}
    names = tuple(ort_rewrite.DEFAULT[precision] if names is None else names)
    try:
        rewritten, record = ort_rewrite.apply_cached(plain, graph, signature, names, work)
    except Exception as e:  # noqa: BLE001 - a crash in the pass ships the exported graph, never fails the export
        return plain, {**chosen, "rewrites": {},
                       "rewrite_error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
    if record is None:  # nothing requested, or nothing matched: the exported graph as it is
        return plain, {**chosen, "rewrites": {n: 0 for n in names}}
    return rewritten or plain, {**chosen, **record}


def write_report(out_dir: Path, records: dict[str, dict]) -> Path:
    """`REPORT`: {file name: record}, sorted, without paths or times (a reproducible artifact)."""
    path = Path(out_dir) / REPORT
    path.write_text(json.dumps(dict(sorted(records.items())), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def summary(report: dict[str, dict]) -> list[str]:
    """One line per file: the rewrites that ran (or were refused, or crashed) and the check's figures."""
    lines = []
    for name, rec in sorted(report.items()):
        counts = rec.get("rewrites") or rec.get("rewrites_refused") or {}
        ran = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
        check = rec.get("rewrite_check")
        if "rewrite_error" in rec:
            lines.append(f"{name}: graph pass failed ({rec['rewrite_error']}); shipped the exported graph")
        elif check is None:
            lines.append(f"{name}: " + (f"no rewrite matched ({ran})" if counts else "no rewrite tried")
                         + "; the exported graph")
        else:
            verdict = "passed" if check["passed"] else "FAILED: shipped the exported graph instead"
            lines.append(f"{name}: rewrites {ran}; checked over {check['chunks']} chunks in ONNX Runtime: "
                         f"max |diff| {check['max_abs_diff']:.1e}, states {check['state_max_scaled_diff']:.1e} "
                         f"(bar {check['tolerance']:.0e}) {verdict}")
    return lines
