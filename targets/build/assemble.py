"""The build itself: a model in, a verified bundle folder out.

`build_bundle` resolves what to build from (the model, a checkpoint, a
third-party ONNX), then `_build` converts every (backend, precision) pair
(targets/build/convert.py), rolls each artifact out against the reference on
speech features, runs the proofs, writes the golden files and the model card,
and commits the folder atomically with its manifest.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from edge.errors import UserError
from runtime_py import formats

from ..common import one_torch_thread
from ..conversion_errors import ConversionError
from .convert import convert_graphs, runners
from .plan import DEFAULT_FAMILY, Target, check_backends, get_target, parse_quant, takes_audio
from .records import check_quantised, describe
from .source import Source, tokens_for

PARITY_CHUNKS = 200
AUDIO_SUFFIX = "-audio"  # in the default folder name of an audio-in bundle: dist/demo-conformer-audio-android


def audio_in_model(model):
    from edge.audio_in import audio_in

    try:
        return audio_in(model)
    except ValueError as e:  # a raw-sample model, dither on: said in one line
        raise UserError(f"--audio-in: {e}") from None


def build_bundle(family: str | None = DEFAULT_FAMILY, target: str = "rpi", out_dir: Path | str | None = None, *,
                 model=None, checkpoint: Path | str | None = None, onnx_model: Path | str | None = None,
                 spec: dict | None = None, name: str | None = None, backends=None, quant: str | None = None,
                 keep_failed: bool = False, parity_chunks: int = PARITY_CHUNKS, progress=None,
                 stream_seconds: float | None = None, stream_budget_s: float | None = None,
                 audio_in: bool | None = None) -> Path:
    """Build dist/<name>-<family>-<target>/ and return its path. The model is
    `model` (in memory: a built-in family's model, or a user's model from
    edge.declare), else `onnx_model` + `spec` (third-party ONNX with state
    ports), else `checkpoint`, else the shipped one for `family`.
    `stream_seconds`: how long the streaming-duration check rolls the ORT
    graph and the reference side by side (default: an hour, or the model's
    declared max_duration_s); `stream_budget_s`: the compute it may spend
    (default targets.proofs.STREAM_BUDGET_S; the stretch that fits is checked
    and recorded).
    `audio_in`: put the frontend in the encoder graph (edge.audio_in): the
    bundle's encoder takes PCM; every artifact is also checked against the
    features-in reference (targets/audio_in_parity.py). None: the target's
    default (android and ios: yes, where the model's frontend allows;
    plan.takes_audio)."""
    from edge.checkpoint import load_or_init
    from edge.families import get_family

    name = name or (spec or {}).get("name") or "demo"  # an --onnx spec's "name" names the bundle
    tgt = get_target(target)
    pairs = tuple(backends) if backends else parse_quant(tgt, quant)
    check_backends(pairs)
    skipped: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edge-build-") as work_s:
        work = Path(work_s)
        if onnx_model is not None:
            if audio_in:
                raise UserError("--audio-in builds the frontend into a PyTorch model's graph; a third-party "
                                "ONNX model (--onnx) keeps its own input")
            audio_in = False  # a third-party ONNX model keeps its own input
            source = Source.from_onnx(Path(onnx_model), spec or {}, work)
            family = source.signature.family
            if any(b == "coreml" for b, _ in pairs):
                if backends or quant:
                    raise UserError("CoreML converts from PyTorch only; a third-party ONNX model can go to "
                                    "ort and tflite (use --quant ort:fp32,...)")
                skipped = [{"backend": b, "precision": p, "reason": "coremltools converts from PyTorch only; this "
                            "model came as an ONNX file, so the ios bundle has no .mlpackage"}
                           for b, p in pairs if b == "coreml"]
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
            audio_in = takes_audio(tgt, audio_in, model.signature())
            declared = model.signature().family
            if family is not None and family != declared and not hasattr(model, "info"):
                raise UserError(f"model is a {declared!r}, not {family!r}")
            family = declared
            source = Source.from_model(audio_in_model(model) if audio_in else model, info)
        out = Path(out_dir) if out_dir else Path("dist") / f"{name}-{family}{AUDIO_SUFFIX if audio_in else ''}-{target}"
        with one_torch_thread():
            return _build(source, tgt, pairs, out, work, name, keep_failed, parity_chunks, progress,
                          stream_seconds, explicit=bool(backends or quant), stream_budget_s=stream_budget_s,
                          skipped=skipped)


def _build(source: Source, tgt: Target, pairs, out: Path, work: Path, name: str, keep_failed: bool,
           parity_chunks: int, progress, stream_seconds: float | None = None, explicit: bool = True,
           stream_budget_s: float | None = None, skipped: list | None = None) -> Path:
    from runtime_py.audio import read_wav, write_wav
    from runtime_py.decoding import tokens_to_text
    from runtime_py.frontend import compute_features
    from runtime_py.stream import Model

    from .. import audio_in_card
    from .. import golden as gold
    from ..bundle import BundleWriter, tool_versions
    from ..modelcard import model_card
    from ..parity import check_set, decode_tokens

    say = progress or (lambda msg: None)
    signature, reference, info = source.signature, source.reference, source.info
    tokens = tokens_for(info, signature.vocab_size)
    trained = bool(info.get("meta", {}).get("trained", False))
    speech = gold.parity_stream(signature, parity_chunks)
    ref_tokens = decode_tokens(signature, reference, speech)
    say(f"model {signature.family} ({info['source']}); parity stream {len(speech)} chunks, "
        f"{source.reference_name} decodes {len(ref_tokens)} tokens")

    features_in = _features_in_check(source, signature, parity_chunks, trained, say)
    failed, not_converted = [], list(skipped or [])  # skipped: target defaults no converter takes from this source
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
                files = convert_graphs(backend, precision, signature, onnx_paths, bw.tmp, work=work,
                                       torch_model=source.torch_model, calibration=speech[:50])
            except ConversionError as e:
                if explicit:  # the user asked for this one: fail, saying why
                    raise
                # a target default that does not convert: left out, and said so (manifest, card, output)
                not_converted.append({"backend": backend, "precision": precision, "reason": str(e)})
                lines = str(e).splitlines()
                say(f"{backend} {precision}: NOT CONVERTED, left out of the bundle: {lines[0]}"
                    + "".join(f"\n    {ln.strip()}" for ln in lines[1:3] if not earlier))
                continue
            fmt = formats.get_format(backend)
            if not fmt.runs_here:  # CoreML on Linux: the file's spec is checked, its numerics cannot be
                for g, p in files.items():
                    bw.add_artifact(p.name, g, backend, precision, formats.load(fmt.inspect)(p, signature.graph(g)))
                say(f"{backend} {precision}: spec verified, numerics not run ({fmt.not_here.split(';')[0]}) "
                    f"[{time.perf_counter() - t0:.1f}s]")
                continue
            runs = runners(backend, files, signature)
            records = check_set(signature, reference, runs, precision, speech, parity_chunks, ref_tokens,
                                trained=trained)
            if features_in:  # an audio-in encoder: also against the features-in model fed numpy features
                from .. import audio_in_parity
                audio_in_parity.judge_states(records["encoder"], precision)
                rec = records["encoder"]["features_in"] = features_in(runs, precision)
                records["encoder"]["passed"] = bool(records["encoder"]["passed"] and rec["passed"])
            if precision == "int8":
                check_quantised(backend, files, records)
            for g, p in files.items():
                records[g]["reference"] = source.reference_name
                bw.add_artifact(p.name, g, backend, precision, records[g], files.reports.get(g))
                if not records[g]["passed"]:
                    failed.append(f"{p.name}: {describe(records[g])}")
            say(f"{backend} {precision}: " + "; ".join(f"{g} {describe(r)}" for g, r in records.items())
                + f" [{time.perf_counter() - t0:.1f}s]")
        if any(b == "ort" for b, _ in pairs):
            from .. import ort
            ort.required_operators_config(sorted(bw.tmp.glob("*.ort")), bw.path("required_operators.config"))
            bw.add_file("required_operators.config")
        proofs = _proofs(source, signature, onnx_paths, speech, stream_seconds, say, stream_budget_s)
        if failed and not keep_failed:
            raise UserError("parity failed, bundle not written (use --keep-failed to keep it, marked failed):\n  "
                            + "\n  ".join(failed))

        # golden files: a short utterance, its features, encoder chunks and the reference's outputs
        gname, audio = gold.golden_audio(signature)
        rate = signature.frontend.sample_rate
        write_wav(bw.path("golden/audio.wav"), audio, rate)
        audio, _ = read_wav(bw.path("golden/audio.wav"))  # features of what the file holds (16-bit)
        feats = compute_features(gold.with_tail(audio, rate, signature), signature.frontend)
        np.save(bw.path("golden/features.npy"), feats)
        chunks = gold.feature_chunks(feats, signature)
        enc = signature.graph("encoder")
        stream = Model(signature, reference, batch=False).create_stream()
        outputs = [stream.step(c) for c in chunks]
        _savez(bw.path("golden/encoder_inputs.npz"), {f"{enc.inputs[0].name}_{i:04d}": c for i, c in enumerate(chunks)})
        _savez(bw.path("golden/encoder_outputs.npz"),
               {f"{k}_{i:04d}": v for i, o in enumerate(outputs) for k, v in o.items()})
        text = tokens_to_text(stream.tokens, tokens)
        bw.write_text("golden/transcript.txt", text + "\n")
        gold.write_cut(bw, audio, signature, Model(signature, reference, batch=False).create_stream(), tokens)
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
                       "transcript": "golden/transcript.txt", "chunks": len(chunks),
                       "cut": {"audio": gold.CUT_AUDIO, "transcript": gold.CUT_TRANSCRIPT}},
            "proofs": proofs,
            "not_converted": not_converted,
            "parity_stream": {"chunks": parity_chunks, "reference_tokens": len(ref_tokens),
                              "source": "shipped sample utterances with seeded gain/noise"
                              if gold.sample_utterances(rate) else "synthetic harmonic signal"},
        }
        card = model_card(manifest, bw.artifacts, tgt, tokens=tokens)
        bw.write_text("README.md", audio_in_card.adapt(card, signature))  # unchanged unless the graph takes audio
        bw.commit(manifest)
    return out


def _features_in_check(source: Source, signature, parity_chunks: int, trained: bool, say):
    """For an audio-in model: run(candidate runs, precision) -> its record
    against the features-in reference (targets/audio_in_parity.py); else None."""
    base = getattr(source.torch_model, "base", None)
    if base is None or not signature.extra.get("audio_in"):
        return None
    from edge.export import torch_runner

    from .. import audio_in_parity as aip

    fsig = source.torch_model.features_signature
    pcm, feature_chunks = aip.parity_inputs(signature, fsig, parity_chunks)
    ref = aip.features_in_reference(fsig, {g.name: torch_runner(base, g) for g in fsig.graphs}, feature_chunks)
    say(f"audio-in: {len(pcm)} calls of PCM against {len(feature_chunks)} features-in chunks "
        f"({len(ref[1])} reference tokens)")
    return lambda runs, precision: aip.check(signature, runs, precision, pcm, ref, trained)


def _proofs(source: Source, signature, onnx_paths: dict, speech: list, stream_seconds: float | None,
            say, budget_s: float | None = None) -> dict:
    """Reset, streaming == offline and how long it can stream (targets.proofs);
    a failed reset or offline check fails the build."""
    from .. import proofs

    declared = getattr(source.torch_model, "max_duration_s", None) or source.info.get("max_duration_s")
    ref, ref_name = source.stream_reference or (None, "pytorch")
    out = proofs.run_proofs(signature, onnx_paths["encoder"], source.reference["encoder"], source.torch_model,
                            speech, stream_seconds or declared or proofs.STREAM_CHECK_SECONDS, budget_s=budget_s,
                            stream_reference=ref, reference_name=ref_name)
    say("proofs: " + proofs.summary(out))
    if not out["reset"]["passed"]:
        raise UserError(f"resetting the states to their declared initial values does not reproduce a fresh stream "
                        f"(max diff {out['reset']['max_abs_diff']:.2e}): a state's initial value is wrong")
    if out["offline"].get("checked") and not out["offline"]["passed"]:
        raise UserError(f"streaming differs from the declared offline function by "
                        f"{out['offline']['max_abs_diff']:.2e} (tolerance {proofs.OFFLINE_TOLERANCE:g})")
    return out


def _savez(path: Path, arrays: dict) -> None:
    # np.savez writes zip entries with a fixed date, so the bytes are reproducible.
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
