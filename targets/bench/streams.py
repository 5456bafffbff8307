"""What serving N streams from one loaded model costs per stream, against one
stream alone (`edge-bench --streams N`).

The model is exported once with a dynamic batch axis (edge.export's
`dynamic_batch=True`, ONNX Runtime) and its runners are shared by two views:
`Model(batch=True)`, where `decode_streams` runs one chunk of all N streams as
one batch, and `Model(batch=False)`, where a single stream decodes alone.
Both decode the same audio (the bench workload) through runtime_py.stream, so
the figure is per stream-chunk: encoder step, state loop and greedy decoding.
Rounds are interleaved (both see the same machine load) and the ratio is the
median of per-round ratios.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np


def _pass(model, audio: np.ndarray, n: int) -> tuple[float, int, list[str]]:
    """Seconds in decode_streams, stream-chunks decoded, token ids: n streams of `audio`."""
    rate = model.signature.frontend.sample_rate
    streams = [model.create_stream() for _ in range(n)]
    for s in streams:
        s.accept_waveform(rate, audio)
        s.input_finished()
    t0 = time.perf_counter()
    while model.decode_streams(streams):
        pass
    return time.perf_counter() - t0, sum(s.chunks for s in streams), [list(s.tokens) for s in streams]


def batching_cost(model, audio: np.ndarray, n: int = 4, rounds: int = 5, threads: int = 1) -> dict:
    """{"streams", "batched_ms", "single_ms", "ratio", ...} per stream-chunk, or
    {"streams", "error"} when the model cannot be exported with a batch axis."""
    from edge.export import export_onnx, read_signature
    from runtime_py.backends import open_runner
    from runtime_py.stream import Model

    if n < 2:
        raise ValueError(f"--streams must be at least 2, got {n}")
    with tempfile.TemporaryDirectory(prefix="edge-bench-streams-") as tmp:
        try:
            paths = export_onnx(model, tmp, dynamic_batch=True)
        except Exception as e:  # noqa: BLE001 - the exporter refuses, e.g. a state without a batch axis
            return {"streams": n, "error": f"no batch axis: {' '.join(str(e).split())[:300]}"}
        sig = read_signature(paths["encoder"])
        runs = {g.name: open_runner(paths[g.name], g, "onnx", threads) for g in sig.graphs}
        batched, single = Model(sig, runs, batch=True), Model(sig, runs, batch=False)
        try:  # warm-up, and the check that batching changes nothing
            _, _, ids = _pass(batched, audio, n)
        except Exception as e:  # noqa: BLE001 - a graph traced with a batch axis may still not run at batch n
            return {"streams": n, "error": f"the batch-axis export does not run at batch {n}: "
                                           f"{' '.join(str(e).split())[:300]}"}
        _, _, alone = _pass(single, audio, 1)
        if any(t != alone[0] for t in ids):
            return {"streams": n, "error": "batched streams decode other tokens than a stream alone"}
        per = []
        for _ in range(rounds):
            tb, cb, _ = _pass(batched, audio, n)
            ts, cs, _ = _pass(single, audio, 1)
            per.append((tb / cb, ts / cs))
    batched_s = statistics.median(p[0] for p in per)
    single_s = statistics.median(p[1] for p in per)
    ratios = sorted(p[0] / p[1] for p in per)
    return {"streams": n, "backend": "onnx:fp32 (dynamic batch axis)", "threads": threads, "rounds": rounds,
            "batched_ms": batched_s * 1e3, "single_ms": single_s * 1e3,
            "ratio": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1],
            "per_round": [{"batched_ms": b * 1e3, "single_ms": s * 1e3} for b, s in per]}


def describe(b: dict) -> str:
    if "error" in b:
        return f"{b['streams']} streams batched: not measured ({b['error']})"
    return (f"{b['streams']} streams batched on one model ({b['backend']}, {b['threads']} thread): "
            f"{b['batched_ms']:.3f} ms per stream-chunk vs {b['single_ms']:.3f} ms for one stream alone; "
            f"batched/alone {b['ratio']:.2f}x (median of {b['rounds']} paired rounds, "
            f"range {b['ratio_min']:.2f}-{b['ratio_max']:.2f})")
