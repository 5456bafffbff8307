"""The shipped ONNX file itself, run the way its authors run it.

The rewritten graph (constants folded, branches inlined, input in our
layout) is checked against the untouched source file: the parity reference
of every artifact is the source run by ONNX Runtime with the spec's
constants fed, the chunk put back into the file's layout, counters advanced
as the spec says and state outputs renamed to our `<state>_next`.

`io` (kept in the signature's `extra["onnx_source"]`) is what that takes:
    {"input": "input", "layout": "BT", "shape": [1, 576],
     "consts": {"sr": {"value": 16000, "dtype": "int64", "shape": []}},
     "counters": {"offset": {"step": 16, "max": 5000}},
     "states": {"state": "stateN"}}

`probe` runs in a child process (targets.isolated): the first session on a
foreign graph is where ONNX Runtime has crashed.
"""

from __future__ import annotations

import numpy as np

from .onnx_layout import to_source

PROBE_SEED = 0
PROBE_CHUNKS = 3  # states carried: a wrong state wiring shows from the second chunk
# The rewrite only folds values the graph would compute anyway (same ops, same
# fp32 inputs), so the rewritten graph should agree with the source to rounding.
PROBE_TOLERANCE = 1e-5


def source_feeds(io: dict, feeds: dict) -> dict:
    """Our feeds (contract names) -> the source file's feeds."""
    out = {k: v for k, v in feeds.items() if k != io["input"]}
    out[io["input"]] = to_source(np.asarray(feeds[io["input"]]), io["layout"], tuple(io["shape"]))
    for name, c in io["consts"].items():
        out[name] = np.asarray(c["value"], dtype=c["dtype"]).reshape(c["shape"])
    return out


def source_outputs(io: dict, results: dict, feeds: dict, next_names: bool, unclamped: bool = False) -> dict:
    """The source's outputs plus each counter's next value (saturated at the
    spec's max, as the graph does, unless `unclamped`: the stream proof's
    reference counts on, so the file sees the positions a real stream reaches);
    state outputs under our `<state>_next` names when `next_names`."""
    out = dict(results)
    for name, c in io["counters"].items():
        value = np.asarray(feeds[name])
        nxt = value + c["step"] if unclamped else np.minimum(value + c["step"], c["max"])
        out[c["output"]] = nxt.astype(value.dtype)
    if next_names:
        pairs = {**io["states"], **{name: c["output"] for name, c in io["counters"].items()}}
        for i, o in pairs.items():
            out[f"{i}_next"] = out.pop(o)
    return out


def runner(src, io: dict, threads: int = 1, unclamped: bool = False):
    """`run(feeds) -> dict` in our names over the untouched source file
    (counters unclamped for the stream proof: source_outputs)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]

    def run(feeds: dict) -> dict:
        results = dict(zip(names, sess.run(names, source_feeds(io, feeds))))
        return source_outputs(io, results, feeds, next_names=True, unclamped=unclamped)

    return run


def probe(src: str, rewritten: str, io: dict, in_shapes: dict, dtypes: dict, initial: dict) -> dict:
    """Run the rewritten graph and the source on the same chunks, states
    carried; return the rewritten graph's output shapes (by the file's output
    names) and the largest difference between the two (called in a child)."""
    import onnxruntime as ort

    rng = np.random.default_rng(PROBE_SEED)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    new = ort.InferenceSession(rewritten, so, providers=["CPUExecutionProvider"])
    old = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    new_names, old_names = [o.name for o in new.get_outputs()], [o.name for o in old.get_outputs()]
    states = {n: np.full(in_shapes[n], initial.get(n, 0.0), dtype=dtypes[n]) for n in in_shapes if n != io["input"]}
    diff, shapes = 0.0, {}
    for _ in range(PROBE_CHUNKS):
        x = (0.1 * rng.standard_normal(in_shapes[io["input"]])).astype(dtypes[io["input"]])
        feeds = {io["input"]: x, **states}
        got = dict(zip(new_names, new.run(new_names, feeds)))
        want = source_outputs(io, dict(zip(old_names, old.run(old_names, source_feeds(io, feeds)))), feeds,
                              next_names=False)
        shapes = {k: list(v.shape) for k, v in got.items()}
        for k, v in got.items():
            if k in want:
                if np.shape(want[k]) != v.shape:
                    raise ValueError(f"output {k!r}: the rewritten graph gives {list(v.shape)}, the source "
                                     f"{list(np.shape(want[k]))}")
                diff = max(diff, float(np.max(np.abs(v.astype(np.float64) - want[k]), initial=0.0)))
        nxt = {i: got[o] for i, o in io["states"].items()}
        nxt.update({c: got[spec["output"]] for c, spec in io["counters"].items()})
        states = {n: nxt.get(n, v) for n, v in states.items()}
    return {"shapes": shapes, "max_abs_diff": diff}
