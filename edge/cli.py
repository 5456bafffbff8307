"""edge-export: a model -> ONNX graphs with the signature embedded, checked
against PyTorch over a chunk rollout. The model is a built-in family (with a
checkpoint), or your own: --model FILE.py:factory (docs/bring-your-own-model.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cliutil import DEFAULT_FAMILY, add_family, add_model, add_verbose, make_parser, preflight
from .errors import UserError, fail, missing_extra


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("edge-export", __doc__)
    add_family(p, default=None, note=f" (default: {DEFAULT_FAMILY}, unless --model is given)")
    add_model(p)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint .pt (default: the shipped demo model, else a seeded untrained one)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder for <graph>.onnx")
    p.add_argument("--parity-chunks", dest="chunks", type=int, default=200, metavar="N",
                   help="chunks in the parity rollout (0 skips it)")
    p.add_argument("--chunks", dest="chunks", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old name
    p.add_argument("--dynamic-batch", action="store_true",
                   help="a batch axis on every graph, so one ONNX Runtime session runs several streams per call "
                        "(runtime_py.stream decode_streams); ONNX/ORT only")
    p.add_argument("--audio-in", action="store_true",
                   help="put the frontend in the encoder graph: it takes PCM samples (docs/audio-in.md)")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained model when no checkpoint exists")
    add_verbose(p)
    return p


def run(args) -> int:
    try:
        from .checkpoint import CheckpointError, load_or_init
        from .export import ExportError, check_onnx_parity, export_onnx
        from .families import get_family
    except ImportError as e:  # torch / onnx are the exporter's own dependencies
        return fail(str(missing_extra(e.name or "torch", "export")))

    if args.family and args.model:
        return fail("give either --family NAME (a built-in) or --model FILE.py:FACTORY (your own model), not both")
    try:
        if args.model:
            from .factory import load_model
            model = load_model(args.model)
            info = model.info() if hasattr(model, "info") else {"source": args.model}
        else:
            get_family(args.family or DEFAULT_FAMILY)
            model, info = load_or_init(args.family or DEFAULT_FAMILY, args.checkpoint, args.seed)
        if args.audio_in:
            from .audio_in import audio_in
            try:
                model = audio_in(model)
            except ValueError as e:  # a raw-sample model, dither on
                raise UserError(f"--audio-in: {e}") from None
        t0 = time.perf_counter()
        paths = export_onnx(model, args.output, dynamic_batch=args.dynamic_batch)
    except (KeyError, CheckpointError, ExportError, UserError) as e:
        return fail(e.args[0] if e.args else str(e))
    except OSError as e:  # the output folder cannot be written
        return fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    print(f"exported {model.signature().family} ({info['source']}) in {time.perf_counter() - t0:.1f}s")
    ok = True
    report = check_onnx_parity(model, paths, args.chunks, args.seed) if args.chunks > 0 else {}
    for name, path in paths.items():
        r = report.get(name)
        if r is None:
            print(f"  [-] {path}  (parity not checked)")
            continue
        ok &= r["passed"]
        mark = "✓" if r["passed"] else "x"
        print(f"  [{mark}] {path}  max|torch-onnx| = {r['max_abs_diff']:.2e} over {r['chunks']} chunks "
              f"(first chunk {r['first_chunk_diff']:.2e}, tolerance {r['tolerance']:.0e}); states: max abs "
              f"{r['state_max_abs_diff']:.2e}, scaled {r['state_max_scaled_diff']:.2e}")
    return 0 if ok else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return preflight(args) or run(args)


if __name__ == "__main__":
    sys.exit(main())
