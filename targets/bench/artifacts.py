"""The files each column times: a bundle's artifacts (given with --bundle, or
built here with targets.build.build_bundle: the ORT pairs in one bundle, each
TFLite pair in its own, so one failed conversion is a row saying "not
converted" and why, not a crash)."""

from __future__ import annotations

import time
from pathlib import Path

from .columns import COLUMNS, BenchError, split_label

PARITY_CHUNKS = 50  # the build's own parity rollout; speed is what is measured here
# The bundles edge-bench builds are timed, not shipped: a short stream proof keeps the build quick.
BUNDLE_STREAM_CHECK_S = 60.0


def _first_line(e: BaseException, limit: int = 300) -> str:
    msg = f"{type(e).__name__}: {e}".strip()
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    text = lines[0] if lines else type(e).__name__
    if len(lines) > 1:
        text += " | " + lines[-1].strip()
    return text[:limit]


def _artifact_set(bundle_dir: Path, signature, backend, precision) -> dict:
    from runtime_py.manifest import Bundle

    b = Bundle(bundle_dir)
    files, size, parity, recipes = {}, 0, {}, {}
    skipped = next((nc for nc in b.manifest.get("not_converted") or []
                    if nc.get("backend") == backend and nc.get("precision") == precision), None)
    if skipped:
        reason = [ln.strip() for ln in str(skipped.get("reason", "")).splitlines() if ln.strip()]
        raise BenchError(f"not converted: {' | '.join(reason[:2])[:300]}")
    for g in signature.graphs:
        art = b.find(g.name, backend, precision)
        files[g.name] = b.path(art.path)  # sha256-checked
        size += int(art.bytes)
        parity[g.name] = art.parity.get("passed") if isinstance(art.parity, dict) else None
        if isinstance(art.parity, dict) and isinstance(art.parity.get("int8_recipe"), dict):
            recipes[g.name] = art.parity["int8_recipe"]
    return {"bundle": str(bundle_dir), "files": files, "size_bytes": size,
            "parity_passed": all(v is not False for v in parity.values()) if parity else None,
            **({"int8_recipe": recipes} if recipes else {})}


def _about(label: str, art: dict) -> dict:
    """The column's description with the int8 recipe the bundle's manifest records (the recipe depends on
    the model: no Conv, no static part), where it records one; else the column's own neutral wording."""
    recipes = art.get("int8_recipe")
    if not recipes:
        return art

    def said(r: dict) -> str:
        ops = [f"{op.split('.')[-1]} x{n}" for by_op in (r.get("ops_quantised") or {}).values()
               for op, n in by_op.items()]
        return f"{r.get('recipe', '?')}" + (f" ({', '.join(ops)})" if ops else "")

    per_graph = "; ".join(f"{g} {said(r)}" for g, r in recipes.items())
    return {**art, "about": f"{COLUMNS[label].about}; int8 recipe from the manifest: {per_graph}"}


def _not_converted(e: BaseException) -> str | None:
    """A converter's refusal (targets.conversion_errors) as one row: what did
    not convert and what the converter said, without the build's advice."""
    from targets.conversion_errors import ConversionError

    if not isinstance(e, ConversionError):
        return None
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = next((ln for ln in lines if ln.startswith("converter said:")), "")
    return f"not converted: {lines[0].split(' Fix: ')[0]} {said}".strip()[:400]


def _error(e: BaseException) -> str:
    return str(e) if isinstance(e, BenchError) else _first_line(e)


def prepare_artifacts(labels, signature, work: Path, *, model=None, bundle=None,
                      parity_chunks: int = PARITY_CHUNKS, say=print) -> dict:
    """label -> {"files", "size_bytes", "parity_passed", "bundle"} or {"error"}."""
    wanted = [lb for lb in labels if COLUMNS[lb].kind == "artifact"]
    out = {}
    if bundle is not None:
        for lb in wanted:
            try:
                out[lb] = _about(lb, _artifact_set(Path(bundle), signature, *split_label(lb)))
            except Exception as e:  # noqa: BLE001 - a missing artifact is a row, not a crash
                out[lb] = {"error": _error(e)}
        return out
    from targets.build import build_bundle

    # ORT/ONNX columns share one bundle; each TFLite column gets its own
    groups = [("ort", [lb for lb in wanted if split_label(lb)[0] in ("ort", "onnx")])]
    groups += [(f"tflite-{split_label(lb)[1]}", [lb]) for lb in wanted if split_label(lb)[0] == "tflite"]
    family = signature.family
    for name, group in groups:
        if not group:
            continue
        pairs = list(dict.fromkeys(split_label(lb) for lb in group))
        dest = work / f"bundle-{name}"
        t0 = time.perf_counter()
        say(f"[bench] building {family} bundle for {', '.join(group)} ...")
        try:
            path = build_bundle(None if hasattr(model, "info") else family, "rpi", dest, model=model,
                                backends=pairs, parity_chunks=parity_chunks, keep_failed=True,
                                stream_seconds=BUNDLE_STREAM_CHECK_S)
            for lb in group:
                try:
                    out[lb] = _about(lb, _artifact_set(Path(path), signature, *split_label(lb)))
                except Exception as e:  # noqa: BLE001 - e.g. not converted: a row that says why
                    out[lb] = {"error": _error(e)}
            say(f"[bench]   done in {time.perf_counter() - t0:.1f}s")
        except Exception as e:  # noqa: BLE001 - e.g. a TFLite conversion that fails for a family
            for lb in group:
                out[lb] = {"error": _not_converted(e) or f"build failed: {_first_line(e)}"}
            say(f"[bench]   FAILED ({_first_line(e, 160)})")
    return out
