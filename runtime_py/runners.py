"""The client's two runners, ONNX Runtime and LiteRT: `run(feeds) -> dict`
over one model file, keyed by the signature's names (the one runner
signature, runtime_py/formats.py). The formats table names them by function;
runtime_py/backends.py opens a bundle's files through the table.

- `ort_runner` ("onnx" / "ort"): an onnxruntime InferenceSession (`.onnx`
  and `.ort` files load the same way) on an ordered list of execution
  providers, CPU by default (what the parity checks verified). A provider
  this onnxruntime build lacks is skipped with one `ProviderFallback`
  warning; `run.provider` names the one used;
- `tflite_runner` ("tflite"): an ai_edge_litert Interpreter through its
  signature runner (names matched as backends.py's module doc says; `strict`
  accepts only the "serving_default" signature with the signature's names).

The runtime packages are optional imports: a missing one is an ImportError
naming the pip command. Torch-free.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from pathlib import Path

import numpy as np

from .modelio import first_disagreement, ort_io, tflite_tensor
from .signature import GraphSpec

PIP_NAMES = {"onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert"}
# Short names for ONNX Runtime's execution providers (the long names work too).
PROVIDERS = {"xnnpack": "XnnpackExecutionProvider", "nnapi": "NnapiExecutionProvider",
             "coreml": "CoreMLExecutionProvider", "qnn": "QNNExecutionProvider",
             "cuda": "CUDAExecutionProvider", "dml": "DmlExecutionProvider", "cpu": "CPUExecutionProvider"}
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


class BackendError(RuntimeError):
    """An artifact cannot be opened or does not match its signature."""


class IOMismatch(BackendError):
    """A model file's own inputs/outputs are not the graph declared for it
    (runtime_py.modelio): the manifest does not describe its model files."""


def check_io(graph: GraphSpec, inputs, outputs, path: Path, backend: str) -> None:
    problem = first_disagreement(graph, inputs, outputs, Path(path).name, backend)
    if problem:
        raise IOMismatch(problem)


class ProviderFallback(UserWarning):
    """An execution provider asked for is not in this onnxruntime build."""


def provider_names(spec) -> list[str]:
    """'xnnpack,cpu' or a list -> ONNX Runtime's provider names, in order."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    out = []
    for item in items:
        name = PROVIDERS.get(item.lower(), item)
        if not name.endswith("ExecutionProvider"):
            raise BackendError(f"unknown execution provider {item!r}; use {', '.join(PROVIDERS)} or "
                               "onnxruntime's full name (…ExecutionProvider)")
        if name not in out:
            out.append(name)
    if not out:
        raise BackendError("no execution provider given")
    return out


def usable_providers(wanted, available) -> list[str]:
    """The wanted providers this build has, in order, CPU last as the
    fallback; one ProviderFallback warning per provider that is missing."""
    wanted = provider_names(wanted)
    have = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if "CPUExecutionProvider" not in have:
        have.append("CPUExecutionProvider")
    if missing:
        import warnings

        warnings.warn(ProviderFallback(
            f"{', '.join(missing)} not in this onnxruntime build (it has {', '.join(available)}); "
            f"using {have[0]}"), stacklevel=3)
    return have


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pip = PIP_NAMES.get(module.split(".")[0], module)
        raise ImportError(f"{module} is not installed; install it with: pip install {pip}") from e


def ort_runner(path: Path, graph: GraphSpec, threads: int = 1, strict: bool = False, providers=None):
    """The "ort" and "onnx" rows' runner (`strict` has nothing to add: ORT checks names itself)."""
    return _ort_runner(Path(path), graph, threads, providers or DEFAULT_PROVIDERS)


def tflite_runner(path: Path, graph: GraphSpec, threads: int = 1, strict: bool = False, providers=None):
    """The "tflite" row's runner (no execution providers in LiteRT)."""
    return _tflite_runner(Path(path), graph, threads, strict)


# -- ONNX Runtime ---------------------------------------------------------------

# ONNX Runtime's session config entry that stops intra-op pool workers spinning between ops
# (onnxruntime_session_options_config_keys.h). The client leaves spinning on (ORT's default); the model
# card names this entry for an app whose cores are busy with other work.
SPINNING_OFF = ("session.intra_op.allow_spinning", "0")
# A transducer's decoder and joiner run one row per call, many times a chunk: a thread pool there only
# adds wake-ups (and its spinning workers take the cores the encoder's need), so they get one thread.
PER_TOKEN_GRAPHS = ("decoder", "joiner")


def graph_threads(graph_name: str, threads: int) -> int:
    """The intra-op threads a graph's session gets when the client runs `threads`: the encoder (any chunk
    graph) all of them, the per-token graphs one. Measured on 2 free cores, 23.6 M Zipformer fp32, whole
    client pass, 2 threads against 1: 1.20x this way, 0.57x with every session spinning on 2 threads,
    0.93-0.95x with spinning off (docs/benchmarks.md, "Threads")."""
    return 1 if graph_name in PER_TOKEN_GRAPHS else threads


def ort_session_options(ort, threads: int, xnnpack: bool = False):
    """The client's onnxruntime SessionOptions: the one place every session
    of ours is configured (the client, edge-bench's columns, the parity
    rollouts). XNNPACK runs its own thread pool: it gets the threads and
    ORT's pool stays at 1 (ORT's recommendation). Spinning is ORT's default
    (on): with more than one thread the pool's workers wait for the next op
    spinning, which is what makes a second thread pay on free cores; on
    cores busy with other work the same workers cost (2 threads 0.75x of 1
    there), and one thread, the default, has no pool at all."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1 if xnnpack else threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def _ort_runner(path: Path, graph: GraphSpec, threads: int, providers=DEFAULT_PROVIDERS):
    ort = _require("onnxruntime")
    chosen = usable_providers(providers, ort.get_available_providers())
    opts = ort_session_options(ort, threads, "XnnpackExecutionProvider" in chosen)
    options = [{"intra_op_num_threads": threads} if p == "XnnpackExecutionProvider" else {} for p in chosen]
    try:
        sess = ort.InferenceSession(str(path), opts, providers=chosen, provider_options=options)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise BackendError(f"{path.name}: onnxruntime cannot load it: {e}") from None
    check_io(graph, *ort_io(sess), path, "ort")
    in_specs = graph.all_inputs()
    out_names = graph.output_names

    def run(feeds: dict) -> dict:
        x = {t.name: np.asarray(feeds[t.name], dtype=t.dtype) for t in in_specs}
        return dict(zip(out_names, sess.run(out_names, x)))

    run.session = sess
    run.provider = sess.get_providers()[0]
    return run


# -- LiteRT ---------------------------------------------------------------------

def _norm(name: str) -> str:
    """onnx2tf / TF sanitise names: 'sub1_cache:0', 'serving_default_X:0' ..."""
    name = name.split(":")[0].lower()
    for prefix in ("serving_default_",):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return re.sub(r"[^0-9a-z]+", "_", name).strip("_")


def match_names(want: list[tuple[str, int]], have: list[tuple[str, int]], what: str) -> dict[str, str]:
    """Map each wanted (name, size) to a model name: exact, normalised,
    unique size, then position. Raises IOMismatch when it cannot."""
    if len(want) != len(have):
        raise IOMismatch(f"{what}: the model has {len(have)} tensors {[h for h, _ in have]}, "
                           f"the signature declares {len(want)} {[w for w, _ in want]}")
    have_names = [h for h, _ in have]
    sizes = dict(have)
    out: dict[str, str] = {}
    left = []
    for name, size in want:
        if name in sizes:
            out[name] = name
            continue
        hits = [h for h in have_names if _norm(h) == _norm(name)]
        if len(hits) == 1:
            out[name] = hits[0]
        else:
            left.append((name, size))
    free = [h for h in have_names if h not in out.values()]
    for name, size in list(left):
        same = [h for h in free if sizes[h] == size]
        if len(same) == 1 and sum(1 for _, s in left if s == size) == 1:
            out[name] = same[0]
            free.remove(same[0])
            left.remove((name, size))
    if left:
        # Last resort: the declared order. Sizes must still agree.
        if all(sizes[h] == s for h, (_, s) in zip(free, left)):
            out.update({n: h for (n, _), h in zip(left, free)})
        else:
            raise IOMismatch(f"{what}: cannot match {[n for n, _ in left]} to the model's {free} "
                               "by name, size or order; rebuild the artifact")
    return out


TFLITE_SIGNATURE = "serving_default"  # the signature key targets.tflite writes


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what C++ code prints on file descriptor 2 for the duration (e.g.
    LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
    unless EDGE_SPEECH_VERBOSE is set (the commands' --verbose). Errors still
    arrive as Python exceptions."""
    if os.environ.get("EDGE_SPEECH_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding app): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _strict_names(path: Path, graph: GraphSpec, in_details: dict, out_details: dict) -> None:
    missing = ([t.name for t in graph.all_inputs() if t.name not in in_details]
               + [t.name for t in graph.all_outputs() if t.name not in out_details])
    if missing:
        raise IOMismatch(f"{path.name}: signature lacks {missing}; has inputs {sorted(in_details)}, "
                           f"outputs {sorted(out_details)}")


def _tflite_runner(path: Path, graph: GraphSpec, threads: int, strict: bool = False):
    litert = _require("ai_edge_litert.interpreter")
    try:
        interp = litert.Interpreter(model_path=str(path), num_threads=threads)
    except Exception as e:
        raise BackendError(f"{path.name}: LiteRT cannot load it: {e}") from None
    sigs = interp.get_signature_list()
    if not sigs:
        raise BackendError(f"{path.name}: the .tflite file has no signature; convert it with a signature")
    if strict and TFLITE_SIGNATURE not in sigs:
        raise BackendError(f"{path.name}: no {TFLITE_SIGNATURE!r} signature (have {sorted(sigs)}); "
                           "it was not written by targets.tflite")
    key = TFLITE_SIGNATURE if TFLITE_SIGNATURE in sigs else sorted(sigs)[0]
    runner = interp.get_signature_runner(key)
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    in_specs, out_specs = graph.all_inputs(), graph.all_outputs()
    if strict:
        _strict_names(path, graph, in_details, out_details)
        in_map = {t.name: t.name for t in in_specs}
        out_map = {t.name: t.name for t in out_specs}
    else:
        size = lambda d: int(np.prod(d["shape"]))  # noqa: E731
        in_map = match_names([(t.name, int(np.prod(t.shape))) for t in in_specs],
                             [(n, size(d)) for n, d in in_details.items()], f"{path.name} inputs")
        out_map = match_names([(t.name, int(np.prod(t.shape))) for t in out_specs],
                              [(n, size(d)) for n, d in out_details.items()], f"{path.name} outputs")
    check_io(graph, [tflite_tensor(t.name, in_details[in_map[t.name]]) for t in in_specs],
             [tflite_tensor(t.name, out_details[out_map[t.name]]) for t in out_specs], path, "tflite")

    first = [True]

    def run(feeds: dict) -> dict:
        kwargs = {}
        for t in in_specs:
            d = in_details[in_map[t.name]]
            kwargs[in_map[t.name]] = np.asarray(feeds[t.name]).astype(d["dtype"], copy=False).reshape(d["shape"])
        if first[0]:  # LiteRT applies its XNNPACK delegate here and says so on the C++ stderr
            first[0] = False
            with native_stderr_silenced():
                res = runner(**kwargs)
        else:
            res = runner(**kwargs)
        return {t.name: np.asarray(res[out_map[t.name]]).astype(t.dtype, copy=False).reshape(t.shape)
                for t in out_specs}

    run.interpreter = interp
    return run
