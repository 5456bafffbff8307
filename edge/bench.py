"""edge-bench: latency, RTF, cold start, memory, size and FLOP use per backend.

    edge-bench                                   # shipped conformer, pytorch vs ort fp32/int8 vs tflite fp32
    edge-bench --family all --threads 1,2 --json bench.json --png bench.png
    edge-bench --bundle dist/demo-conformer-rpi --backends pytorch,ort:fp32,ort:int8

The workload is the same for every backend: about `--seconds` of speech
features (targets.golden.parity_stream, the parity stream of the build) fed
chunk by chunk with the states carried through the shared StateLoop, followed
by the greedy decoder the signature calls for (CTC argmax; for a transducer
the decoder/joiner graph calls of greedy search, run on the same backend).
So one "chunk latency" is what a device spends per chunk after the features:
encoder step + state hand-over + decoding. The fbank front end is not timed
(it is the same numpy code for every backend).

- PyTorch eager: `edge.export.torch_runner` on the model's graph modules,
  under `torch.inference_mode()` with `torch.set_num_threads(t)`.
- ORT / TFLite: `runtime_py.backends.open_runner` (what the client uses) on
  the artifacts of a bundle: `--bundle DIR`, else one built here with
  `targets.build.build_bundle` (ORT pairs in one bundle, each TFLite pair in
  its own, so one failed conversion is a "failed" row, not a crash).

Timing: a warm-up pass per configuration, then `--repeats` rounds; each round
runs one full pass of every configuration (backend x threads), in an order
rotated each round, so machine drift hits all alike. Per pass: p50/p90/p99 of
the per-chunk latency and the total compute; the table reports the median over
rounds. RTF = median total compute / audio seconds. Speed-ups between two
configurations are also given paired: the ratio of their p50s within each
round, median and quartiles over rounds (`paired`, `PAIRS`), which drift
between rounds cannot bias.

Cold start and peak memory come from a fresh subprocess per configuration
that loads only that backend (the PyTorch child imports torch and loads the
checkpoint; the ORT and TFLite children never import torch, which the child
checks) and runs the workload once: cold start = load + first chunk, peak
memory = ru_maxrss of that child.

FLOPs: multiply-accumulates counted analytically from the exported fp32 ONNX
graphs (MatMul/Gemm/Conv/LSTM/GRU shapes after onnx shape inference), times
the number of calls of each graph in a pass, times 2. Cross-checked with
torch.utils.flop_counter.FlopCounterMode on the PyTorch encoder step. The
machine's peak is a 512x512 fp32 matmul in torch at 1 thread.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

FAMILIES = ("conformer", "lstm", "transducer")
ALL_BACKENDS = ("pytorch", "ort:fp32", "ort:int8", "tflite:fp32", "tflite:fp16", "tflite:int8")
DEFAULT_BACKENDS = ("pytorch", "ort:fp32", "ort:int8", "tflite:fp32")
ARTIFACT_BACKENDS = ("ort", "onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
PARITY_CHUNKS = 50  # the build's own parity rollout; speed is what is measured here
# Round-robin rounds. One pass of 60 s of audio takes ~0.1 s on the fast
# backends, and on a shared machine their speed drifts by +-20 % over
# seconds: 21 short rounds, compared round by round (paired_speedup), give
# ratios whose quartiles stay within a few % of the median.
REPEATS = 21
ROW_KEYS = ("family", "label", "backend", "precision", "threads", "status", "error", "chunks", "audio_s",
            "compute_s", "rtf", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "speedup_vs_pytorch",
            "speedup_rtf_vs_pytorch", "speedup_vs_pytorch_paired", "cold_start_ms", "load_ms", "first_chunk_ms", "import_ms",
            "peak_rss_mb", "baseline_rss_mb", "torch_imported", "size_bytes", "calls", "flops_per_pass",
            "gflops", "peak_fraction", "parity", "provider")
_REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    pass


# -- names ----------------------------------------------------------------------

def parse_backends(spec) -> list[str]:
    """'pytorch,ort:fp32,...' or a list -> normalised labels."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    out = []
    for item in items:
        item = item.lower()
        if item in ("pytorch", "torch", "eager"):
            item = "pytorch"
        elif ":" not in item and item in ARTIFACT_BACKENDS:
            item = f"{item}:fp32"
        if item != "pytorch":
            b, _, p = item.partition(":")
            if b not in ARTIFACT_BACKENDS or p not in PRECISIONS:
                raise BenchError(f"unknown backend {item!r}; use pytorch or one of "
                                 f"{', '.join(ALL_BACKENDS)} (also onnx:fp32)")
        if item not in out:
            out.append(item)
    if not out:
        raise BenchError("no backend given")
    return out


def parse_threads(spec) -> list[int]:
    items = spec.split(",") if isinstance(spec, str) else spec
    out = sorted({int(t) for t in items if str(t).strip()})
    if not out or out[0] < 1:
        raise BenchError(f"threads must be positive integers, got {spec!r}")
    return out


def _split(label: str) -> tuple[str, str]:
    return ("pytorch", "fp32") if label == "pytorch" else tuple(label.split(":", 1))


# -- the workload ---------------------------------------------------------------

class Pipeline:
    """What a device does per chunk: the encoder step with its states carried
    (StateLoop), then greedy decoding (CTC argmax, or the transducer's
    decoder/joiner calls on the same backend). Counts the calls per graph."""

    def __init__(self, signature, raw_runs: dict):
        self.signature = signature
        self.raw_runs = raw_runs
        self.calls = {g: 0 for g in raw_runs}
        self.reset()

    def _counted(self, name):
        run = self.raw_runs[name]

        def counted(feeds):
            self.calls[name] += 1
            return run(feeds)
        return counted

    def reset(self) -> None:
        from runtime_py.decoding import make_decoder
        from runtime_py.stateloop import StateLoop

        self.runs = {}
        for g in self.signature.graphs:
            run = self._counted(g.name)
            self.runs[g.name] = StateLoop(g, run).step if g.states else run
        enc = self.signature.graph("encoder")
        self.x_name, self.out_name = enc.inputs[0].name, enc.outputs[0].name
        self.decoder = make_decoder(self.signature, self.runs)  # a transducer runs its decoder here
        self.calls = {g: 0 for g in self.raw_runs}

    def step(self, chunk: np.ndarray) -> None:
        self.decoder.accept(self.runs["encoder"]({self.x_name: chunk})[self.out_name])


def run_pass(pipe: Pipeline, chunks: list[np.ndarray]) -> np.ndarray:
    """One pass over the workload from fresh states; per-chunk seconds."""
    pipe.reset()
    times = np.empty(len(chunks))
    clock = time.perf_counter
    for i, c in enumerate(chunks):
        t0 = clock()
        pipe.step(c)
        times[i] = clock() - t0
    return times


def workload(signature, seconds: float) -> tuple[list[np.ndarray], float]:
    """Speech feature chunks covering about `seconds`, and their audio length."""
    from targets.golden import parity_stream

    fe = signature.frontend
    chunk_s = signature.shift_frames * fe.frame_shift / fe.sample_rate
    n = max(2, int(round(seconds / chunk_s)))
    chunks = [np.ascontiguousarray(c, dtype=np.float32) for c in parity_stream(signature, n)]
    return chunks, len(chunks) * chunk_s


# -- runners per configuration ----------------------------------------------------

class _TorchConfig:
    def __init__(self, model, signature, threads):
        import torch
        from edge.export import torch_runner

        self.torch, self.threads = torch, threads
        self.pipe = Pipeline(signature, {g.name: torch_runner(model, g) for g in signature.graphs})

    def run(self, chunks):
        torch = self.torch
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return run_pass(self.pipe, chunks)


class _ArtifactConfig:
    def __init__(self, files: dict, signature, backend, threads, providers=None):
        from runtime_py.backends import open_runner

        self.pipe = Pipeline(signature, {g.name: open_runner(files[g.name], g, backend, threads, providers=providers)
                                         for g in signature.graphs})
        # the ONNX Runtime execution provider actually used (None for LiteRT)
        self.provider = getattr(self.pipe.raw_runs["encoder"], "provider", None)

    def run(self, chunks):
        return run_pass(self.pipe, chunks)


# -- bundles ----------------------------------------------------------------------

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
    files, size, parity = {}, 0, {}
    for g in signature.graphs:
        art = b.find(g.name, backend, precision)
        files[g.name] = b.path(art.path)  # sha256-checked
        size += int(art.bytes)
        parity[g.name] = art.parity.get("passed") if isinstance(art.parity, dict) else None
    return {"bundle": str(bundle_dir), "files": files, "size_bytes": size,
            "parity_passed": all(v is not False for v in parity.values()) if parity else None}


def prepare_artifacts(labels, signature, work: Path, *, model=None, bundle=None,
                      parity_chunks: int = PARITY_CHUNKS, say=print) -> dict:
    """label -> {"files", "size_bytes", "parity_passed", "bundle"} or {"error"}."""
    wanted = [lb for lb in labels if lb != "pytorch"]
    out = {}
    if bundle is not None:
        for lb in wanted:
            try:
                out[lb] = _artifact_set(Path(bundle), signature, *_split(lb))
            except Exception as e:  # noqa: BLE001 - a missing artifact is a row, not a crash
                out[lb] = {"error": _first_line(e)}
        return out
    from targets.build import build_bundle

    groups = []
    ort_pairs = [_split(lb) for lb in wanted if _split(lb)[0] in ("ort", "onnx")]
    if ort_pairs:
        groups.append(("ort", ort_pairs))
    groups += [(f"tflite-{p}", [(b, p)]) for b, p in map(_split, wanted) if b == "tflite"]
    family = signature.family
    for name, pairs in groups:
        dest = work / f"bundle-{name}"
        t0 = time.perf_counter()
        say(f"[bench] building {family} bundle for {', '.join(f'{b}:{p}' for b, p in pairs)} ...")
        try:
            path = build_bundle(None if hasattr(model, "info") else family, "rpi", dest, model=model,
                                backends=list(pairs), parity_chunks=parity_chunks, keep_failed=True,
                                stream_seconds=BUNDLE_STREAM_CHECK_S)
            for b, p in pairs:
                out[f"{b}:{p}"] = _artifact_set(Path(path), signature, b, p)
            say(f"[bench]   done in {time.perf_counter() - t0:.1f}s")
        except Exception as e:  # noqa: BLE001 - e.g. a TFLite conversion that fails for a family
            for b, p in pairs:
                out[f"{b}:{p}"] = {"error": f"build failed: {_first_line(e)}"}
            say(f"[bench]   FAILED ({_first_line(e, 160)})")
    return out


# -- FLOPs and the machine's peak ------------------------------------------------

def _graph_shapes(path):
    """(graph, {tensor name: static shape}) of an ONNX file, after shape inference."""
    import onnx
    from onnx import numpy_helper, shape_inference

    g = shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        dims = v.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)
    for node in g.node:  # Constant nodes feeding a MatMul
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    shapes[node.output[0]] = list(numpy_helper.to_array(a.t).shape)
    return g, shapes


def onnx_macs(path) -> int:
    """Multiply-accumulates of one call of an ONNX graph, from its shapes:
    MatMul, Gemm, Conv, LSTM, GRU (element-wise ops, softmax, norms are not
    counted: they are a few % here and not matmul-bound)."""
    import onnx

    g, shapes = _graph_shapes(path)
    total = 0
    for node in g.node:
        op = node.op_type
        s = lambda name: shapes.get(name)  # noqa: E731
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "MatMul":
            a, y = s(node.input[0]), s(node.output[0])
            if a and y is not None:
                total += int(np.prod(y)) * a[-1]
        elif op == "Gemm":
            a, y = s(node.input[0]), s(node.output[0])
            if a and y:
                k = a[0] if attrs.get("transA", 0) else a[1]
                total += int(np.prod(y)) * k
        elif op == "Conv":
            w, y = s(node.input[1]), s(node.output[0])
            if w and y:
                total += int(np.prod(y)) * int(np.prod(w[1:]))
        elif op in ("LSTM", "GRU"):
            x, w, r = s(node.input[0]), s(node.input[1]), s(node.input[2])
            if x and w and r:
                layout = attrs.get("layout", 0)
                seq, batch = (x[0], x[1]) if layout == 0 else (x[1], x[0])
                total += seq * batch * w[0] * w[1] * (w[2] + r[2])
    return int(total)


def int8_matmul_ceiling(path, rounds: int = 7, calls: int = 200) -> dict | None:
    """How much dynamic int8 can speed up this graph's weight matmuls at the
    shapes one step calls them with (e.g. 8 rows for a conformer chunk).

    Every MatMul/Gemm with a weight initializer is copied, with its weight and
    its own input shape, into a graph of independent MatMuls; that graph runs
    in ONNX Runtime (1 thread) as fp32 and as dynamic int8 (targets.ort's
    quantize_int8, as the .ort int8 artifact), interleaved, medians of `rounds`. The rest of
    a step (norms, softmax, concat/slice of caches) is the same in both
    precisions, so the ratio here bounds what int8 can give the whole step.
    None for a graph with recurrent ops: int8 quantises LSTM weights too
    (targets.ort.INT8_OP_TYPES), so matmuls alone would bound nothing."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from targets.ort import quantize_int8

    g, shapes = _graph_shapes(path)
    if any(n.op_type in ("LSTM", "GRU", "RNN") for n in g.node):
        return None
    inits = {i.name: i for i in g.initializer}
    nodes, inputs, outputs, weights, in_shapes = [], [], [], [], []
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or node.input[1] not in inits:
            continue
        a = shapes.get(node.input[0])
        w = numpy_helper.to_array(inits[node.input[1]])
        if not a or w.ndim != 2:
            continue
        if node.op_type == "Gemm":
            attrs = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            if attrs.get("transA", 0):
                continue
            w = w.T if attrs.get("transB", 0) else w
        k = len(nodes)
        weights.append(numpy_helper.from_array(np.ascontiguousarray(w), f"w{k}"))
        in_shapes.append(a)
        inputs.append(helper.make_tensor_value_info(f"x{k}", onnx.TensorProto.FLOAT, a))
        outputs.append(helper.make_tensor_value_info(f"y{k}", onnx.TensorProto.FLOAT, a[:-1] + [w.shape[1]]))
        nodes.append(helper.make_node("MatMul", [f"x{k}", f"w{k}"], [f"y{k}"]))
    if not nodes:
        return None
    model = helper.make_model(helper.make_graph(nodes, "matmuls", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rng = np.random.default_rng(0)
    feeds = {f"x{k}": rng.standard_normal(a).astype(np.float32) for k, a in enumerate(in_shapes)}
    with tempfile.TemporaryDirectory(prefix="edge-int8-ceiling-") as tmp:
        f32, q8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(f32))
        quantize_int8(f32, q8)  # the .ort int8 artifact's settings
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        sess = {p: ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
                for p, f in (("fp32", f32), ("int8", q8))}
        times = {p: [] for p in sess}
        for _ in range(rounds):
            for p, s in sess.items():
                s.run(None, feeds)
                t0 = time.perf_counter()
                for _ in range(calls):
                    s.run(None, feeds)
                times[p].append((time.perf_counter() - t0) / calls)
    med = {p: float(np.median(t)) for p, t in times.items()}
    rows = sorted({int(np.prod(a[:-1])) for a in in_shapes})
    return {"matmuls": len(nodes), "rows_per_call": rows, "fp32_ms": med["fp32"] * 1e3,
            "int8_ms": med["int8"] * 1e3, "ratio": med["fp32"] / med["int8"]}


def torch_step_flops(model, graph) -> int | None:
    """FLOPs of one PyTorch call of a graph (FlopCounterMode: mm/bmm/addmm/conv)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from edge.export import example_inputs

        module = model.graph_module(graph.name).eval()
        feeds = example_inputs(graph, model.signature())
        args = [torch.from_numpy(feeds[n]) for n in graph.input_names]
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            module(*args)
        return int(fc.get_total_flops())
    except Exception:  # noqa: BLE001 - a cross-check only
        return None


def matmul_peak_gflops(n: int = 512, seconds: float = 0.5) -> float:
    """Best-of fp32 GFLOP/s of an n x n matmul in torch at 1 thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        for _ in range(3):
            torch.mm(a, b, out=c)
        best, t_end = math.inf, time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b, out=c)
            best = min(best, (time.perf_counter() - t0) / 4)
        return 2 * n ** 3 / best / 1e9
    finally:
        torch.set_num_threads(before)


# -- machine ----------------------------------------------------------------------

def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":")[0].strip().lower()
            if key in ("model name", "hardware", "cpu model"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "onnxruntime", "onnx", "ai_edge_litert"):  # from metadata: importing torch takes seconds
        try:
            versions[mod] = version(mod.replace("_", "-"))
        except PackageNotFoundError:
            versions[mod] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"cpu": cpu, "machine": platform.machine(), "system": platform.platform(),
            "cores": os.cpu_count(), "usable_cores": affinity, "versions": versions,
            "loadavg_start": list(os.getloadavg())}


# -- the cold-start / memory child -------------------------------------------------

def _rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _peak_rss_bytes() -> int:
    """This process's own high-water RSS. VmHWM is per address space, so it
    starts afresh at exec; ru_maxrss would carry the parent's peak over
    (Linux keeps the maximum across fork + execve)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _child(spec_path: str) -> None:
    """Entry of the fresh subprocess: load one backend, run the workload once,
    print a JSON line. Imports torch only for the PyTorch backend."""
    t_start = time.perf_counter()
    from runtime_py.signature import Signature

    spec = json.loads(Path(spec_path).read_text())
    signature = Signature.from_dict(spec["signature"])
    chunks = list(np.load(spec["chunks"]))
    threads = int(spec["threads"])
    baseline = _rss_bytes()
    res = {}
    t0 = time.perf_counter()
    if spec["backend"] == "pytorch":
        import torch

        torch.set_num_threads(threads)
        t1 = time.perf_counter()
        from edge.checkpoint import load_checkpoint
        from edge.export import torch_runner

        if spec.get("factory"):
            from edge.factory import load_model
            model = load_model(spec["factory"])
        else:
            model, _ = load_checkpoint(spec["checkpoint"])
        pipe = Pipeline(signature, {g.name: torch_runner(model, g) for g in signature.graphs})
        ctx = torch.inference_mode()
    else:
        import contextlib
        import importlib

        importlib.import_module("ai_edge_litert.interpreter" if spec["backend"] == "tflite" else "onnxruntime")
        t1 = time.perf_counter()
        from runtime_py.backends import open_runner

        pipe = Pipeline(signature, {g.name: open_runner(spec["files"][g.name], g, spec["backend"], threads,
                                                        providers=spec.get("providers"))
                                    for g in signature.graphs})
        ctx = contextlib.nullcontext()
    t2 = time.perf_counter()
    with ctx:
        pipe.step(chunks[0])
        t3 = time.perf_counter()
        for c in chunks[1:]:
            pipe.step(c)
    t4 = time.perf_counter()
    res.update(import_ms=(t1 - t0) * 1e3, load_ms=(t2 - t1) * 1e3, first_chunk_ms=(t3 - t2) * 1e3,
               cold_start_ms=(t3 - t1) * 1e3, process_to_first_chunk_ms=(t3 - t_start) * 1e3,
               pass_s=t4 - t2, baseline_rss_mb=baseline / 2 ** 20,
               peak_rss_mb=_peak_rss_bytes() / 2 ** 20,
               torch_imported="torch" in sys.modules)
    print("EDGE_BENCH_CHILD " + json.dumps(res), flush=True)


def run_child(spec: dict, work: Path, timeout: float = 600) -> dict:
    fd, path = tempfile.mkstemp(prefix="child-", suffix=".json", dir=work)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(_REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-c", "import sys; from edge.bench import _child; _child(sys.argv[1])", path]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(_REPO_ROOT), timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("EDGE_BENCH_CHILD "):
            return json.loads(line.split(" ", 1)[1])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    raise BenchError(f"child exited {p.returncode}: {' | '.join(tail)}")


# -- the benchmark ------------------------------------------------------------------

def _stats(times: np.ndarray) -> dict:
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(times.mean()), "total": float(times.sum())}


# Speed-ups worth a line of their own: (faster candidate, baseline).
PAIRS = (("ort:int8", "ort:fp32"), ("tflite:fp32", "ort:fp32"), ("tflite:fp16", "tflite:fp32"),
         ("tflite:int8", "tflite:fp32"))


def paired_speedup(a: list[dict], b: list[dict]) -> dict:
    """Speed-up of configuration a over b from the same rounds: the ratio of
    their per-pass p50s round by round (b / a), then the median and the
    quartiles over rounds. Machine drift between rounds hits a and b alike,
    so this is steadier than a ratio of two medians taken over the whole run."""
    r = np.array([y["p50"] / x["p50"] for x, y in zip(a, b)])
    return {"median": float(np.median(r)), "q25": float(np.percentile(r, 25)),
            "q75": float(np.percentile(r, 75)), "rounds": int(len(r))}


# The bundles edge-bench builds are timed, not shipped: a short stream proof keeps the build quick.
BUNDLE_STREAM_CHECK_S = 60.0


def _empty_row(family, label, threads) -> dict:
    b, p = _split(label)
    row = dict.fromkeys(ROW_KEYS)
    row.update(family=family, label=label, backend=b, precision=p, threads=threads, status="ok")
    return row


def run_bench(family: str = "conformer", *, model=None, checkpoint=None, bundle=None, seconds: float = 60.0,
              threads=(1,), backends=DEFAULT_BACKENDS, repeats: int | None = None, json_path=None, png_path=None,
              parity_chunks: int = PARITY_CHUNKS, subprocesses: bool = True, peak_matmul: bool = True,
              providers=None, progress=print, model_factory: str | None = None) -> dict:
    """Benchmark one family; returns {"machine", "workload", "model", "rows"}.
    `model` (in memory) wins over `checkpoint`, else the shipped model (or an
    untrained one when none is shipped). Writes `json_path`/`png_path` if given."""
    say = progress or (lambda msg: None)
    labels = parse_backends(backends)
    thread_list = parse_threads(threads)
    repeats = REPEATS if repeats is None else repeats
    if repeats < 1:
        raise BenchError("repeats must be >= 1")
    if model is None and model_factory:  # your own model: --model FILE.py:factory
        from .factory import load_model

        model = load_model(model_factory)
    if model is None and bundle is not None and "pytorch" not in labels:
        # torch-free (e.g. on a Raspberry Pi): everything comes from the bundle
        from runtime_py.manifest import Bundle

        b = Bundle(bundle)
        signature = b.signature
        source = b.manifest["model"].get("source", str(bundle))
        trained = bool(b.manifest["model"].get("trained", False))
    elif model is None:
        from edge.checkpoint import load_or_init

        model, info = load_or_init(family, checkpoint)
        source, trained = info["source"], bool(info.get("meta", {}).get("trained", False))
    elif hasattr(model, "info"):  # edge.declare: it says where it came from and whether it is trained
        info = model.info()
        source, trained = info["source"], bool(info["meta"].get("trained", False))
    else:
        source, trained = "in-memory model", False
    if model is not None:
        model = model.eval()
        signature = model.signature()
    family = signature.family
    machine = machine_info()
    chunks, audio_s = workload(signature, seconds)
    fe = signature.frontend
    say(f"[bench] {family} ({source}{'' if trained else ', UNTRAINED'}): {len(chunks)} chunks of "
        f"{signature.chunk_frames} frames, {audio_s:.1f}s of audio; backends {', '.join(labels)}; "
        f"threads {thread_list}; repeats {repeats}")

    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    try:
        ckpt, onnx_paths, macs, torch_flops, ceiling = None, {}, {}, {}, None
        if model is not None:  # FLOPs and the int8 ceiling need the model's ONNX export (torch, onnx)
            from edge.checkpoint import save_checkpoint
            from edge.export import export_onnx

            if not hasattr(model, "info"):  # a declared model is re-made by its factory, not a checkpoint
                ckpt = save_checkpoint(model, work / "model.pt")
            onnx_paths = export_onnx(model, work / "onnx")
            macs = {g: onnx_macs(p) for g, p in onnx_paths.items()}
            torch_flops = {g.name: torch_step_flops(model, g) for g in signature.graphs}
        if any(lb.endswith(":int8") for lb in labels) and "encoder" in onnx_paths:
            say("[bench] int8 ceiling: the encoder's weight matmuls alone, fp32 vs int8 ...")
            try:
                ceiling = int8_matmul_ceiling(onnx_paths["encoder"])
            except Exception as e:  # noqa: BLE001 - a diagnostic, not a row
                ceiling = {"error": _first_line(e)}
        artifacts = prepare_artifacts(labels, signature, work, model=model, bundle=bundle,
                                      parity_chunks=parity_chunks, say=say)
        if ckpt is not None:
            artifacts["pytorch"] = {"files": {"checkpoint": ckpt}, "size_bytes": ckpt.stat().st_size,
                                    "parity_passed": None}
        elif model is not None:
            artifacts["pytorch"] = {"files": {"factory": model_factory or "in-memory"}, "parity_passed": None,
                                    "size_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}

        # configurations that can run in this process
        configs, rows = {}, {}
        for t in thread_list:
            for lb in labels:
                row = rows[(lb, t)] = _empty_row(family, lb, t)
                art = artifacts[lb]
                if "error" in art:
                    row.update(status="failed", error=art["error"])
                    continue
                row.update(size_bytes=art["size_bytes"], parity=art["parity_passed"])
                try:
                    if lb == "pytorch":
                        configs[(lb, t)] = _TorchConfig(model, signature, t)
                    else:
                        with warnings.catch_warnings(record=True) as caught:  # a missing execution provider
                            warnings.simplefilter("always")
                            configs[(lb, t)] = _ArtifactConfig(art["files"], signature, _split(lb)[0], t, providers)
                        for message in dict.fromkeys(str(w.message) for w in caught):
                            say(f"[bench] notice: {lb}: {message}")
                        row["provider"] = configs[(lb, t)].provider
                except Exception as e:  # noqa: BLE001
                    row.update(status="failed", error=f"load failed: {_first_line(e)}")

        peak = matmul_peak_gflops() if peak_matmul and model is not None else None
        order = list(configs)
        say(f"[bench] warm-up pass x {len(order)} configurations ...")
        passes = {k: [] for k in order}
        for k in order:
            try:
                configs[k].run(chunks)
            except Exception as e:  # noqa: BLE001
                rows[k].update(status="failed", error=f"run failed: {_first_line(e)}")
        order = [k for k in order if rows[k]["status"] == "ok"]
        for r in range(repeats):
            rot = order[r % len(order):] + order[:r % len(order)] if order else []
            for k in rot:
                passes[k].append(_stats(configs[k].run(chunks)))
            say(f"[bench] round {r + 1}/{repeats} done")

        for k in order:
            row, st = rows[k], passes[k]
            med = {q: float(np.median([s[q] for s in st])) for q in ("p50", "p90", "p99", "mean", "total")}
            calls = dict(configs[k].pipe.calls)
            flops = 2 * sum(macs.get(g, 0) * n for g, n in calls.items())
            row.update(chunks=len(chunks), audio_s=audio_s, compute_s=med["total"], rtf=med["total"] / audio_s,
                       p50_ms=med["p50"] * 1e3, p90_ms=med["p90"] * 1e3, p99_ms=med["p99"] * 1e3,
                       mean_ms=med["mean"] * 1e3, calls=calls, flops_per_pass=flops if macs else None,
                       gflops=flops / med["total"] / 1e9 if macs else None)
            if peak:
                row["peak_fraction"] = row["gflops"] / (peak * k[1])
        for (lb, t), row in rows.items():
            ref = rows.get(("pytorch", t))
            if row["status"] == "ok" and ref and ref["status"] == "ok" and ref["p50_ms"]:
                row["speedup_vs_pytorch"] = ref["p50_ms"] / row["p50_ms"]
                row["speedup_rtf_vs_pytorch"] = ref["rtf"] / row["rtf"]
                row["speedup_vs_pytorch_paired"] = paired_speedup(passes[(lb, t)], passes[("pytorch", t)])
        paired = [dict(family=family, threads=t, faster=a, than=b, **paired_speedup(passes[(a, t)], passes[(b, t)]))
                  for t in thread_list for a, b in PAIRS if (a, t) in passes and (b, t) in passes
                  and rows[(a, t)]["status"] == rows[(b, t)]["status"] == "ok"]

        if subprocesses:
            np.save(work / "chunks.npy", np.stack(chunks))
            for (lb, t), row in rows.items():
                if row["status"] != "ok":
                    continue
                b, _ = _split(lb)
                spec = {"backend": b, "threads": t, "signature": signature.to_dict(),
                        "chunks": str(work / "chunks.npy"),
                        "files": {g: str(p) for g, p in artifacts[lb]["files"].items()},
                        "checkpoint": str(ckpt), "factory": model_factory, "providers": providers}
                if b == "pytorch" and ckpt is None and not model_factory:
                    continue  # an in-memory declared model cannot be re-made in a fresh process
                say(f"[bench] cold start + peak memory: {lb} x{t} (fresh process) ...")
                try:
                    res = run_child(spec, work)
                    row.update({k: res[k] for k in ("cold_start_ms", "load_ms", "first_chunk_ms", "import_ms",
                                                    "peak_rss_mb", "baseline_rss_mb", "torch_imported")})
                    if b != "pytorch" and res["torch_imported"]:
                        row["error"] = "the child imported torch: memory figure includes it"
                except Exception as e:  # noqa: BLE001
                    row["error"] = f"subprocess: {_first_line(e)}"

        machine["loadavg_end"] = list(os.getloadavg())
        model_info = {
            "family": family, "source": source, "trained": trained,
            "chunk_frames": signature.chunk_frames, "shift_frames": signature.shift_frames,
            "chunk_ms": signature.shift_frames * fe.frame_shift / fe.sample_rate * 1e3,
            "parameters": int(sum(p.numel() for p in model.parameters())) if model is not None else None,
            "decoding": "CTC greedy (argmax)" if signature.decoder == "ctc"
                        else "transducer greedy (decoder/joiner graph calls on the same backend)",
            "macs_per_call": macs, "torch_flops_per_call": torch_flops,
            "int8_matmul_ceiling": ceiling,
            "encoder_flops_per_audio_s": 2 * macs.get("encoder", 0) * len(chunks) / audio_s,
            "flop_count_method": "analytic from the fp32 ONNX graphs (MatMul/Gemm/Conv/LSTM/GRU, 2 FLOPs per MAC)"
                                 "; torch_flops_per_call: FlopCounterMode on the PyTorch step" if macs else
                                 "not counted: torch-free run on a bundle (FLOPs come from the model's ONNX export)",
        }
        ref = next((r for r in rows.values() if r["status"] == "ok" and r.get("flops_per_pass")), None)
        model_info["flops_per_audio_s"] = ref["flops_per_pass"] / audio_s if ref else None
        result = {
            "machine": machine,
            "peak_matmul_gflops_1thread": peak,
            "workload": {"seconds_requested": seconds, "audio_s": audio_s, "chunks": len(chunks),
                         "repeats": repeats, "threads": thread_list, "backends": labels,
                         "source": "targets.golden.parity_stream (speech features, states carried)",
                         "includes": "encoder step + state loop + greedy decoding"
                                     + (" (decoder/joiner graph calls)" if signature.decoder != "ctc"
                                        else " (CTC argmax)") + "; fbank not timed",
                         "bundle": str(bundle) if bundle else "built by targets.build.build_bundle (rpi)"},
            "models": {family: model_info},
            "rows": [rows[(lb, t)] for t in thread_list for lb in labels],
            "paired": paired,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if json_path:
        write_json(result, json_path)
    if png_path:
        plot(result, png_path)
    return result


def merge_results(results: list[dict]) -> dict:
    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    out["models"] = {k: v for r in results for k, v in r["models"].items()}
    out["rows"] = [row for r in results for row in r["rows"]]
    out["paired"] = [p for r in results for p in r.get("paired", [])]
    out["workload"] = dict(out["workload"], includes="encoder step + state loop + greedy decoding (see "
                           "models.<family>.decoding); fbank not timed",
                           audio_s={f: r["workload"]["audio_s"] for r in results for f in r["models"]},
                           chunks={f: r["workload"]["chunks"] for r in results for f in r["models"]})
    out["machine"]["loadavg_end"] = results[-1]["machine"].get("loadavg_end")
    return out


# -- output -------------------------------------------------------------------------

def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def write_json(result: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(result), indent=2, sort_keys=True) + "\n")
    return path


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _per(v, fmt) -> str:
    if isinstance(v, dict):
        return "/".join(format(x, fmt) for x in v.values()) + f" ({'/'.join(v)})"
    return format(v, fmt)


def format_table(result: dict) -> str:
    head = ("family", "backend", "thr", "p50 ms", "p90 ms", "p99 ms", "RTF", "x torch", "cold ms", "peak MB",
            "size MB", "GFLOP/s", "% peak", "parity")
    lines = []
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append((r["family"], r["label"], str(r["threads"]), f"FAILED: {r['error']}"))
            continue
        lines.append((r["family"], r["label"], str(r["threads"]), _f(r["p50_ms"], ".2f"), _f(r["p90_ms"], ".2f"),
                      _f(r["p99_ms"], ".2f"), _f(r["rtf"], ".4f"), _f(r["speedup_vs_pytorch"], ".2f"),
                      _f(r["cold_start_ms"], ".0f"), _f(r["peak_rss_mb"], ".0f"),
                      _f(r["size_bytes"] / 2 ** 20 if r["size_bytes"] else None, ".2f"), _f(r["gflops"], ".2f"),
                      _f(r["peak_fraction"] * 100 if r["peak_fraction"] is not None else None, ".1f"),
                      {True: "ok", False: "FAIL", None: "-"}[r["parity"]]))
    widths = [max(len(head[i]), *(len(ln[i]) for ln in lines if len(ln) == len(head))) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), "  ".join("-" * w for w in widths)]
    for ln in lines:
        out.append(fmt(ln) if len(ln) == len(head) else "  ".join(c.ljust(w) for c, w in zip(ln[:3], widths))
                   + "  " + ln[3])
    m, w = result["machine"], result["workload"]
    notes = [f"machine: {m['cpu']} ({m['cores']} cores), python {m['versions']['python']}, torch "
             f"{m['versions'].get('torch')}, onnxruntime {m['versions'].get('onnxruntime')}; load average "
             f"{m['loadavg_start'][0]:.2f} -> {(m.get('loadavg_end') or [float('nan')])[0]:.2f}",
             f"workload: {_per(w['audio_s'], '.1f')}s of audio, {_per(w['chunks'], 'd')} chunks, {w['includes']}; median of "
             f"{w['repeats']} round-robin rounds"]
    used = {f"{r['label']} x{r['threads']}": r["provider"] for r in result["rows"] if r.get("provider")}
    if used:
        notes.append("ONNX Runtime execution provider used: " + "; ".join(f"{k} {v}" for k, v in used.items()))
    if result.get("peak_matmul_gflops_1thread"):
        notes.append(f"peak: {result['peak_matmul_gflops_1thread']:.1f} GFLOP/s (512x512 fp32 matmul, 1 thread; "
                     "% peak uses peak x threads)")
    if result.get("paired"):
        notes.append("paired speed-ups (per round: ratio of the two p50s; median [quartiles] over rounds): "
                     + "; ".join(f"{p['family']} x{p['threads']} {p['faster']} vs {p['than']} {p['median']:.2f}x "
                                 f"[{p['q25']:.2f}, {p['q75']:.2f}]" for p in result["paired"]))
    for fam, mi in result["models"].items():
        if mi.get("flops_per_audio_s"):
            notes.append(f"{fam}: {mi['parameters'] / 1e6:.2f}M parameters, "
                         f"{mi['flops_per_audio_s'] / 1e6:.1f} MFLOP per second of audio ({mi['source']}"
                         f"{'' if mi['trained'] else ', untrained'})")
        c = mi.get("int8_matmul_ceiling") or {}
        if c.get("ratio"):
            notes.append(f"{fam}: int8 ceiling: the encoder's {c['matmuls']} weight matmuls alone, at the rows "
                         f"one step gives them ({', '.join(map(str, c['rows_per_call']))}), take "
                         f"{c['fp32_ms']:.3f} ms fp32 vs {c['int8_ms']:.3f} ms int8 (ORT, 1 thread): "
                         f"{c['ratio']:.2f}x is the most dynamic int8 can speed up the step")
    return "\n".join(out + [""] + notes)


def chart_title(result: dict) -> str:
    """What a chart shows, so it can be read on its own: the model(s), the
    machine, the threads and the workload."""
    m, w = result["machine"], result["workload"]
    models = ", ".join(f"{fam} ({mi['source']}{'' if mi.get('trained', True) else ', untrained'})"
                       for fam, mi in result["models"].items())
    threads = ", ".join(str(t) for t in w["threads"])
    audio = w["audio_s"] if not isinstance(w["audio_s"], dict) else max(w["audio_s"].values())
    return (f"edge-bench: {models}\n{m['cpu']}, {m['cores']} cores; threads {threads}; "
            f"{audio:.0f} s of audio, median of {w['repeats']} rounds")


def plot(result: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [f"{r['family'][:4]} {r['label']} x{r['threads']}" for r in rows]
    ok = [r["status"] == "ok" for r in rows]
    val = lambda k: [r[k] if r["status"] == "ok" and r[k] is not None else 0.0 for r in rows]  # noqa: E731
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 4), 5.2))
    fig.suptitle(chart_title(result), fontsize=10)
    ax1.bar(x - 0.2, val("p50_ms"), 0.4, label="p50")
    ax1.bar(x + 0.2, val("p90_ms"), 0.4, label="p90")
    ax1.set_ylabel("latency per chunk (ms)")
    ax1.set_title("per-chunk latency (median of rounds)")
    ax1.legend()
    ax2.bar(x, val("peak_rss_mb"), 0.6, color="tab:green")
    ax2.set_ylabel("peak resident memory (MB)")
    ax2.set_title("peak memory (fresh process per backend)")
    for ax in (ax1, ax2):
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        for i, good in enumerate(ok):
            if not good:
                ax.text(i, 0, "failed", rotation=90, ha="center", va="bottom", fontsize=8, color="red")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- CLI -----------------------------------------------------------------------------

def build_parser():
    from edge.cliutil import add_family, add_model, add_verbose, make_parser

    ap = make_parser("edge-bench", __doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
    add_family(ap, default=None, extra=("all",), note=" (default: the --bundle's family, else conformer)")
    add_model(ap)
    ap.add_argument("--checkpoint", help="model checkpoint (default: the shipped one)")
    ap.add_argument("--bundle", help="use this bundle's artifacts instead of building them; with only "
                                     "artifact backends (no pytorch) the run is torch-free, e.g. on a Pi")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio seconds in the workload")
    ap.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    ap.add_argument("--backends", default=None,
                    help=f"comma list from {','.join(ALL_BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)}; "
                         "with --bundle and no PyTorch installed: the bundle's artifacts)")
    ap.add_argument("--providers", default=None, metavar="LIST",
                    help="ONNX Runtime execution providers in order, e.g. xnnpack,cpu (a missing one is skipped "
                         "with a notice; default: cpu)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="round-robin rounds")
    ap.add_argument("--parity-chunks", type=int, default=PARITY_CHUNKS, help="parity rollout of the bundle build")
    ap.add_argument("--no-subprocess", action="store_true", help="skip cold-start/memory children")
    ap.add_argument("--json", help="write the results as JSON")
    ap.add_argument("--png", help="write a chart (latency p50/p90, peak memory)")
    add_verbose(ap)
    return ap


def main(argv=None) -> int:
    import importlib.util

    from edge.cliutil import family_error, quiet_libraries, torch_side
    from edge.errors import UserError, fail
    from runtime_py.backends import BackendError
    from runtime_py.manifest import ManifestError

    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    error = family_error(args.family, extra=("all",))
    if error:
        return fail(error)
    try:
        has_torch = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        has_torch = False
    try:
        fams = list(FAMILIES) if args.family == "all" else [args.family or "conformer"]
        if args.model and (args.family or args.checkpoint):
            raise BenchError("--model is your own model; leave out --family/--checkpoint")
        if args.family == "all" and (args.checkpoint or args.bundle):
            raise BenchError("--checkpoint/--bundle name one model; pick one --family")
        backends = args.backends
        if args.bundle:
            from runtime_py.manifest import Bundle
            bundle = Bundle(args.bundle)
            fam = bundle.manifest["family"]
            if args.model is None and args.family is not None and fam != args.family:
                raise BenchError(f"bundle {args.bundle} holds a {fam!r} model, not {args.family!r}")
            fams = [fam]
            if backends is None and not has_torch:
                backends = [f"{b}:{p}" for b, p in bundle.backends() if b in ARTIFACT_BACKENDS]
                print(f"[bench] PyTorch is not installed: timing the bundle's artifacts {', '.join(backends)}",
                      file=sys.stderr)
        labels = parse_backends(backends or DEFAULT_BACKENDS)
        if args.providers:
            from runtime_py.backends import provider_names
            provider_names(args.providers)  # an unknown name is an error before any work
        if "pytorch" in labels or not args.bundle:
            code = torch_side("export", hint="; without it, time a bundle: edge-bench --bundle B --backends ort:fp32")
            if code:
                return code
        results = [run_bench(f, checkpoint=args.checkpoint, bundle=args.bundle, seconds=args.seconds,
                             model_factory=args.model,
                             threads=args.threads, backends=labels, repeats=args.repeats,
                             parity_chunks=args.parity_chunks, subprocesses=not args.no_subprocess,
                             providers=args.providers,
                             progress=lambda m: print(m, file=sys.stderr, flush=True)) for f in fams]
    except (BenchError, ManifestError, BackendError, UserError) as e:
        return fail(str(e))
    except ValueError as e:  # e.g. --threads 1,x
        return fail(f"{e}")
    result = merge_results(results)
    print(format_table(result))
    try:
        if args.json:
            print(f"wrote {write_json(result, args.json)}")
        if args.png:
            print(f"wrote {plot(result, args.png)}")
    except ImportError as e:
        return fail(f"--png needs matplotlib ({e.name} is not installed): pip install matplotlib")
    return 0


if __name__ == "__main__":
    sys.exit(main())
