"""The checks a bundle's model must pass beyond per-artifact parity, run by
edge-build and written into the manifest (`manifest["proofs"]`):

- reset: after a stream has run, resetting every state to its declared
  initial value gives exactly a fresh stream's first output;
- offline: when the model gives an offline function (edge.declare(offline=)),
  the streamed outputs equal one whole-utterance run;
- stream: how long the encoder can stream. The ONNX graph runs on ONNX
  Runtime over a periodic input (a speech segment repeated) for an hour of
  audio (or the declared max_duration_s). A model without absolute positions
  settles into the same period after its context fills, so every chunk
  from the second period on is compared with the same chunk one period
  earlier: the first chunk whose output is
  non-finite, raises, or drifts beyond STREAM_DRIFT_BAR (relative) ends the
  safe duration. The client cuts an utterance before it (runtime_py.recognizer).
"""

from __future__ import annotations

import time

import numpy as np

from runtime_py.signature import Signature
from runtime_py.stateloop import StateLoop

STREAM_CHECK_SECONDS = 3600.0
STREAM_PERIOD_S = 12.0  # one period of the repeated input: longer than any shipped model's context
# Relative drift of one chunk's outputs from the same chunk one period
# earlier. Measured over an hour on the shipped models (edge-build --target
# rpi --family F): conformer 0 (finite context: it repeats exactly),
# transducer 6.5e-4 and LSTM 1.8e-3 (a recurrent state never quite forgets
# the start, so periods differ slightly); the Zipformer2 1.1e-7. A position
# table running out or a state blowing up is O(1) or raises. 5e-2 leaves the
# recurrent models a 25x margin and still catches those.
STREAM_DRIFT_BAR = 5e-2
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


def stream_check(signature: Signature, run, speech_chunks: list[np.ndarray], seconds: float) -> dict:
    """Roll `run` (ONNX Runtime) over `seconds` of a periodic input."""
    enc = signature.graph("encoder")
    fe = signature.frontend
    chunk_s = signature.shift_frames * fe.frame_shift / fe.sample_rate
    period = max(1, min(len(speech_chunks), int(round(STREAM_PERIOD_S / chunk_s))))
    total = max(3 * period, int(np.ceil(seconds / chunk_s)))
    loop = StateLoop(enc, run)
    ref: list = [None] * period  # the previous period's outputs, chunk by chunk
    worst, t0 = 0.0, time.perf_counter()
    failure = None
    for i in range(total):
        c = speech_chunks[i % period]
        try:
            out = _out(loop, c)
        except Exception as e:  # noqa: BLE001 - the runtime's own error types
            failure = (i, f"the graph raised {type(e).__name__}: {' '.join(str(e).split())[:200]}")
            break
        values = [np.asarray(v, np.float64) for v in out.values()]
        if not all(np.isfinite(v).all() for v in values):
            failure = (i, "an output turned non-finite")
            break
        r, ref[i % period] = ref[i % period], values
        if i >= 2 * period:  # the first period warms the context up
            num = np.sqrt(sum(float(np.sum((v - w) ** 2)) for v, w in zip(values, r)))
            den = np.sqrt(sum(float(np.sum(w ** 2)) for w in r))
            drift = num / den if den > 0 else num
            worst = max(worst, drift)
            if drift > STREAM_DRIFT_BAR:
                failure = (i, f"outputs drifted {drift:.2e} (relative) from the same input one period earlier")
                break
    rec = {"seconds_checked": round(total * chunk_s, 1), "chunks": total, "period_chunks": period,
           "max_drift": float(f"{worst:.3g}"), "drift_bar": STREAM_DRIFT_BAR, "backend": "onnxruntime fp32"}
    stream_check.last_run_seconds = round(time.perf_counter() - t0, 1)  # printed, not recorded: bundles are reproducible
    if failure:
        i, why = failure
        rec.update(safe_seconds=round(i * chunk_s, 1), failed_at_chunk=i, why=why, passed=False)
    else:
        rec.update(safe_seconds=None, passed=True)
    return rec


def run_proofs(signature: Signature, encoder_onnx, reference_run, model, speech: list[np.ndarray],
               seconds: float) -> dict:
    """Reset and stream on ONNX Runtime over the exported encoder; offline
    against the reference (PyTorch) when the model declares an offline function."""
    from runtime_py.backends import open_runner

    run = open_runner(encoder_onnx, signature.graph("encoder"), "onnx", 1)
    c, s = signature.chunk_frames, signature.shift_frames
    feats = np.concatenate([speech[0][0]] + [ch[0][c - s:] for ch in speech[1:]])
    return {"reset": reset_check(signature, run, speech),
            "offline": offline_check(model, signature, reference_run, feats, speech),
            "stream": stream_check(signature, run, period_chunks(signature), seconds)}


def summary(proofs: dict) -> str:
    st, off = proofs["stream"], proofs["offline"]
    limit = (f"safe for {st['safe_seconds']:.0f} s: {st['why']} at chunk {st['failed_at_chunk']}"
             if not st["passed"] else f"streams {st['seconds_checked']:.0f} s with drift {st['max_drift']:.1e}")
    return (f"reset {'ok' if proofs['reset']['passed'] else 'FAILED'}; offline "
            f"{('ok' if off['passed'] else 'FAILED') if off['checked'] else 'not declared'}; {limit} "
            f"[{stream_check.last_run_seconds:.0f}s]")


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
