"""The checks a bundle's model must pass beyond per-artifact parity, run by
edge-build and written into the manifest (`manifest["proofs"]`):

- reset: after a stream has run, resetting every state to its declared
  initial value gives exactly a fresh stream's first output;
- offline: when the model gives an offline function (edge.declare(offline=)),
  the streamed outputs equal one whole-utterance run;
- stream: how long the encoder can stream. The artifact (the exported ONNX
  graph on ONNX Runtime) and the reference (the user's own PyTorch step with
  its counters running past their declared max, or the source ONNX) run side
  by side over the same long input (a speech segment repeated) for an hour
  (or the declared max_duration_s), each carrying its own states, and are
  compared chunk by chunk. The first chunk where the artifact raises or turns
  non-finite, the reference raises (a position table indexed past its end, an
  assert), or the two differ beyond STREAM_DIFF_BAR ends the safe duration;
  the client cuts an utterance before it (runtime_py.recognizer). A clamp on a
  counter cannot hide a limit (the reference is not clamped), and a model
  with long memory is not cut short for it (its reference remembers the same).
  By default the reference runs for the first REFERENCE_SECONDS of it (a
  fixed stretch, so a bundle's bytes do not depend on the machine's speed);
  with an explicit budget (edge-build --proof-budget) the whole duration
  asked is compared as far as the budget pays. Either way, where the
  reference is too slow within the budget, the longest stretch that fits is
  checked, and the record says how much was checked and why not more.
"""

from __future__ import annotations

import time

import numpy as np

from runtime_py.signature import Signature
from runtime_py.stateloop import StateLoop

STREAM_CHECK_SECONDS = 3600.0
STREAM_PERIOD_S = 12.0  # the repeated input: 12 s of the parity speech
# Per chunk, the largest output difference between the artifact and the
# reference, scaled by the reference's magnitude (|a - r| / max(1, |r|), as
# the parity check scales states). fp32 on both sides: only kernel choice and
# summation order differ, which a recurrent state carries but does not grow
# (measured over an hour, see docs/bring-your-own-model.md). A position the
# graph computes that the reference does not (a clamped counter past the
# table's end) is O(1e-2..1). 1e-3 is ten times the per-artifact fp32 parity
# bar (1e-4), for the hour of carried state.
STREAM_DIFF_BAR = 1e-3
# Compute the stream proof may spend (seconds, artifact and reference
# together). The stretch it can afford is rounded down to whole minutes, so a
# bundle built twice on one quiet machine records the same stretch; where the
# pace falls after an estimate, the proof stops when the budget is spent.
STREAM_BUDGET_S = 300.0
# Without an explicit budget, the stretch compared with the reference: ten minutes of audio (the shipped
# conformer: 6 s of compute here, PyTorch on one thread). A fixed stretch keeps bundles byte-identical across machines.
REFERENCE_SECONDS = 600.0
_COST_PROBE_CHUNKS = 20  # chunks timed before the stretch is chosen, and re-timed every so many after
OFFLINE_TOLERANCE = 1e-4  # fp32, scaled by magnitude: streaming and offline differ by summation order only


def _out(loop: StateLoop, chunk: np.ndarray) -> dict:
    return loop.step({loop.graph.inputs[0].name: chunk})


def reset_check(signature: Signature, run, chunks: list[np.ndarray]) -> dict:
    enc = signature.graph("encoder")
    fresh = _out(StateLoop(enc, run), chunks[0])
    loop = StateLoop(enc, run)
    for c in chunks[: min(len(chunks), 20)]:
        _out(loop, c)
    loop.reset("session")
    again = _out(loop, chunks[0])
    diff = max(float(np.max(np.abs(np.asarray(fresh[k], np.float64) - np.asarray(again[k], np.float64))))
               if np.asarray(fresh[k]).size else 0.0 for k in fresh)
    return {"max_abs_diff": diff, "passed": diff <= 1e-6, "after_chunks": min(len(chunks), 20)}


def offline_check(model, signature: Signature, run, features: np.ndarray, chunks: list[np.ndarray]) -> dict:
    offline = getattr(model, "offline", None)
    if offline is None:
        return {"checked": False, "why": "no offline function was declared (edge.declare(offline=...))"}
    enc = signature.graph("encoder")
    loop = StateLoop(enc, run)
    name = enc.outputs[0].name
    streamed = np.concatenate([np.asarray(_out(loop, c)[name]) for c in chunks], axis=1)
    whole = np.asarray(offline(features))
    n = min(streamed.shape[1], whole.shape[1])
    a, b = whole[:, :n].astype(np.float64), streamed[:, :n].astype(np.float64)
    diff = float(np.max(np.abs(a - b))) if n else float("inf")
    # scaled like the states (|a - b| / max(1, |a|)): fp32 resolution grows with the magnitude
    scaled = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a)))) if n else float("inf")
    return {"checked": True, "frames": n, "max_abs_diff": diff, "max_scaled_diff": scaled,
            "tolerance": OFFLINE_TOLERANCE, "passed": scaled <= OFFLINE_TOLERANCE}


def period_chunks(signature: Signature) -> list[np.ndarray]:
    """One period of the repeated input: STREAM_PERIOD_S of the parity speech."""
    from .golden import parity_stream

    fe = signature.frontend
    chunk_s = signature.shift_frames * fe.frame_shift / fe.sample_rate
    return parity_stream(signature, max(3, int(round(STREAM_PERIOD_S / chunk_s))), seed=1)


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _scaled_diff(a: dict, r: dict) -> float:
    worst = 0.0
    for k, ref in r.items():
        x, y = np.asarray(a[k], np.float64), np.asarray(ref, np.float64)
        if y.size:
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(y)))))
    return worst


def affordable_seconds(requested: float, chunk_s: float, cost_per_chunk: float, budget_s: float) -> float:
    """The stretch a budget pays for: all of `requested` when it fits, else
    whole minutes (whole 10 s below a minute; at least one chunk)."""
    fits = budget_s / max(cost_per_chunk, 1e-9) * chunk_s
    if fits >= requested:
        return requested
    step = 60.0 if fits >= 60.0 else 10.0
    return max(chunk_s, float(np.floor(fits / step) * step))


def stream_check(signature: Signature, run, speech_chunks: list[np.ndarray], seconds: float, reference=None,
                 reference_name: str = "pytorch", budget_s: float | None = None) -> dict:
    """Roll `run` (the artifact on ONNX Runtime) and `reference` over
    `seconds` of a periodic input and compare them chunk by chunk (see the
    module doc). Without a reference only raising and non-finite outputs are
    caught, and the record says the outputs were not compared."""
    enc = signature.graph("encoder")
    fe = signature.frontend
    chunk_s = signature.shift_frames * fe.frame_shift / fe.sample_rate
    period = max(1, min(len(speech_chunks), int(round(STREAM_PERIOD_S / chunk_s))))
    budget = STREAM_BUDGET_S if budget_s is None else budget_s
    total = asked = max(1, int(np.ceil(seconds / chunk_s)))
    default_stretch = reference is not None and budget_s is None and seconds > REFERENCE_SECONDS
    if default_stretch:
        total = asked = max(1, int(np.ceil(REFERENCE_SECONDS / chunk_s)))
    loop = StateLoop(enc, run)
    ref = StateLoop(enc, reference) if reference is not None else None
    worst, t0 = 0.0, time.perf_counter()
    failure, limited = None, False
    i = 0
    while i < total:
        c = speech_chunks[i % period]
        try:
            out = _out(loop, c)
        except Exception as e:  # noqa: BLE001 - the runtime's own error types
            failure = (i, f"the graph raised {_error(e)}")
            break
        if not all(np.isfinite(np.asarray(v, np.float64)).all() for v in out.values()):
            failure = (i, "an output of the graph turned non-finite")
            break
        if ref is not None:
            try:
                want = _out(ref, c)
            except Exception as e:  # noqa: BLE001 - a user's model raises its own types
                failure = (i, f"the reference ({reference_name}) raised {_error(e)}: beyond here the graph "
                              "computes what the model itself never computes")
                break
            diff = _scaled_diff(out, want)
            worst = max(worst, diff)
            if diff > STREAM_DIFF_BAR:
                failure = (i, f"the graph's outputs differ from the reference ({reference_name}) by {diff:.2e} "
                              f"(scaled, bar {STREAM_DIFF_BAR:g})")
                break
        i += 1
        if i < total and i >= _COST_PROBE_CHUNKS:
            spent = time.perf_counter() - t0
            if spent > budget:  # the pace fell after the last estimate: stop here, the budget is a cap
                total, limited = i, True
            elif i % _COST_PROBE_CHUNKS == 0:
                # what the whole stretch costs at the pace so far (a shared machine's pace changes): the
                # budget pays for whole minutes of it, re-chosen as the pace settles
                afford = affordable_seconds(asked * chunk_s, chunk_s, spent / i, budget)
                total, limited = max(i, int(round(afford / chunk_s))), afford < asked * chunk_s
    rec = {"seconds_requested": round(seconds, 1), "seconds_checked": round(i * chunk_s, 1),
           "chunks": i, "input_period_chunks": period, "backend": "onnxruntime fp32",
           "reference": reference_name if ref is not None else None,
           "max_scaled_diff": float(f"{worst:.3g}"), "diff_bar": STREAM_DIFF_BAR,
           "budget_s": budget, "limited_by_budget": limited,
           "limited_by_default_stretch": bool(default_stretch and not failure and not limited)}
    if ref is None:
        rec["note"] = "no independent reference: only raising and non-finite outputs were checked"
    stream_check.last_run_seconds = round(time.perf_counter() - t0, 1)  # printed, not recorded: bundles are reproducible
    if failure:
        j, why = failure
        rec.update(safe_seconds=round(j * chunk_s, 1), failed_at_chunk=j, why=why, passed=False)
    else:
        rec.update(safe_seconds=None, passed=True)
    return rec


stream_check.last_run_seconds = 0.0


def stream_reference_of(model, graph) -> tuple:
    """(run, name): the model's own step, its counters unclamped where it declares any."""
    from edge.export import torch_runner

    unclamped = bool(getattr(model, "counter_limits", {}).get(graph.name))
    return torch_runner(model, graph, unclamped=True), "pytorch, counters unclamped" if unclamped else "pytorch"


def run_proofs(signature: Signature, encoder_onnx, reference_run, model, speech: list[np.ndarray],
               seconds: float, stream_reference=None, reference_name: str = "pytorch",
               budget_s: float | None = None) -> dict:
    """Reset and stream on ONNX Runtime over the exported encoder; offline
    against the reference (PyTorch) when the model declares an offline
    function. The stream proof compares with `stream_reference` (default: the
    model's own step with counters unclamped; without a model and a
    stream_reference only raising and non-finite outputs are checked, since
    `reference_run` of an ONNX-in model is the exported graph itself)."""
    from runtime_py.backends import open_runner

    run = open_runner(encoder_onnx, signature.graph("encoder"), "onnx", 1)
    if stream_reference is None and model is not None:
        stream_reference, reference_name = stream_reference_of(model, signature.graph("encoder"))
    c, s = signature.chunk_frames, signature.shift_frames
    feats = np.concatenate([speech[0][0]] + [ch[0][c - s:] for ch in speech[1:]])
    return {"reset": reset_check(signature, run, speech),
            "offline": offline_check(model, signature, reference_run, feats, speech),
            "stream": stream_check(signature, run, period_chunks(signature), seconds,
                                   reference=stream_reference, reference_name=reference_name, budget_s=budget_s)}


def _secs(x: float) -> str:
    return f"{x:.0f} s" if x >= 10 else f"{x:.1f} s"


def stream_text(st: dict) -> str:
    """One sentence on the stream proof, for the build's output and the card."""
    against = (f"against the reference ({st['reference']})" if st.get("reference")
               else "on the graph alone (no independent reference)")
    if not st["passed"]:
        return f"safe for {_secs(st['safe_seconds'])}: {st['why']} at chunk {st['failed_at_chunk']}"
    text = (f"streams {_secs(st['seconds_checked'])} {against}, max scaled difference "
            f"{st['max_scaled_diff']:.1e} (bar {st['diff_bar']:g})")
    if st.get("limited_by_budget"):
        text += (f"; checked {_secs(st['seconds_checked'])} of the {_secs(st['seconds_requested'])} asked, not beyond "
                 f"(the proof's compute budget, {st['budget_s']:.0f} s)")
    elif st.get("limited_by_default_stretch"):
        text += (f"; checked {_secs(st['seconds_checked'])} of the {_secs(st['seconds_requested'])} asked, not beyond "
                 f"(the default stretch; edge-build --proof-budget SECONDS compares the whole duration as far as "
                 f"that budget pays)")
    return text


def summary(proofs: dict) -> str:
    off = proofs["offline"]
    return (f"reset {'ok' if proofs['reset']['passed'] else 'FAILED'}; offline "
            f"{('ok' if off['passed'] else 'FAILED') if off['checked'] else 'not declared'}; "
            f"{stream_text(proofs['stream'])} [{stream_check.last_run_seconds:.0f}s]")


def check_model(model, chunks: int = 200, seconds: float = STREAM_CHECK_SECONDS) -> dict:
    """Every proof for a model (a built-in family or edge.declare's), without a
    bundle: export to ONNX, one-step and rollout parity against PyTorch over
    `chunks` chunks of speech with the states carried, reset, streaming ==
    offline when declared, and how long it can stream.

        from targets.proofs import check_model
        report = check_model(edge.declare(...)); print(report["stream"]["safe_seconds"])
    """
    import tempfile
    from pathlib import Path

    from edge.export import check_onnx_parity, export_onnx, torch_runner

    from .golden import parity_stream
    from .parity import graph_chunks

    sig = model.signature()
    speech = parity_stream(sig, chunks)
    with tempfile.TemporaryDirectory(prefix="edge-check-") as tmp:
        paths = export_onnx(model, Path(tmp))
        parity = check_onnx_parity(model, paths, chunks,
                                   inputs={g.name: graph_chunks(sig, g, speech, chunks) for g in sig.graphs})
        enc = sig.graph("encoder")
        out = run_proofs(sig, paths["encoder"], torch_runner(model, enc), model, speech, seconds)
    out["parity"] = {g: {"one_step_max_abs_diff": r["first_chunk_diff"], **r} for g, r in parity.items()}
    out["passed"] = (all(r["passed"] for r in parity.values()) and out["reset"]["passed"]
                     and out["offline"].get("passed", True))
    return out
