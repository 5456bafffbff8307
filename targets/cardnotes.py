"""What a model card says about each file's precision, taken from what the
manifest records for those very files (the int8 recipe read back from an
.ort file, the float16/float32 op census of an .mlpackage, the files' sizes),
not from what the recipe usually does: an audio-in bundle's int8 encoder, for
one, has no calibrated Conv (its frontend stays float), and which ops a Core
ML fp16 package keeps in float32 depends on the model."""

from __future__ import annotations

from .tflite import FP16_KEEP_FP32_VALUES

# Precisions whose files are what their converter always writes: nothing per file to read.
FIXED_NOTES = {
    ("onnx", "fp32"): "float32 weights and compute.",
    ("ort", "fp32"): "float32 weights and compute; graph pre-optimised offline.",
    ("tflite", "fp32"): "float32 weights and compute.",
    ("tflite", "fp16"): "weight matrices stored float16 and dequantised to float32 when the interpreter loads them "
                        "(the CPU computes float32; GPU delegates may compute in fp16); vectors (biases, norms, "
                        f"CMVN) and tensors of at most {FP16_KEEP_FP32_VALUES} values (e.g. depthwise kernels) kept "
                        "float32.",
    ("tflite", "int8"): "dynamic range: int8 weights for tensors of 1024+ values (they stay int8 in memory), float "
                        "activations; I/O and states stay float32.",
    ("coreml", "fp32"): "ML program, float32 compute; I/O and states float32.",
}


def _ort_int8(arts: list[dict]) -> str:
    recs = {a["graph"]: a["parity"]["int8_recipe"] for a in arts if a["parity"].get("int8_recipe")}
    if not recs:
        return "int8 (the recipe of these files is not recorded in manifest.json); I/O and states stay float32."
    # a recipe's record names it by "method" (the shipped recipe) or "recipe" (any Int8Recipe's record)
    methods = sorted({str(r.get("method") or r.get("recipe") or "int8") for r in recs.values()})
    ops = "; ".join(f"{g}: " + ", ".join(f"{op.split('.')[-1]} x{n} ({kind})"
                                         for kind, by_op in r.get("ops_quantised", {}).items() for op, n in by_op.items())
                    for g, r in sorted(recs.items()))
    calib = sorted({str(r["calibration"]) for r in recs.values() if r.get("calibration")})
    return ("; ".join(methods) + ". Ops quantised (manifest.json `int8_recipe`): " + ops + ". Activation ranges: "
            + (f"calibrated on {', '.join(calib)}" if calib else "none calibrated (every quantised op is dynamic: "
               "activations are quantised per call)") + ". I/O and states stay float32.")


def _coreml_fp16(arts: list[dict]) -> str:
    recs = [a["parity"].get("spec_checks", {}).get("compute") for a in arts]
    if not recs or any(r is None for r in recs):
        return ("ML program with fp16 compute; which ops stay float32 is not recorded in manifest.json; I/O and "
                "states float32.")
    f16 = sum(r["float16_ops"] for r in recs)
    front = sum(r["float32_frontend_ops"] for r in recs)
    other: dict[str, int] = {}
    for r in recs:
        for op, n in r["float32_other_ops"].items():
            other[op] = other.get(op, 0) + n
    kept = []
    if front:
        kept.append(f"the in-graph fbank frontend ({front} ops: powers of int16-range samples exceed fp16's 65504)")
    ours = {op: n for op, n in other.items() if op in ("log", "softmax")}
    theirs = {op: n for op, n in other.items() if op not in ours}
    if ours:
        kept.append("the log-softmax (" + ", ".join(f"{op} x{n}" for op, n in ours.items())
                    + ": a small probability would underflow to log 0)")
    if theirs:
        kept.append("what coremltools keeps in float32 itself (" + ", ".join(f"{op} x{n}" for op, n in theirs.items())
                    + ")")
    return (f"ML program: {f16} ops compute in float16, {front + sum(other.values())} in float32"
            + (": " + "; ".join(kept) if kept else "") + " (read from the package's ops, manifest.json "
            "`spec_checks.compute`); I/O and states float32.")


def precision_note(backend: str, precision: str, arts: list[dict]) -> str | None:
    """One line on what the `backend`/`precision` files (`arts`) hold."""
    if (backend, precision) == ("ort", "int8"):
        return _ort_int8(arts)
    if (backend, precision) == ("coreml", "fp16"):
        return _coreml_fp16(arts)
    return FIXED_NOTES.get((backend, precision))


def _bytes(arts: list[dict], backend: str, precision: str, graphs) -> int | None:
    sizes = [next((a["bytes"] for a in arts if a["backend"] == backend and a["precision"] == precision
                   and a["graph"] == g), None) for g in graphs]
    return None if None in sizes else sum(sizes)


def ship_reason(backend: str, precision: str, arts: list[dict], chosen: dict[str, str]) -> str:
    """Why the card's default precision, with the files' real sizes (the
    chosen files, graph -> path, together) against the other precisions of
    the same format."""
    graphs = list(chosen)
    mine = sum(a["bytes"] for a in arts if a["path"] in chosen.values())
    others = {p: n for p in sorted({a["precision"] for a in arts if a["backend"] == backend} - {precision})
              if (n := _bytes(arts, backend, p, graphs)) is not None}
    sizes = f"{precision} {mine:,} bytes" + ("; " + ", ".join(f"{p} {n:,}" for p, n in others.items()) if others else "")
    smaller = [p for p, n in others.items() if n < mine]
    if precision == "int8":
        why = ("its weights stay int8 in memory and its matrix products run in int8 on a phone CPU"
               + (", where an fp16 file's weights are expanded to float32 when loaded (fp16 pays off only on a GPU "
                  "delegate)" if backend == "tflite" else ""))
        size = (f"not because of the file size: {', '.join(smaller)} is smaller here" if smaller
                else "and it is also the smallest file")
        return f"{precision} because {why}; {size} ({sizes})."
    if precision == "fp16":
        return f"fp16 because the Neural Engine and the GPU compute in fp16 ({sizes})."
    return f"{precision} because the smaller precisions did not pass parity ({sizes})."


__all__ = ["FIXED_NOTES", "precision_note", "ship_reason"]
