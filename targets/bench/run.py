"""run_bench: every column on the same audio, round-robin, with paired ratios.

Timing: a warm-up pass per configuration, then `repeats` rounds; each round
runs one end-to-end pass of every configuration (column x threads), in an
order rotated each round, so machine drift hits all alike. Per pass: p50 /
p90 / p99 of the per-chunk latency (encoder step + state hand-over +
decoding), their total, the frontend's time and the end-to-end time (frontend
+ every chunk + decoding over the audio). The table reports the median over
rounds: RTF = per-chunk total / audio seconds, e2e RTF = end-to-end / audio
seconds. Ratios between two columns are paired (stats.paired_speedup).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import stats, timing
from .artifacts import PARITY_CHUNKS, _first_line, prepare_artifacts
from .columns import COLUMNS, DEFAULT_BACKENDS, BenchError, parse_backends, parse_threads
from .configs import make_config
from .flops import int8_matmul_ceiling, matmul_peak_gflops, onnx_macs, torch_step_flops
from .machine import machine_info, run_child
from .sherpa_columns import prepare_sherpa
from .streams import batching_cost
from .workload import workload

# Round-robin rounds. One pass of 60 s of audio takes ~0.1 s on the fast
# backends of the demo models, and on a shared machine their speed drifts by
# +-20 % over seconds: 21 short rounds, compared round by round, give ratios
# whose quartiles stay within a few % of the median.
REPEATS = 21
FRESH_PROCESSES = 3  # per column: one process's peak moved by up to 30 MB between identical runs
ROW_KEYS = ("family", "label", "kind", "backend", "precision", "threads", "status", "error", "about", "chunks",
            "audio_s", "compute_s", "rtf", "e2e_s", "e2e_rtf", "frontend_ms", "p50_ms", "p90_ms", "p99_ms",
            "mean_ms", "speedup_vs_pytorch", "speedup_rtf_vs_pytorch", "speedup_vs_pytorch_paired",
            "cold_start_ms", "load_ms", "first_chunk_ms", "import_ms", "peak_rss_mb", "peak_rss_mb_each",
            "baseline_rss_mb", "torch_imported", "size_bytes", "calls", "flops_per_pass", "gflops", "peak_fraction",
            "parity", "provider")


def _empty_row(family, label, threads) -> dict:
    c = COLUMNS[label]
    row = dict.fromkeys(ROW_KEYS)
    row.update(family=family, label=label, kind=c.kind, backend=c.backend, precision=c.precision,
               threads=threads, status="ok", about=c.about)
    return row


def _load_model(family, model, model_factory, checkpoint, bundle, labels):
    """(model or None, signature, source, trained)."""
    if model is None and model_factory:  # your own model: --model FILE.py:factory
        from edge.factory import load_model

        model = load_model(model_factory)
    if model is None and bundle is not None and all(COLUMNS[lb].kind == "artifact" for lb in labels):
        from runtime_py.manifest import Bundle  # torch-free (e.g. on a Raspberry Pi)

        b = Bundle(bundle)
        return None, b.signature, b.manifest["model"].get("source", str(bundle)), \
            bool(b.manifest["model"].get("trained", False))
    if model is None:
        from edge.checkpoint import load_or_init

        model, info = load_or_init(family, checkpoint)
        source, trained = info["source"], bool(info.get("meta", {}).get("trained", False))
    elif hasattr(model, "info"):  # edge.declare: it says where it came from and whether it is trained
        info = model.info()
        source, trained = info["source"], bool(info["meta"].get("trained", False))
    else:
        source, trained = "in-memory model", False
    model = model.eval()
    return model, model.signature(), source, trained


def _spec(label, t, signature, art, work, ckpt, model_factory, providers, tail) -> dict:
    c = COLUMNS[label]
    return {"kind": c.kind, "backend": c.backend, "threads": t, "signature": signature.to_dict(),
            "audio": str(work / "audio.npy"), "files": {g: str(p) for g, p in art["files"].items()},
            "checkpoint": str(ckpt) if ckpt else None, "factory": model_factory, "providers": providers,
            "normalize_samples": art.get("normalize_samples"), "tail_samples": tail,
            "search": "sherpa" if c.kind == "client" else c.search}  # sherpa's greedy search on its files


def run_bench(family: str = "conformer", *, model=None, checkpoint=None, bundle=None, seconds: float = 60.0,
              threads=(1,), backends=DEFAULT_BACKENDS, repeats: int | None = None, json_path=None, png_path=None,
              parity_chunks: int = PARITY_CHUNKS, subprocesses: bool = True, peak_matmul: bool = True,
              fresh_processes: int = FRESH_PROCESSES,
              providers=None, progress=print, model_factory: str | None = None, streams: int = 0) -> dict:
    """Benchmark one model; returns {"machine", "workload", "models", "rows", "paired", "targets", "pi"}.
    `model` (in memory) wins over `checkpoint`, else the shipped model (or an
    untrained one when none is shipped). Writes `json_path`/`png_path` if given.
    The steps: the model's figures (FLOPs, the int8 ceiling), every column's
    files, a loaded configuration per (column, threads), the timed rounds
    (timing.py), cold starts in fresh processes, the result."""
    from .report import write_json

    say = progress or (lambda msg: None)
    labels = parse_backends(backends)
    thread_list = parse_threads(threads)
    repeats = REPEATS if repeats is None else repeats
    if repeats < 1:
        raise BenchError("repeats must be >= 1")
    model, signature, source, trained = _load_model(family, model, model_factory, checkpoint, bundle, labels)
    family = signature.family
    machine = machine_info()
    audio, audio_s = workload(signature, seconds)
    say(f"[bench] {family} ({source}{'' if trained else ', UNTRAINED'}): {audio_s:.1f}s of audio in chunks of "
        f"{signature.chunk_frames} frames; columns {', '.join(labels)}; threads {thread_list}; repeats {repeats}")

    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    try:
        ckpt, macs, torch_flops, ceiling = _model_figures(model, signature, labels, work, say)
        artifacts = _artifacts(labels, model, signature, work, bundle, parity_chunks, ckpt, model_factory, say)
        from targets.sherpa.client import sherpa_tail_padding
        tail = sherpa_tail_padding(len(audio), signature) if signature.decoder == "transducer" else 0
        np.save(work / "audio.npy", audio)
        run = _Run(family, signature, work, ckpt, model_factory, providers, tail)
        configs, rows = _configs(run, labels, thread_list, artifacts, model, say)
        peak = matmul_peak_gflops() if peak_matmul and model is not None else None
        passes = timing.rounds(configs, rows, audio, audio_s, repeats, say)
        paired = timing.summarise(rows, passes, configs, macs, peak, audio_s, family, thread_list)
        if subprocesses:
            _cold_starts(run, rows, artifacts, say, fresh_processes)
        machine["loadavg_end"] = list(os.getloadavg())
        model_info = _model_info(family, source, trained, signature, model, macs, torch_flops, ceiling, rows,
                                 labels, thread_list[0], audio_s)
        result = _result(machine, peak, seconds, audio_s, repeats, thread_list, labels, signature, bundle, family,
                         model_info, rows, paired, passes)
        if streams:
            say(f"[bench] {streams} streams on one model, batched vs one stream alone...")
            result["batching"] = {family: batching_cost(model, audio, streams, rounds=max(3, min(repeats, 7)),
                                                        threads=thread_list[0]) if model is not None else
                                  {"streams": streams, "error": "needs the PyTorch model (this run is torch-free)"}}
        # each round's figures (first thread count), so every paired ratio can be re-derived from the JSON
        t1 = thread_list[0]
        result["rounds"] = {lb: [{q: p[q] for q in ("p50", "total", "e2e")} for p in passes[(lb, t1)]]
                            for lb in labels if (lb, t1) in passes}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if json_path:
        write_json(result, json_path)
    if png_path:
        from .plot import plot
        plot(result, png_path)
    return result


@dataclass(frozen=True)
class _Run:
    """What every configuration of one run shares (a column's child process gets it as its spec)."""
    family: str
    signature: object
    work: Path
    ckpt: Path | None
    model_factory: str | None
    providers: object
    tail: int

    def spec(self, label: str, t: int, art: dict) -> dict:
        return _spec(label, t, self.signature, art, self.work, self.ckpt, self.model_factory, self.providers,
                     self.tail)


def _model_figures(model, signature, labels, work: Path, say):
    """(checkpoint, MACs per graph call, PyTorch FLOPs per call, the int8
    ceiling): they need the model's ONNX export (torch, onnx); a torch-free
    run on a bundle has none of them."""
    ckpt, macs, torch_flops, ceiling = None, {}, {}, None
    if model is None:
        return ckpt, macs, torch_flops, ceiling
    from edge.checkpoint import save_checkpoint
    from edge.export import export_onnx

    if not hasattr(model, "info"):  # a declared model is re-made by its factory, not a checkpoint
        ckpt = save_checkpoint(model, work / "model.pt")
    onnx_paths = export_onnx(model, work / "onnx")
    macs = {g: onnx_macs(p) for g, p in onnx_paths.items()}
    torch_flops = {g.name: torch_step_flops(model, g) for g in signature.graphs}
    if any(COLUMNS[lb].precision.startswith("int8") for lb in labels):
        say("[bench] int8 ceiling: the encoder's weight matmuls alone, fp32 vs int8 ...")
        try:
            ceiling = int8_matmul_ceiling(onnx_paths["encoder"])
        except Exception as e:  # noqa: BLE001 - a diagnostic, not a row
            ceiling = {"error": _first_line(e)}
    return ckpt, macs, torch_flops, ceiling


def _artifacts(labels, model, signature, work: Path, bundle, parity_chunks: int, ckpt, model_factory, say) -> dict:
    """label -> the files a column runs (or why it has none)."""
    artifacts = prepare_artifacts(labels, signature, work, model=model, bundle=bundle,
                                  parity_chunks=parity_chunks, say=say)
    artifacts.update(prepare_sherpa(labels, model, signature, work, say=say))
    if ckpt is not None:
        artifacts["pytorch"] = {"files": {"checkpoint": ckpt}, "size_bytes": ckpt.stat().st_size}
    elif model is not None:
        artifacts["pytorch"] = {"files": {"factory": model_factory or "in-memory"},
                                "size_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    return artifacts


def _configs(run: _Run, labels, thread_list, artifacts: dict, model, say) -> tuple[dict, dict]:
    """(configs, rows): a loaded configuration per (label, threads) that
    loads, and a row for every one (a failed one says why)."""
    configs, rows = {}, {}
    for t in thread_list:
        for lb in labels:
            row = rows[(lb, t)] = _empty_row(run.family, lb, t)
            art = artifacts.get(lb) or {"error": "no PyTorch model (a torch-free run on a bundle)"}
            if "error" in art:
                row.update(status="failed", error=art["error"])
                continue
            row.update(size_bytes=art.get("size_bytes"), parity=art.get("parity_passed"),
                       about=art.get("about", row["about"]))  # a bundle's own int8 recipe, when recorded
            try:
                with warnings.catch_warnings(record=True) as caught:  # e.g. a missing execution provider
                    warnings.simplefilter("always")
                    configs[(lb, t)] = make_config(run.spec(lb, t, art), run.signature, model=model)
                for message in dict.fromkeys(str(w.message) for w in caught if COLUMNS[lb].kind == "artifact"):
                    say(f"[bench] notice: {lb}: {message}")
                row["provider"] = configs[(lb, t)].provider
            except Exception as e:  # noqa: BLE001
                row.update(status="failed", error=f"load failed: {_first_line(e)}")
    return configs, rows


def _cold_starts(run: _Run, rows: dict, artifacts: dict, say, processes: int = FRESH_PROCESSES) -> None:
    """Cold start and peak memory of every working row, each the median over `processes` fresh processes
    (round-robin over the rows, so a drift in the machine's load is shared). One process is not enough:
    where glibc places the freed load buffers moved one fp32 session's settled size by 125-158 MB between
    identical processes (docs/benchmarks.md, "Memory"). Every process's figure stays in the row."""
    todo = [(key, row) for key, row in rows.items() if row["status"] == "ok"
            and not (key[0] == "pytorch" and run.ckpt is None and not run.model_factory)]
    # (an in-memory declared model cannot be re-made in a fresh process)
    got: dict = {key: [] for key, _ in todo}
    for i in range(max(1, processes)):
        for (lb, t), row in todo:
            say(f"[bench] cold start + peak memory: {lb} x{t} (fresh process {i + 1}/{processes}) ...")
            try:
                got[(lb, t)].append(run_child(run.spec(lb, t, artifacts[lb]), run.work))
            except Exception as e:  # noqa: BLE001
                row["error"] = f"subprocess: {_first_line(e)}"
    for (lb, t), row in todo:
        runs = got[(lb, t)]
        if not runs:
            continue
        for k in ("cold_start_ms", "load_ms", "first_chunk_ms", "import_ms", "peak_rss_mb", "baseline_rss_mb"):
            row[k] = float(np.median([r[k] for r in runs]))
        row["peak_rss_mb_each"] = [r["peak_rss_mb"] for r in runs]
        row["torch_imported"] = any(r["torch_imported"] for r in runs)
        if lb != "pytorch" and row["torch_imported"]:
            row["error"] = "the child imported torch: memory figure includes it"


def _model_info(family, source, trained, signature, model, macs, torch_flops, ceiling, rows, labels, t1,
                audio_s) -> dict:
    fe = signature.frontend
    by_label = {lb: rows[(lb, t1)] for lb in labels}
    info = {
        "family": family, "source": source, "trained": trained,
        "chunk_frames": signature.chunk_frames, "shift_frames": signature.shift_frames,
        "chunk_ms": signature.shift_frames * fe.frame_shift / fe.sample_rate * 1e3,
        "parameters": int(sum(p.numel() for p in model.parameters())) if model is not None else None,
        "decoding": "CTC greedy (argmax)" if signature.decoder == "ctc"
                    else "transducer greedy (decoder/joiner graph calls on the same backend)",
        "macs_per_call": macs, "torch_flops_per_call": torch_flops, "int8_matmul_ceiling": ceiling,
        "encoder_flops_per_audio_s": 2 * macs.get("encoder", 0) * (
            by_label[labels[0]]["chunks"] or 0) / audio_s if macs else None,
        "flop_count_method": "analytic from the fp32 ONNX graphs (MatMul/Gemm/Conv/LSTM/GRU, 2 FLOPs per MAC)"
                             "; torch_flops_per_call: FlopCounterMode on the PyTorch step" if macs else
                             "not counted: torch-free run on a bundle (FLOPs come from the model's ONNX export)",
    }
    ref = next((r for r in rows.values() if r["status"] == "ok" and r.get("flops_per_pass")), None)
    info["flops_per_audio_s"] = ref["flops_per_pass"] / audio_s if ref else None
    return info


def _result(machine, peak, seconds, audio_s, repeats, thread_list, labels, signature, bundle, family, model_info,
            rows, paired, passes) -> dict:
    t1 = thread_list[0]
    result = {
        "machine": machine,
        "peak_matmul_gflops_1thread": peak,
        "workload": {"seconds_requested": seconds, "audio_s": audio_s, "chunks": rows[(labels[0], t1)]["chunks"],
                     "repeats": repeats, "threads": thread_list, "backends": labels,
                     "source": "targets.golden.parity_audio (speech, seeded gain and noise)",
                     "includes": "per chunk: encoder step + state loop + greedy decoding"
                                 + (" (decoder/joiner graph calls)" if signature.decoder != "ctc"
                                    else " (CTC argmax)") + "; e2e adds the fbank over the audio",
                     "bundle": str(bundle) if bundle else "built by targets.build.build_bundle (rpi)"},
        "models": {family: model_info},
        "rows": [rows[(lb, t)] for t in thread_list for lb in labels],
        "paired": paired,
        "targets": stats.project_targets({lb: rows[(lb, t1)] for lb in labels},
                                         {lb: passes[(lb, t1)] for lb in labels if (lb, t1) in passes}),
    }
    # 1 -> t thread speed-ups, paired (both thread counts ran in the same rounds)
    speedups = {(lb, t): stats.paired_speedup(got, passes[(lb, 1)], "e2e")["median"]
                for (lb, t), got in passes.items() if t > 1 and got and passes.get((lb, 1))}
    result["pi"] = stats.pi_estimates(result["rows"], peak, speedups)
    return result


def merge_results(results: list[dict]) -> dict:
    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    out["models"] = {k: v for r in results for k, v in r["models"].items()}
    out["rows"] = [row for r in results for row in r["rows"]]
    out["paired"] = [p for r in results for p in r.get("paired", [])]
    out["targets"] = [dict(t, family=f) for r in results for f in r["models"] for t in r.get("targets", [])]
    out["pi"] = [p for r in results for p in r.get("pi", [])]
    out["batching"] = {f: b for r in results for f, b in r.get("batching", {}).items()}
    out["workload"] = dict(out["workload"], includes="per chunk: encoder step + state loop + greedy decoding (see "
                           "models.<family>.decoding); e2e adds the fbank over the audio",
                           audio_s={f: r["workload"]["audio_s"] for r in results for f in r["models"]},
                           chunks={f: r["workload"]["chunks"] for r in results for f in r["models"]})
    out["machine"]["loadavg_end"] = results[-1]["machine"].get("loadavg_end")
    return out
