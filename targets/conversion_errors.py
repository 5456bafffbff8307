"""What a converter's failure says, read for the user: the operation it
names (when it names one), its own failing line, the ONNX node, and what to
do. Used by edge-build for every backend."""

from __future__ import annotations

import re
from pathlib import Path

from edge.errors import UserError

CONVERTER = {"ort": "ONNX Runtime", "onnx": "ONNX", "tflite": "onnx2tf/TFLite", "coreml": "coremltools"}
# Where converters name the operation they cannot take (ANSI colours stripped first).
_OP_PATTERNS = (
    re.compile(r"(?P<op>[A-Za-z_][\w.]*) OP is not yet implemented"),  # onnx2tf
    re.compile(r"convert function for op '(?P<op>[^']+)' not implemented"),  # coremltools (torch frontend)
    re.compile(r"Could not find an implementation for (?P<op>[A-Za-z_]\w*)\(\d+\)"),  # onnxruntime
    re.compile(r"(?:[\w.]+:)?(?P<op>[A-Za-z_]\w*)\(-?\d+\) is not a registered function/op"),  # onnxruntime
    re.compile(r"No Op registered for (?P<op>[A-Za-z_]\w*)"),  # onnx checker / shape inference
    re.compile(r"[Uu]nsupported (?:ONNX )?op(?:eration|erator)?(?: type)?[:\s]+'?(?P<op>[A-Za-z_][\w.]*)"),
    re.compile(r"onnx_op_type: (?P<op>[A-Za-z_]\w*)"),  # onnx2tf's trace of the node it was converting
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SPECIFIC = re.compile(r"Dimensions must be equal|[Ii]ncompatible shapes|not a multiple|[Ss]hapes? .* (?:must|do not|don't)"
                       r"|Cannot (?:reshape|concatenate)|ConcatOp|must have the same rank")
_NODE = re.compile(r"name='(/[^']+)'|onnx_op_name: (\S+)")


class ConversionError(UserError):
    """A converter refused the model; the message names the operation when the
    converter did, the target, and what to do."""


def failed_operation(message: str) -> str | None:
    """The operation a converter's error message names, if it names one
    (the last match: onnx2tf logs every node it converted before the failure)."""
    text = _ANSI.sub("", message)
    for pattern in _OP_PATTERNS:
        hits = list(pattern.finditer(text))
        if hits:
            return hits[-1].group("op")
    return None


def conversion_error(exc: BaseException, backend: str, precision: str, graph: str | None) -> ConversionError:
    text = str(exc) or type(exc).__name__
    op = failed_operation(text)
    where = f"graph {graph!r} " if graph else ""
    lines = [line.strip() for line in _ANSI.sub("", text).splitlines() if line.strip()]
    # the converter's own failing line: a shape complaint beats a generic "Exception encountered"
    said = next((ln for ln in reversed(lines) if _SPECIFIC.search(ln)), None) or next(
        (ln for ln in reversed(lines) if re.search(r"error|not |unsupported|fail", ln, re.I)
         and "data-dependent shapes" not in ln), lines[-1] if lines else text)
    node = [a or b for a, b in _NODE.findall(text)]
    dyn = next((ln for ln in lines if ln.startswith("data-dependent shapes")), "")
    if len(said) > 400:
        said = said[:400] + "…"
    if node:
        said += f" [ONNX node {node[-1]}]"
    if dyn:
        said += f"\n  {dyn}"
    others = f"leave {backend} out (e.g. --quant ort:fp32)" if backend != "ort" else \
        "leave ort out (e.g. --quant tflite:fp32)"
    if op:
        head = (f"{CONVERTER.get(backend, backend)} cannot convert operation {op!r} ({where}to target "
                f"{backend} {precision}).")
        fix = (f"Fix: rewrite the layer that produces {op!r} with supported operations "
               f"(docs/exporting.md, 'export-friendly PyTorch'), or {others}.")
    else:
        head = f"converting {where}to target {backend} {precision} failed ({type(exc).__name__})."
        fix = f"Fix: see docs/exporting.md ('debugging an export'), or {others}."
    return ConversionError(f"{head} {fix}\n  converter said: {said}")


def dynamic_shape_note(onnx_path: Path | str) -> str:
    """Every input shape is fixed, so a node whose output shape inference
    cannot fix is data-dependent (a Slice or Gather by a computed index, a
    Range, a NonZero): converters that need static shapes fail near it."""
    try:
        import onnx

        model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    except Exception:  # noqa: BLE001 - a diagnostic must not hide the real error
        return ""
    known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    dynamic = []
    for node in model.graph.node:
        for out in node.output:
            v = known.get(out)
            dims = v.type.tensor_type.shape.dim if v is not None else None
            if dims is not None and any(not d.HasField("dim_value") for d in dims):
                dynamic.append(f"{node.op_type} {node.name or out}")
                break
    if not dynamic:
        return ""
    return (f"\n  data-dependent shapes: {len(dynamic)} node(s) have an output shape that shape inference "
            f"cannot fix, first: {', '.join(dynamic[:3])}")
