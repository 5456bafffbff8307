"""edge-bench: latency, RTF (per chunk and end to end), cold start, memory, size and FLOP use per backend.

    edge-bench                                   # shipped conformer, pytorch vs ort fp32/int8 vs tflite fp32
    edge-bench --family all --threads 1,2 --json bench.json --png bench.png
    edge-bench --bundle dist/demo-conformer-rpi --backends pytorch,ort:fp32,ort:int8
    edge-bench --model examples/zipformer_factory.py:build --backends pytorch,ort:fp32,ort:int8,tflite:int8,sherpa-onnx

Every column runs the same audio (targets.bench.workload) end to end: the
fbank, then chunk by chunk the encoder step with its states carried and
greedy decoding. Columns (targets.bench.columns): PyTorch eager; a bundle's
ORT / TFLite artifacts through runtime_py (built here unless --bundle); and
with `sherpa-onnx`, sherpa-onnx's C++ recognizer on our sherpa-form export and
on the zipformer package's own export, plus our client on the very files
sherpa-onnx runs. Each column also runs in fresh processes for cold start
and peak memory (the median of --fresh-processes of them). The run ends with paired ratios and a Raspberry Pi estimate; the project's own
performance targets go to --json and docs/benchmarks.md, not to the terminal.
"""

from __future__ import annotations

import sys

from .artifacts import PARITY_CHUNKS
from .columns import ALIASES, ALL_BACKENDS, COLUMNS, ARTIFACT_BACKENDS, DEFAULT_BACKENDS, BenchError, parse_backends
from .run import FRESH_PROCESSES, REPEATS, merge_results, run_bench

FAMILIES = ("conformer", "lstm", "transducer")


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
                    help=f"comma list from {','.join(ALL_BACKENDS)}, or {','.join(ALIASES)} (default: {','.join(DEFAULT_BACKENDS)}; "
                         "with --bundle and no PyTorch installed: the bundle's artifacts)")
    ap.add_argument("--providers", default=None, metavar="LIST",
                    help="ONNX Runtime execution providers in order, e.g. xnnpack,cpu (a missing one is skipped "
                         "with a notice; default: cpu)")
    ap.add_argument("--repeats", type=int, default=REPEATS, help="round-robin rounds")
    ap.add_argument("--parity-chunks", type=int, default=PARITY_CHUNKS, help="parity rollout of the bundle build")
    ap.add_argument("--no-subprocess", action="store_true", help="skip cold-start/memory children")
    ap.add_argument("--fresh-processes", type=int, default=FRESH_PROCESSES, metavar="N",
                    help="cold start and peak memory: the median over N fresh processes per column "
                         f"(default {FRESH_PROCESSES}; one process's peak can be 30 MB off)")
    ap.add_argument("--streams", type=int, default=0, metavar="N",
                    help="also time N streams batched on one model against one stream alone (e.g. 4)")
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
                backends = [f"{b}:{p}" for b, p in bundle.backends()
                            if b in ARTIFACT_BACKENDS and f"{b}:{p}" in COLUMNS]
                print(f"[bench] PyTorch is not installed: timing the bundle's artifacts {', '.join(backends)}",
                      file=sys.stderr)
        labels = parse_backends(backends or DEFAULT_BACKENDS)
        if args.bundle:  # the timed files' own I/O against the manifest, before anything runs
            from runtime_py.backends import check_artifacts
            from .columns import split_label
            check_artifacts(bundle, {split_label(lb) for lb in labels if COLUMNS[lb].kind == "artifact"})
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
                             fresh_processes=args.fresh_processes,
                             providers=args.providers, streams=args.streams,
                             progress=lambda m: print(m, file=sys.stderr, flush=True)) for f in fams]
    except (BenchError, ManifestError, BackendError, UserError) as e:
        return fail(str(e))
    except ValueError as e:  # e.g. --threads 1,x
        return fail(f"{e}")
    result = merge_results(results)
    from .report import format_table, write_json

    print(format_table(result))
    try:
        if args.json:
            print(f"wrote {write_json(result, args.json)}")
        if args.png:
            from .plot import plot
            print(f"wrote {plot(result, args.png)}")
    except ImportError as e:
        return fail(f"--png needs matplotlib ({e.name} is not installed): pip install matplotlib")
    return 0


if __name__ == "__main__":
    sys.exit(main())
