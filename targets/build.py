"""edge-build: one command from a model to a verified bundle for a device.

    edge-build --target rpi                       # shipped conformer -> dist/demo-conformer-rpi/
    edge-build --target android --family transducer
    edge-build --list                             # targets, files and options

Every artifact is rolled out against PyTorch on speech features and the result
is written into the bundle's manifest; a failed parity fails the build unless
--keep-failed is given (the manifest then says failed).
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.cliutil import unknown
from edge.errors import UserError, fail, missing_extra

DEFAULT_FAMILY = "conformer"
PARITY_CHUNKS = 200


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    default: tuple[tuple[str, str], ...]  # (backend, precision) built by default
    allowed: tuple[tuple[str, str], ...]
    runtime: str


TARGETS = {
    "rpi": Target("rpi", "Raspberry Pi (64-bit OS): ONNX Runtime, optionally LiteRT",
                  default=(("ort", "fp32"), ("ort", "int8"), ("tflite", "fp32")),
                  allowed=(("ort", "fp32"), ("ort", "int8"), ("tflite", "fp32"), ("tflite", "fp16"),
                           ("tflite", "int8"), ("onnx", "fp32")),
                  runtime="edge-demo BUNDLE --wav FILE (install: pip install -e '.[runtime]', docs/install.md)"),
    "android": Target("android", "Android: LiteRT (TFLite) and ONNX Runtime Mobile",
                      default=(("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("ort", "fp32"),
                               ("ort", "int8")),
                      allowed=(("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("ort", "fp32"),
                               ("ort", "int8"), ("onnx", "fp32")),
                      runtime="org.tensorflow:tensorflow-lite Interpreter / onnxruntime-android OrtSession"),
    "ios": Target("ios", "iOS: CoreML ML program and ONNX Runtime Mobile",
                  default=(("coreml", "fp16"), ("coreml", "fp32"), ("ort", "fp32"), ("ort", "int8")),
                  allowed=(("coreml", "fp16"), ("coreml", "fp32"), ("ort", "fp32"), ("ort", "int8"),
                           ("onnx", "fp32")),
                  runtime="CoreML MLModel.prediction / onnxruntime-objc ORTSession"),
}

SUFFIX = {"ort": ".ort", "tflite": ".tflite", "coreml": ".mlpackage", "onnx": ".onnx"}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        close = difflib.get_close_matches(name, TARGETS, n=1, cutoff=0.3)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown target {name!r}.{hint} Targets: {', '.join(TARGETS)} (see edge-build --list)")
    return TARGETS[name]


def parse_quant(target: Target, quant: str | None) -> tuple[tuple[str, str], ...]:
    """--quant fp32,int8 keeps those precisions of the target's defaults;
    'tflite:fp16' names one backend/precision pair explicitly."""
    if not quant:
        return target.default
    chosen = []
    known = sorted({p for _, p in target.allowed})
    for item in [q.strip() for q in quant.split(",") if q.strip()]:
        backend, _, precision = item.rpartition(":")
        if precision not in known:
            # no "did you mean": int4 is not a typo of int8, and a silent int8 is not what was asked
            raise UserError(f"--quant {item!r}: unknown precision {precision!r}. Known: {', '.join(known)}"
                            + f" (target {target.name}: " + ", ".join(f"{b}:{p}" for b, p in target.allowed) + ")")
        if backend and backend not in SUFFIX:
            raise UserError(f"--quant {item!r}: " + unknown("backend", backend, SUFFIX))
        if ":" in item:
            pair = tuple(item.split(":", 1))
            if pair not in target.allowed:
                raise UserError(f"--quant {item!r} is not available for target {target.name}; allowed: "
                                + ", ".join(f"{b}:{p}" for b, p in target.allowed))
            chosen.append(pair)
        else:
            pairs = [bp for bp in target.default if bp[1] == item]
            if not pairs:
                raise UserError(f"--quant {item!r}: target {target.name} builds precisions "
                                f"{sorted({p for _, p in target.default})} by default; name a pair like "
                                "tflite:fp16 for others")
            chosen += pairs
    return tuple(dict.fromkeys(chosen))


def _tokens_for(info: dict, vocab_size: int) -> list[str]:
    tokens = list(info.get("tokens") or [])
    if not tokens:
        try:
            from edge.data.corpus import tokens as corpus_tokens
            tokens = corpus_tokens()
        except ImportError:
            tokens = []
    if len(tokens) != vocab_size:
        tokens = ["<blk>"] + [f"\u2581t{i}" for i in range(1, vocab_size)]
    return tokens


# The optional packages each backend's conversion needs, with the extra that installs them.
BACKEND_DEPENDENCIES = {
    "ort": (("onnxruntime", "runtime"),),
    "onnx": (("onnx", "export"),),
    "tflite": (("onnx2tf", "tflite"), ("tensorflow", "tflite"), ("onnxsim", "tflite")),
    "coreml": (("coremltools", "coreml"),),
}
from .conversion_errors import ConversionError, conversion_error, failed_operation  # noqa: E402,F401 (re-exported)


def check_backends(pairs) -> None:
    """Fail before any work when a backend's converter is not installed."""
    from .common import ensure_installed

    for backend in dict.fromkeys(b for b, _ in pairs):
        for module, extra in BACKEND_DEPENDENCIES.get(backend, ()):
            try:
                ensure_installed(module, extra)
            except UserError as e:
                raise UserError(f"cannot build {backend} artifacts: {e.args[0]}") from None


def _convert(backend: str, precision: str, model, signature, onnx_paths: dict, work: Path,
             out_dir: Path, calibration: list[np.ndarray]) -> dict[str, Path]:
    """Convert every graph for one (backend, precision); returns graph -> file.
    A converter's failure becomes a ConversionError naming the operation
    (when the converter says which), the graph, the target and a fix."""
    if backend not in SUFFIX:
        raise UserError(f"unknown backend {backend!r}")
    out = {}
    for g, p in onnx_paths.items():
        try:
            out[g] = _convert_graph(backend, precision, model, signature, g, p, work, out_dir, calibration)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - every converter has its own exception types
            raise conversion_error(e, backend, precision, g) from e
    return out


def _convert_graph(backend: str, precision: str, model, signature, g: str, onnx_path: Path, work: Path,
                   out_dir: Path, calibration: list[np.ndarray]) -> Path:
    if backend == "onnx":
        import shutil
        return Path(shutil.copy(onnx_path, out_dir / f"{g}.fp32.onnx"))
    if backend == "ort":
        from . import ort
        graph = signature.graph(g) if signature is not None else None  # None: dynamic int8 only
        return ort.to_ort(onnx_path, out_dir, precision, graph, signature)
    if backend == "tflite":
        from . import tflite
        graph = signature.graph(g)
        calib = [{graph.inputs[0].name: c} for c in calibration] if g == "encoder" else None
        made = tflite.onnx_to_tflite(onnx_path, graph, work / f"tflite-{g}-{precision}", precisions=(precision,),
                                     calibration=calib)
        dst = out_dir / f"{g}.{precision}.tflite"
        made[precision].replace(dst)
        return dst
    from . import coreml
    return coreml.to_coreml(model, signature.graph(g), signature, out_dir, precision)


def _runners(backend: str, files: dict[str, Path], signature) -> dict:
    if backend in ("onnx", "ort"):
        from . import ort
        return {g: ort.runner(p, signature.graph(g)) for g, p in files.items()}
    if backend == "tflite":
        from . import tflite
        return {g: tflite.runner(p, signature.graph(g)) for g, p in files.items()}
    raise ValueError(f"backend {backend!r} cannot run on this host")


@dataclass
class Source:
    """What a bundle is built from: the signature, the reference each artifact
    is checked against, and how to get the ONNX graphs."""

    signature: object
    reference: dict  # graph name -> run(feeds) -> dict
    reference_name: str
    onnx: callable  # work dir -> {graph: Path}
    info: dict
    torch_model: object = None  # needed for CoreML (coremltools converts from PyTorch)

    @classmethod
    def from_model(cls, model, info: dict) -> "Source":
        from edge.export import export_onnx, torch_runner

        model = model.eval()
        sig = model.signature()
        return cls(sig, {g.name: torch_runner(model, g) for g in sig.graphs}, "pytorch",
                   lambda work: export_onnx(model, work / "onnx"), info, model)

    @classmethod
    def from_onnx(cls, onnx_path: Path, spec: dict, work: Path) -> "Source":
        from . import ort, thirdparty

        path, sig = thirdparty.normalise(onnx_path, spec, work / "source" / "encoder.onnx")
        info = {"source": f"onnx:{Path(onnx_path).name}", "tokens": spec.get("tokens_list", []),
                "meta": {"trained": bool(spec.get("trained", True)), "thirdparty": True}}
        paths = {g.name: path.parent / f"{g.name}.onnx" for g in sig.graphs}  # a transducer's three graphs
        return cls(sig, {g.name: ort.runner(paths[g.name], g) for g in sig.graphs}, "source-onnx (onnxruntime)",
                   lambda _work: paths, info)


def build_bundle(family: str | None = DEFAULT_FAMILY, target: str = "rpi", out_dir: Path | str | None = None, *,
                 model=None, checkpoint: Path | str | None = None, onnx_model: Path | str | None = None,
                 spec: dict | None = None, name: str = "demo", backends=None, quant: str | None = None,
                 keep_failed: bool = False, parity_chunks: int = PARITY_CHUNKS, progress=None,
                 stream_seconds: float | None = None) -> Path:
    """Build dist/<name>-<family>-<target>/ and return its path. The model is
    `model` (in memory: a built-in family's model, or a user's model from
    edge.declare), else `onnx_model` + `spec` (third-party ONNX with state
    ports), else `checkpoint`, else the shipped one for `family`.
    `stream_seconds`: how long the streaming-duration check rolls the ORT
    graph (default: an hour, or the model's declared max_duration_s)."""
    from edge.checkpoint import load_or_init
    from edge.families import get_family

    tgt = get_target(target)
    pairs = tuple(backends) if backends else parse_quant(tgt, quant)
    check_backends(pairs)
    with tempfile.TemporaryDirectory(prefix="edge-build-") as work_s:
        work = Path(work_s)
        if onnx_model is not None:
            source = Source.from_onnx(Path(onnx_model), spec or {}, work)
            family = source.signature.family
            if any(b == "coreml" for b, _ in pairs):
                if backends or quant:
                    raise UserError("CoreML converts from PyTorch only; a third-party ONNX model can go to "
                                    "ort and tflite (use --quant ort:fp32,...)")
                pairs = tuple(bp for bp in pairs if bp[0] != "coreml")
        else:
            if model is None:
                try:
                    get_family(family)
                except KeyError as e:
                    raise UserError(e.args[0]) from None
                model, info = load_or_init(family, checkpoint)
            elif hasattr(model, "info"):  # a declared model says where it came from, its tokens, if trained
                info = model.info()
            else:
                info = {"source": "in-memory model", "tokens": [], "meta": {"trained": False}}
            declared = model.signature().family
            if family is not None and family != declared and not hasattr(model, "info"):
                raise UserError(f"model is a {declared!r}, not {family!r}")
            family = declared
            source = Source.from_model(model, info)
        out = Path(out_dir) if out_dir else Path("dist") / f"{name}-{family}-{target}"
        return _build(source, tgt, pairs, out, work, name, keep_failed, parity_chunks, progress, stream_seconds,
                      explicit=bool(backends or quant))


def _build(source: Source, tgt: Target, pairs, out: Path, work: Path, name: str, keep_failed: bool,
           parity_chunks: int, progress, stream_seconds: float | None = None, explicit: bool = True) -> Path:
    from runtime_py.audio import read_wav, write_wav
    from runtime_py.decoding import tokens_to_text
    from runtime_py.frontend import compute_features
    from runtime_py.stateloop import StateLoop

    from . import golden as gold
    from .bundle import BundleWriter, tool_versions
    from .modelcard import model_card
    from .parity import check_set, decode_tokens

    say = progress or (lambda msg: None)
    signature, reference, info = source.signature, source.reference, source.info
    tokens = _tokens_for(info, signature.vocab_size)
    trained = bool(info.get("meta", {}).get("trained", False))
    speech = gold.parity_stream(signature, parity_chunks)
    ref_tokens = decode_tokens(signature, reference, speech)
    say(f"model {signature.family} ({info['source']}); parity stream {len(speech)} chunks, "
        f"{source.reference_name} decodes {len(ref_tokens)} tokens")

    failed, not_converted = [], []
    with BundleWriter(out) as bw:
        onnx_paths = source.onnx(work)
        for backend, precision in pairs:
            t0 = time.perf_counter()
            say(f"{backend} {precision}: converting {len(onnx_paths)} graph(s)...")
            earlier = next((nc for nc in not_converted if nc["backend"] == backend), None)
            try:
                if earlier:  # every precision of a backend starts from the same conversion: do not retry it
                    raise ConversionError(f"not tried: {backend} {earlier['precision']} did not convert "
                                          f"(same converter)\n{earlier['reason']}")
                files = _convert(backend, precision, source.torch_model, signature, onnx_paths, work, bw.tmp,
                                 speech[:50])
            except ConversionError as e:
                if explicit:  # the user asked for this one: fail, saying why
                    raise
                # a target default that does not convert: left out, and said so (manifest, card, output)
                not_converted.append({"backend": backend, "precision": precision, "reason": str(e)})
                lines = str(e).splitlines()
                say(f"{backend} {precision}: NOT CONVERTED, left out of the bundle: {lines[0]}"
                    + "".join(f"\n    {ln.strip()}" for ln in lines[1:3] if not earlier))
                continue
            if backend == "coreml":
                from . import coreml
                for g, p in files.items():
                    bw.add_artifact(p.name, g, backend, precision, coreml.inspect_mlpackage(p, signature.graph(g)))
                say(f"{backend} {precision}: spec verified, numerics not run (CoreML does not execute on Linux) "
                    f"[{time.perf_counter() - t0:.1f}s]")
                continue
            records = check_set(signature, reference, _runners(backend, files, signature), precision,
                                speech, parity_chunks, ref_tokens, trained=trained)
            if precision == "int8":
                _check_quantised(backend, files, records)
            for g, p in files.items():
                records[g]["reference"] = source.reference_name
                bw.add_artifact(p.name, g, backend, precision, records[g])
                if not records[g]["passed"]:
                    failed.append(f"{p.name}: {_describe(records[g])}")
            say(f"{backend} {precision}: " + "; ".join(f"{g} {_describe(r)}" for g, r in records.items())
                + f" [{time.perf_counter() - t0:.1f}s]")
        if any(b == "ort" for b, _ in pairs):
            from . import ort
            ort.required_operators_config(sorted(bw.tmp.glob("*.ort")), bw.path("required_operators.config"))
            bw.add_file("required_operators.config")
        proofs = _proofs(source, signature, onnx_paths, speech, stream_seconds, say)
        if failed and not keep_failed:
            raise UserError("parity failed, bundle not written (use --keep-failed to keep it, marked failed):\n  "
                            + "\n  ".join(failed))

        # golden files: a short utterance, its features, encoder chunks and the reference's outputs
        gname, audio = gold.golden_audio(signature)
        rate = signature.frontend.sample_rate
        write_wav(bw.path("golden/audio.wav"), audio, rate)
        audio, _ = read_wav(bw.path("golden/audio.wav"))  # features of what the file holds (16-bit)
        feats = compute_features(gold.with_tail(audio, rate), signature.frontend)
        np.save(bw.path("golden/features.npy"), feats)
        chunks = gold.feature_chunks(feats, signature)
        enc = signature.graph("encoder")
        loop = StateLoop(enc, reference["encoder"])
        outputs = [loop.step({enc.inputs[0].name: c}) for c in chunks]
        _savez(bw.path("golden/encoder_inputs.npz"), {f"{enc.inputs[0].name}_{i:04d}": c for i, c in enumerate(chunks)})
        _savez(bw.path("golden/encoder_outputs.npz"),
               {f"{k}_{i:04d}": v for i, o in enumerate(outputs) for k, v in o.items()})
        text = tokens_to_text(decode_tokens(signature, reference, chunks), tokens)
        bw.write_text("golden/transcript.txt", text + "\n")
        for rel in ("golden/audio.wav", "golden/features.npy", "golden/encoder_inputs.npz",
                    "golden/encoder_outputs.npz"):
            bw.add_file(rel)
        bw.write_text("tokens.txt", "".join(f"{t} {i}\n" for i, t in enumerate(tokens)))

        manifest = {
            "name": name, "family": signature.family, "target": tgt.name,
            "signature": signature.to_dict(),
            "model": {"source": info["source"], "trained": trained, "reference": source.reference_name,
                      "note": "" if trained else "UNTRAINED: seeded random weights; outputs are meaningless"},
            "tokens": "tokens.txt",
            "tools": tool_versions(),
            "golden": {"audio": "golden/audio.wav", "utterance": gname, "features": "golden/features.npy",
                       "inputs": {"encoder": "golden/encoder_inputs.npz"},
                       "outputs": {"encoder": "golden/encoder_outputs.npz"},
                       "transcript": "golden/transcript.txt", "chunks": len(chunks)},
            "proofs": proofs,
            "not_converted": not_converted,
            "parity_stream": {"chunks": parity_chunks, "reference_tokens": len(ref_tokens),
                              "source": "shipped sample utterances with seeded gain/noise"
                              if gold.sample_utterances(rate) else "synthetic harmonic signal"},
        }
        bw.write_text("README.md", model_card(manifest, bw.artifacts, tgt, tokens=tokens))
        bw.commit(manifest)
    return out


def _proofs(source: Source, signature, onnx_paths: dict, speech: list, stream_seconds: float | None,
            say) -> dict:
    """Reset, streaming == offline and how long it can stream (targets.proofs);
    a failed reset or offline check fails the build."""
    from . import proofs

    declared = getattr(source.torch_model, "max_duration_s", None)
    out = proofs.run_proofs(signature, onnx_paths["encoder"], source.reference["encoder"], source.torch_model,
                            speech, stream_seconds or declared or proofs.STREAM_CHECK_SECONDS)
    say("proofs: " + proofs.summary(out))
    if not out["reset"]["passed"]:
        raise UserError(f"resetting the states to their declared initial values does not reproduce a fresh stream "
                        f"(max diff {out['reset']['max_abs_diff']:.2e}): a state's initial value is wrong")
    if out["offline"].get("checked") and not out["offline"]["passed"]:
        raise UserError(f"streaming differs from the declared offline function by "
                        f"{out['offline']['max_abs_diff']:.2e} (tolerance {proofs.OFFLINE_TOLERANCE:g})")
    return out


def _check_quantised(backend: str, files: dict[str, Path], records: dict) -> None:
    """An int8 file in which nothing was quantised is an fp32 file under an
    int8 name: report it as such and fail it, whatever its parity."""
    for g, p in files.items():
        if backend in ("ort", "onnx"):
            from .ort import quantized_op_count
            n = quantized_op_count(p)
        elif backend == "tflite":
            from .tflite import quantized_tensor_count
            n = quantized_tensor_count(p)
        else:
            continue
        records[g]["quantized_ops"] = n
        if backend in ("ort", "onnx"):
            from .quantize import recipe_record
            records[g]["int8_recipe"] = recipe_record(p)
        if n == 0:
            records[g]["passed"] = False
            records[g]["why"] = (f"no weight of graph {g!r} was quantised (no MatMul/Gemm/Conv/LSTM with "
                                 "constant weights); the file is fp32 under an int8 name")


def _describe(rec: dict) -> str:
    flag = "" if rec["passed"] else " FAILED"
    if rec.get("quantized_ops") == 0:
        return f"int8 quantised nothing: {rec['why']} FAILED"
    if rec.get("judged_by") == "relative_error":
        return (f"relative error {rec['relative_error']:.2e} <= {rec['relative_error_bar']:.0e}, "
                f"cosine {rec['cosine']:.4f} ({rec['why'].split(',')[0]}){flag}")
    if rec.get("tolerance") is None:
        return (f"decoded agreement {rec['decoded_agreement']:.3f} (bar {rec['agreement_bar']}), "
                f"max|diff| {rec['max_abs_diff']:.2e}{'' if rec['passed'] else ' FAILED'}")
    return f"max|diff| {rec['max_abs_diff']:.2e} <= {rec['tolerance']:.0e}{'' if rec['passed'] else ' FAILED'}"


def _savez(path: Path, arrays: dict) -> None:
    # np.savez writes zip entries with a fixed date, so the bytes are reproducible.
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def list_targets() -> str:
    lines = []
    for t in TARGETS.values():
        lines.append(f"{t.name:8s} {t.description}")
        lines.append("         default: " + ", ".join(f"<graph>.{p}{SUFFIX[b]}" for b, p in t.default))
        lines.append("         --quant: " + ", ".join(f"{b}:{p}" for b, p in t.allowed))
        lines.append(f"         run with: {t.runtime}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from edge.cliutil import add_model, add_verbose, make_parser

    p = make_parser("edge-build", __doc__)
    p.add_argument("--list", action="store_true", help="print targets, their files and options, and exit")
    add_verbose(p)
    g = p.add_argument_group("what to build")
    g.add_argument("--target", help="rpi | android | ios")
    g.add_argument("--family", help=f"a built-in demo model: lstm, conformer, transducer (default: {DEFAULT_FAMILY})")
    add_model(g)
    g.add_argument("--checkpoint", type=Path, help="checkpoint .pt (default: the shipped demo model)")
    g.add_argument("--onnx", type=Path, help="third-party streaming ONNX model with explicit state ports")
    g.add_argument("--spec", type=Path, help="JSON spec for --onnx (states, chunk, frontend; see targets/thirdparty.py)")
    g.add_argument("--state", action="append", default=[], metavar="IN=OUT",
                   help="a state port pair of the --onnx model (repeatable)")
    g.add_argument("--quant", help="precisions to build, e.g. fp32,int8 or tflite:fp16 (default: the target's set)")
    g.add_argument("--name", default="demo", help="bundle name (default: %(default)s)")
    o = p.add_argument_group("output and checks")
    o.add_argument("-o", "--output", type=Path, help="bundle folder (default: dist/<name>-<family>-<target>)")
    o.add_argument("--parity-chunks", type=int, default=PARITY_CHUNKS,
                   help="chunks in each parity rollout (default: %(default)s)")
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
        return fail("--target is required (rpi | android | ios); see edge-build --list")
    if args.parity_chunks < 1:
        return fail("--parity-chunks must be at least 1")
    try:  # a mistyped target, precision or family is reported before torch is imported (2 s)
        steps = len(parse_quant(get_target(args.target), args.quant))
    except UserError as e:
        return fail(str(e))
    from edge.cliutil import family_error

    if not args.onnx and family_error(args.family):
        return fail(family_error(args.family))
    if args.model and (args.family or args.checkpoint or args.onnx):
        return fail("--model is your own model; leave out --family/--checkpoint/--onnx (the factory loads it)")
    try:
        from edge.checkpoint import CheckpointError
        from edge.export import ExportError
        from runtime_py.stateloop import RolloutError
    except ImportError as e:  # torch / onnx: the exporter's own dependencies
        return fail(str(missing_extra(e.name or "torch", "export")))
    from .bundle import check_output_dir, move_aside

    model = None
    if args.model:  # the factory names the model, and so the default output folder
        from edge.factory import load_model
        try:
            model = load_model(args.model)
        except UserError as e:
            return fail(str(e))
    family = model.signature().family if model is not None else args.family or DEFAULT_FAMILY
    out_dir = args.output or Path("dist") / f"{args.name}-{family}-{args.target}"
    moved = None
    try:  # before any work: never build towards a folder we may not replace
        if check_output_dir(out_dir, force=args.force):
            moved = move_aside(out_dir)
            print(f"  --force: moved the existing {out_dir} to {moved} (nothing deleted)", flush=True)
    except UserError as e:
        return fail(str(e))
    t0 = time.perf_counter()
    try:
        spec = None
        if args.onnx or args.spec or args.state:
            from .thirdparty import load_spec
            if not args.onnx:
                return fail("--spec/--state describe a third-party model given with --onnx FILE")
            spec = load_spec(args.spec, args.state)
        from .progress import StepProgress

        progress = StepProgress(steps=steps)
        try:
            out = build_bundle(None if model is not None else family, args.target,
                               args.output or (None if args.onnx else out_dir), model=model,
                               checkpoint=args.checkpoint, name=args.name, onnx_model=args.onnx, spec=spec,
                               quant=args.quant, keep_failed=args.keep_failed, parity_chunks=args.parity_chunks,
                               progress=progress)
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
    print(f"built {out}/ : {len(bundle.artifacts)} model files, {size / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.0f}s. Next: edge-verify {out} && edge-demo {out} --wav FILE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
