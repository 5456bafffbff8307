"""Our own graph pass on the ONNX graph before it becomes an `.ort` file.

ONNX Runtime's offline optimiser (targets/ort.py, "extended" level) fuses
what it knows: MatMul+Add into Gemm, LayerNorm, Swish into QuickGelu, Conv
with its activation. What icefall's Zipformer traces for its activations it
does not know. Its Swoosh-L/R (`logaddexp(0, x - off) - k * x - c`) is
exported as 12 element-wise nodes, two of them reading a constant of zeros
the size of the activation, which ORT's constant folding writes into the
file as a full tensor (129 of them, 3.4 MB, in the 23.6 M Zipformer's .ort).

Each rewrite is a function `(model) -> number of matches rewritten` that
edits the graph in place, chosen by pattern only (never by node or model
name), and computes the same values up to float rounding. `REWRITES` lists
them in the order they run; `DEFAULT[precision]` are the ones the `.ort` route
applies (targets/ort.py); the others stay for `python -m targets.bench.rewrites`,
which measures every one alone (paired timing, node counts, parity) and is
how a rewrite earns a place in `DEFAULT` (docs/benchmarks.md has the figures).

- `swoosh_fewer_nodes`: the 12-node Swoosh -> 9 nodes without the zero
  constants: `y = x - off`, `Log(Exp(-|y| - C) + exp(-C))` for the soft part
  (the constant `C = k * off + c` moved inside the log) plus
  `(1 - k) * LeakyRelu(y, -k / (1 - k))` for `max(y, 0) - k * x`;
- `zero_operand_ops`: `Max(zeros, y)` -> `Relu(y)`, `Sub(zeros, y)` ->
  `Neg(y)` and `Abs(Neg(y))` -> `Abs(y)`, where the zeros are a constant
  that broadcasts to y's shape (what remains of a Swoosh the first rewrite
  did not match, and any other traced `zeros_like`);
- `linear_chains_2d` (targets/ort_chains.py): feed-forward chains on 3-D
  activations computed in 2-D, so ORT's Gemm fusion needs no Reshape pair
  per Linear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .onnx_graph import Graph, drop_unused_initializers
from .ort_chains import linear_chains_2d
from .ort_graph import Uses, drop_dead_nodes, fill_shapes, other, scalar, splice, zero_partners, zeros_for
from .parity import rollout_check  # shared with the TFLite route's rewrite check (targets/tflite/prepare.py)

_MAX_CONSTANT_SHIFT = 30.0  # exp(-C) must stay a normal float32 for the moved constant


# -- Swoosh-L/R: 12 nodes -> 9 ------------------------------------------------------------------

def _match_swoosh(g: Graph, uses: Uses, last):
    """icefall's exported Swoosh ending in `last` (Sub(Sub(Add(Max(0, y), Log(1 + Exp(-|0 - y|))),
    Mul(x, k)), c) with y = x - off) as (x, off, k, c, nodes), or None."""
    p = g.producer.get
    if last.op_type != "Sub" or scalar(g, last.input[1]) is None:
        return None
    c, s2 = scalar(g, last.input[1]), p(last.input[0])
    if s2 is None or s2.op_type != "Sub":
        return None
    s1, kx = p(s2.input[0]), p(s2.input[1])
    if s1 is None or kx is None or s1.op_type != "Add" or kx.op_type != "Mul":
        return None
    k_at = [i for i in (0, 1) if scalar(g, kx.input[i]) is not None]
    if len(k_at) != 1:
        return None
    k, x = scalar(g, kx.input[k_at[0]]), kx.input[1 - k_at[0]]
    a, b = p(s1.input[0]), p(s1.input[1])
    mx, lg = (a, b) if a is not None and a.op_type == "Max" else (b, a)
    if mx is None or lg is None or mx.op_type != "Max" or lg.op_type != "Log":
        return None
    ys = [i for i in mx.input if not zeros_for(g, i, other(mx, i) or "")]
    if len(ys) != 1 or len(mx.input) != 2:
        return None
    ysub = p(ys[0])
    if ysub is None or ysub.op_type != "Sub" or ysub.input[0] != x or scalar(g, ysub.input[1]) is None:
        return None
    off, y = scalar(g, ysub.input[1]), ys[0]
    chain = _soft_part(g, lg, y)
    if chain is None:
        return None
    nodes = [ysub, mx, s1, kx, s2, last] + chain
    inner = [(y, (mx, chain[-1])), (mx.output[0], (s1,)), (lg.output[0], (s1,)), (s1.output[0], (s2,)),
             (kx.output[0], (s2,)), (s2.output[0], (last,))] + \
        [(chain[i].output[0], (chain[i - 1],)) for i in range(1, len(chain))]
    if not all(uses.only(name, *readers) for name, readers in inner):
        return None
    return x, off, k, c, nodes


def _soft_part(g: Graph, lg, y: str):
    """[Log, Add(1, .), Exp, Neg, Abs(, Sub(0, y))] computing log(1 + exp(-|y|)), or None."""
    p = g.producer.get
    add = p(lg.input[0])
    if add is None or add.op_type != "Add":
        return None
    ones = [i for i in add.input if scalar(g, i) == 1.0]
    if len(ones) != 1:
        return None
    exp = p(other(add, ones[0]))
    neg = p(exp.input[0]) if exp is not None and exp.op_type == "Exp" else None
    ab = p(neg.input[0]) if neg is not None and neg.op_type == "Neg" else None
    if ab is None or ab.op_type != "Abs":
        return None
    chain = [lg, add, exp, neg, ab]
    if ab.input[0] == y:
        return chain
    d = p(ab.input[0])
    if d is not None and d.op_type == "Sub" and d.input[1] == y and zeros_for(g, d.input[0], y):
        return chain + [d]
    return None


def swoosh_fewer_nodes(model: onnx.ModelProto) -> int:
    g = Graph(model)
    uses = Uses(g)
    fill_shapes(g, zero_partners(g, ("Max",)))
    edits = []
    for last in [n for n in g.g.node if n.op_type == "Sub"]:
        m = _match_swoosh(g, uses, last)
        if m is None:
            continue
        x, off, k, c, old = m
        shift = k * off + c  # max(y, 0) - k * x - c == (1 - k) * LeakyRelu(y, -k / (1 - k)) - shift
        if k >= 1.0 or abs(shift) > _MAX_CONSTANT_SHIFT:
            continue
        f32 = np.float32
        y = g.node("Sub", [x, g.const(np.array(off, f32), "off")], "swoosh_y")
        ab = g.node("Abs", [y.output[0]], "swoosh_abs")
        neg = g.node("Sub", [g.const(np.array(-shift, f32), "neg_shift"), ab.output[0]], "swoosh_neg")
        ex = g.node("Exp", [neg.output[0]], "swoosh_exp")
        add = g.node("Add", [ex.output[0], g.const(np.array(np.exp(-shift), f32), "exp_shift")], "swoosh_add")
        lg = g.node("Log", [add.output[0]], "swoosh_log")
        lr = g.node("LeakyRelu", [y.output[0]], "swoosh_linear", alpha=float(-k / (1.0 - k)))
        sc = g.node("Mul", [lr.output[0], g.const(np.array(1.0 - k, f32), "slope")], "swoosh_scale")
        out = g.node("Add", [lg.output[0], sc.output[0]], "swoosh", output=last.output[0])
        edits.append((old, [y, ab, neg, ex, add, lg, lr, sc, out]))
    splice(g, edits)
    return len(edits)


# -- binary ops with a zero constant -------------------------------------------------------------

def zero_operand_ops(model: onnx.ModelProto) -> int:
    g = Graph(model)
    fill_shapes(g, zero_partners(g, ("Max", "Sub")))
    edits = []
    for node in g.g.node:
        new = None
        if node.op_type == "Max" and len(node.input) == 2:
            y = [i for i in node.input if not zeros_for(g, i, other(node, i))]
            if len(y) == 1:
                new = helper.make_node("Relu", y, list(node.output), name=g.name("relu"))
        elif node.op_type == "Sub" and zeros_for(g, node.input[0], node.input[1]):
            new = helper.make_node("Neg", [node.input[1]], list(node.output), name=g.name("neg"))
        if new is not None:
            edits.append(([node], [new]))
    splice(g, edits)
    uses, producer = Uses(g), {o: n for n in g.g.node for o in n.output}  # after the splice above
    for ab in [n for n in g.g.node if n.op_type == "Abs"]:
        neg = producer.get(ab.input[0])
        if neg is not None and neg.op_type == "Neg" and uses.only(neg.output[0], ab):
            ab.input[0] = neg.input[0]  # the Neg is then read by nothing and dropped
            edits.append(([neg], []))
    drop_dead_nodes(g.g)
    return len(edits)


REWRITES = (("swoosh_fewer_nodes", swoosh_fewer_nodes),
            ("zero_operand_ops", zero_operand_ops),
            ("linear_chains_2d", linear_chains_2d))
# Per precision, the rewrites the .ort route runs: each paid in the paired measurement (1 thread, per chunk;
# docs/benchmarks.md "ORT graph rewrites"). linear_chains_2d paid in fp32 on all three models measured (1.04-1.10x)
# and in int8 on the Zipformer (1.07x); on the two conformers' int8 files (no Gemm Reshapes to save: the quantised
# MatMuls are not Gemms) it was within noise (0.99x, 1.01x), so it runs there too rather than per model.
DEFAULT: dict[str, tuple[str, ...]] = {
    "fp32": ("swoosh_fewer_nodes", "zero_operand_ops", "linear_chains_2d"),
    "int8": ("swoosh_fewer_nodes", "zero_operand_ops", "linear_chains_2d"),
}


NAMES = tuple(n for n, _ in REWRITES)


def parse_names(spec) -> tuple[str, ...] | None:
    """edge-build --ort-rewrites: "default" (or None) -> None, each precision's DEFAULT; "none" (or an
    empty sequence) -> (); else a comma list (or a sequence) of REWRITES' names -> those, in the order they
    run. An unknown name is a UserError listing the known ones."""
    from edge.errors import UserError

    if spec is None:
        return None
    if isinstance(spec, str):
        word = spec.strip().lower()
        if word in ("default", "none"):
            return None if word == "default" else ()
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = [str(s) for s in spec]
    unknown = [s for s in items if s not in NAMES]
    if unknown or (isinstance(spec, str) and not items):
        what = f"unknown rewrite {', '.join(map(repr, unknown))}" if unknown else "names no rewrite"
        raise UserError(f"--ort-rewrites {spec if isinstance(spec, str) else ','.join(items)!r}: {what}; use "
                        f"default, none, or a comma list of {', '.join(NAMES)}")
    return tuple(n for n in NAMES if n in items)


def rewrite(model: onnx.ModelProto, names=()) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Apply the rewrites named (in REWRITES' order); returns (model, {rewrite: matches})."""
    unknown = set(names) - {n for n, _ in REWRITES}
    if unknown:
        raise ValueError(f"unknown ORT rewrites {sorted(unknown)}; known: {[n for n, _ in REWRITES]}")
    counts = {name: fn(model) for name, fn in REWRITES if name in names}
    if any(counts.values()):
        drop_unused_initializers(model)
        onnx.checker.check_model(model)
    return model, counts


# -- the .ort route's use: rewrite, then prove it against the unrewritten graph -----------------------

CHECK_CHUNKS = 100  # a long rollout with the states carried: a rewrite inside a cache path shows over time
# The rewrites compute the same function with other float rounding (the Swoosh's constant moved inside the
# log, a LeakyRelu for max(y, 0) - k * x): ~1e-6 on the 23.6 M Zipformer's outputs; 1e-4 is the bar of the issue.
CHECK_TOLERANCE = 1e-4


def apply_checked(onnx_path: Path, out_path: Path, graph, signature, names=()) -> dict | None:
    """Write the rewritten graph to `out_path` and return the route's record
    ({"rewrites": counts, "rewrite_check": ...}); None (nothing written) when
    no rewrite matched, so a model the pass does not touch keeps its bytes.
    A rewritten graph outside CHECK_TOLERANCE is never shipped: the record
    then says `rewrites_refused` and `out_path` is removed, and the caller
    converts the exported graph as it is (an unrewritten .ort is a correct one)."""
    if not names:
        return None
    model, counts = rewrite(onnx.load(str(onnx_path)), names)
    if not any(counts.values()):
        return None
    onnx.save(model, str(out_path))
    check = rollout_check(Path(onnx_path), Path(out_path), graph, signature, CHECK_CHUNKS)
    passed = check["max_abs_diff"] <= CHECK_TOLERANCE and check["state_max_scaled_diff"] <= CHECK_TOLERANCE
    check = {**check, "tolerance": CHECK_TOLERANCE, "against": "the exported ONNX graph in ONNX Runtime",
             "passed": bool(passed)}
    if not passed:
        Path(out_path).unlink()
        return {"rewrites_refused": counts, "rewrite_check": check}
    return {"rewrites": counts, "rewrite_check": check}


def apply_cached(onnx_path: Path, graph, signature, names, folder: Path) -> tuple[Path | None, dict | None]:
    """apply_checked once per (graph file, rewrites) in `folder` (the build's scratch folder): the fp32 and
    the int8 file of a graph start from the same rewritten graph, which is rewritten and checked once.
    Returns (the rewritten graph or None, the route's record or None)."""
    import hashlib
    import json

    if not names:
        return None, None
    key = hashlib.sha256(Path(onnx_path).read_bytes() + "|".join(names).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    out, rec = folder / f"{graph.name}-{key}.onnx", folder / f"{graph.name}-{key}.json"
    if not rec.is_file():
        rec.write_text(json.dumps(apply_checked(Path(onnx_path), out, graph, signature, names)))
    record = json.loads(rec.read_text())
    return (out if record is not None and "rewrites" in record else None), record
