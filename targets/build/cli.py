"""edge-build: one command from a model to a verified bundle for a device.

    edge-build --target rpi                       # shipped conformer -> dist/demo-conformer-rpi/
    edge-build --target android --family transducer  # -> dist/demo-transducer-audio-android/ (PCM in)
    edge-build --target ios --features-in          # the encoder takes fbank frames instead
    edge-build --list                             # targets, files and options

Every artifact is rolled out against PyTorch on speech features and the result
is written into the bundle's manifest; a failed parity fails the build unless
--keep-failed is given (the manifest then says failed).
"""

# This module is the command line (arguments, output folder, SIGTERM, summary);
# the build itself is targets/build/assemble.py.

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from edge.errors import UserError, fail, missing_extra
from ..backends import BACKENDS, all_precisions
from ..proofs import STREAM_BUDGET_S
from .assemble import AUDIO_SUFFIX, PARITY_CHUNKS, build_bundle
from .plan import DEFAULT_FAMILY, TARGETS, get_target, list_targets, parse_quant, takes_audio

def _rewrite_names() -> str:
    try:  # the rewrites' module needs onnx; without it --help still works and the build names the extra
        from ..ort_rewrite import NAMES
    except ImportError:
        return "the rewrites in docs/exporting.md"
    return ", ".join(NAMES)


def build_parser() -> argparse.ArgumentParser:
    from edge.cliutil import add_model, add_verbose, family_names, make_parser

    p = make_parser("edge-build", __doc__)
    p.add_argument("--list", action="store_true", help="print targets, their files and options, and exit")
    add_verbose(p)
    g = p.add_argument_group("what to build")
    g.add_argument("--target", help=" | ".join(TARGETS))
    g.add_argument("--family", help=f"a built-in demo model: {', '.join(family_names())} (default: {DEFAULT_FAMILY})")
    add_model(g)
    g.add_argument("--checkpoint", type=Path, help="checkpoint .pt (default: the shipped demo model)")
    g.add_argument("--onnx", type=Path, help="third-party streaming ONNX model with explicit state ports")
    g.add_argument("--spec", type=Path, help="JSON spec for --onnx (states, chunk, frontend...; "
                   "docs/bring-your-own-model.md lists its keys)")
    g.add_argument("--state", action="append", default=[], metavar="IN=OUT",
                   help="a state port pair of the --onnx model (repeatable)")
    g.add_argument("--quant", help="precisions to build, e.g. fp32,int8 or tflite:fp16 (default: the target's set); "
                   f"backends {', '.join(BACKENDS)}, precisions {', '.join(all_precisions())}")
    kind = g.add_mutually_exclusive_group()
    kind.add_argument("--audio-in", dest="audio_in", action="store_true", default=None,
                      help="put the frontend (kaldi fbank) in the encoder graph: the app feeds PCM samples, not "
                      "features (the default for android and ios; docs/audio-in.md)")
    kind.add_argument("--features-in", dest="audio_in", action="store_false",
                      help="the encoder takes fbank frames and the app computes them (the default for rpi)")
    g.add_argument("--name", help="bundle name (default: the --onnx spec's \"name\", else demo)")
    g.add_argument("--ort-rewrites", metavar="LIST", default=None,
                   help="our graph rewrites before ONNX Runtime makes the .ort files: default (each precision's "
                   "own), none, or a comma list of " + _rewrite_names() + "; the manifest's "
                   "conversion.route says which ran (docs/exporting.md)")
    o = p.add_argument_group("output and checks")
    o.add_argument("-o", "--output", type=Path, help="bundle folder (default: dist/<name>-<family>-<target>, -audio-<target> for PCM in)")
    o.add_argument("--parity-chunks", type=int, default=PARITY_CHUNKS,
                   help="chunks in each parity rollout (default: %(default)s)")
    o.add_argument("--proof-budget", type=float, default=None, metavar="SECONDS",
                   help="compute the stream proof may spend comparing the graph with the reference over an hour "
                   "of audio; a slow model is checked for the stretch that fits, and the card says so "
                   f"(default: {STREAM_BUDGET_S:.0f})")
    o.add_argument("--keep-failed", action="store_true", help="write the bundle even if parity fails (marked failed)")
    o.add_argument("--force", action="store_true",
                   help="-o names an existing folder that is not a bundle: move it aside (renamed, never deleted)")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: no partial folder, previous bundle kept


def main(argv=None) -> int:
    # SIGTERM cleans up like Ctrl-C, for this call only: the previous handler is
    # put back, so a caller (a test run, an app embedding edge-build) and the
    # processes it forks later do not inherit a handler that raises.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        return _main(argv)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from edge.cliutil import quiet_libraries

    quiet_libraries(args.verbose)
    if args.list:
        print(list_targets())
        return 0
    if not args.target:
        return fail(f"--target is required ({' | '.join(TARGETS)}); see edge-build --list")
    if args.parity_chunks < 1:
        return fail("--parity-chunks must be at least 1")
    if args.proof_budget is not None and not args.proof_budget > 0:
        return fail("--proof-budget must be a positive number of seconds")
    try:  # a mistyped target, precision, rewrite or family is reported before torch is imported (2 s)
        pairs = parse_quant(get_target(args.target), args.quant)  # --quant is read here, once
        ort_rewrites = None
        if args.ort_rewrites is not None:
            from ..ort_rewrite import parse_names
            ort_rewrites = parse_names(args.ort_rewrites)
    except UserError as e:
        return fail(str(e))
    from edge.cliutil import family_error

    if not args.onnx and family_error(args.family):
        return fail(family_error(args.family))
    if args.audio_in and args.onnx:
        return fail("--audio-in builds the frontend into a PyTorch model's graph; a third-party ONNX model "
                    "(--onnx) keeps its own input")
    if args.model and (args.family or args.checkpoint or args.onnx):
        return fail("--model is your own model; leave out --family/--checkpoint/--onnx (the factory loads it)")
    try:
        from edge.checkpoint import CheckpointError
        from edge.export import ExportError
        from runtime_py.stateloop import RolloutError
    except ImportError as e:  # torch / onnx: the exporter's own dependencies
        return fail(str(missing_extra(e.name or "torch", "export")))
    from ..bundle import check_output_dir, move_aside

    model = None
    if args.model:  # the factory names the model, and so the default output folder
        from edge.factory import load_model
        try:
            model = load_model(args.model)
        except UserError as e:
            return fail(str(e))
    spec = None
    if args.onnx or args.spec or args.state:
        from ..thirdparty import load_spec
        if not args.onnx:
            return fail("--spec/--state describe a third-party model given with --onnx FILE")
        try:
            spec = load_spec(args.spec, args.state)
        except UserError as e:
            return fail(str(e))
    family = model.signature().family if model is not None else args.family or DEFAULT_FAMILY
    if spec is not None:
        family = spec.get("family", "thirdparty")
    name = args.name or (spec or {}).get("name") or "demo"
    from edge.roles import NAME
    if spec is not None and not NAME.match(name):
        return fail(f"spec \"name\" {name!r} must be letters, digits, _ and . (as edge.declare's; it names the "
                    "bundle)")
    audio_in = takes_audio(get_target(args.target), args.audio_in, model.signature() if model is not None else None,
                           onnx=bool(args.onnx))
    suffix = AUDIO_SUFFIX if audio_in else ""
    out_dir = args.output or Path("dist") / f"{name}-{family}{suffix}-{args.target}"
    moved = None
    try:  # before any work: never build towards a folder we may not replace
        if check_output_dir(out_dir, force=args.force):
            moved = move_aside(out_dir)
            print(f"  --force: moved the existing {out_dir} to {moved} (nothing deleted)", flush=True)
    except UserError as e:
        return fail(str(e))
    t0 = time.perf_counter()
    try:
        from ..progress import StepProgress

        progress = StepProgress(steps=len(pairs))
        try:
            out = build_bundle(None if model is not None else family, args.target, out_dir, model=model,
                               checkpoint=args.checkpoint, name=name, onnx_model=args.onnx, spec=spec,
                               backends=pairs if args.quant else None,  # named pairs: a failure is an error
                               keep_failed=args.keep_failed, parity_chunks=args.parity_chunks,
                               progress=progress, stream_budget_s=args.proof_budget, audio_in=audio_in,
                               ort_rewrites=ort_rewrites)
        finally:
            progress.close()
    except (UserError, CheckpointError, ExportError, RolloutError) as e:
        return fail(str(e))
    except OSError as e:  # the output folder is not writable, the disk is full, ...
        where = f"{e.filename}: " if e.filename else ""
        return fail(f"{where}{e.strerror or e}; no partial bundle was left and any previous bundle is intact")
    except KeyboardInterrupt:
        return fail("interrupted; no partial bundle was left and any previous bundle is intact", 130)
    finally:
        if moved is not None and not Path(out_dir).exists():  # the build failed: put the folder back
            os.replace(moved, out_dir)
    from runtime_py.manifest import load_bundle
    bundle = load_bundle(out)
    size = sum(a.bytes for a in bundle.artifacts)
    from ..loads import not_converted_line
    missing = not_converted_line(bundle.manifest, bundle.artifacts)
    print(f"built {out}/ : {len(bundle.artifacts)} model files, {size / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.0f}s. " + (f"{missing}. " if missing else "")
          + f"Next: edge-verify {out} && edge-demo {out} --wav FILE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
