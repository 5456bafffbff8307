"""Convert and check: every (backend, precision) of a build through its
backend object (targets/backends/), each artifact rolled out against the
reference on the parity stream, int8 files checked to be quantised, then the
backends' side files.

`parity_plan` is what every artifact is checked against (made once, before
any conversion); `convert_and_check` writes the artifacts into the bundle
folder and returns what failed and what was left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..backends import BACKENDS
from ..conversion_errors import ConversionError
from .convert import convert_graphs, runners
from .records import check_quantised, describe
from .source import Source


@dataclass
class ParityPlan:
    """The reference side of every check: the parity stream and what the reference decodes of it."""
    speech: list  # encoder input chunks (targets.golden.parity_stream)
    chunks: int  # how many the rollouts run
    ref_tokens: list  # the reference's tokens over the stream
    trained: bool
    features_in: object = None  # an audio-in model: run(runs, precision) -> its record against the features-in model


def parity_plan(source: Source, chunks: int, trained: bool, say) -> ParityPlan:
    from .. import golden as gold
    from ..parity import decode_tokens

    signature = source.signature
    speech = gold.parity_stream(signature, chunks)
    ref_tokens = decode_tokens(signature, source.reference, speech)
    say(f"model {signature.family} ({source.info['source']}); parity stream {len(speech)} chunks, "
        f"{source.reference_name} decodes {len(ref_tokens)} tokens")
    return ParityPlan(speech, chunks, ref_tokens, trained, _features_in_check(source, signature, chunks, trained, say))


def convert_and_check(bw, source: Source, plan: ParityPlan, pairs, onnx_paths: dict, work: Path, explicit: bool,
                      skipped: list, say, backend_options: dict | None = None) -> tuple[list[str], list[dict]]:
    """Every pair's artifacts into the bundle folder `bw`, checked; returns
    ("file: why" of each artifact that failed its check, the not-converted
    records: `skipped`, target defaults no converter takes from this source,
    then the defaults whose conversion failed). A pair the user asked for
    (`explicit`) that does not convert raises instead. `backend_options`:
    backend -> options for its converter alone (convert.convert_graphs)."""
    failed, not_converted = [], list(skipped)
    for backend, precision in ((BACKENDS[b], p) for b, p in pairs):  # the backend objects: targets/backends
        t0 = time.perf_counter()
        files = _convert(backend, precision, source, onnx_paths, bw, work, explicit, not_converted, say,
                         backend_options)
        if files is None:
            continue
        if backend.client.runs_here:
            said = _check(bw, source, plan, backend, precision, files, failed)
        else:  # CoreML on Linux: the file's spec is checked, its numerics cannot be
            for g, p in files.items():
                bw.add_artifact(p.name, g, backend.name, precision, backend.inspect(p, source.signature.graph(g)))
            said = f"spec verified, numerics not run ({backend.client.not_here.split(';')[0]})"
        say(f"{backend.name} {precision}: {said} [{time.perf_counter() - t0:.1f}s]")
    for backend in (BACKENDS[b] for b in dict.fromkeys(b for b, _ in pairs)):
        for rel in backend.side_files(bw.tmp) if backend.side_files else ():  # e.g. ORT's operator config
            bw.add_file(rel)
    return failed, not_converted


def _convert(backend, precision: str, source: Source, onnx_paths: dict, bw, work: Path, explicit: bool,
             not_converted: list, say, backend_options: dict | None = None):
    """graph -> file of one pair, or None when a target default did not
    convert (recorded in `not_converted` and said)."""
    say(f"{backend.name} {precision}: converting {len(onnx_paths)} graph(s)...")
    earlier = next((nc for nc in not_converted if nc["backend"] == backend.name), None)
    try:
        if earlier:  # every precision of a backend starts from the same conversion: do not retry it
            raise ConversionError(f"not tried: {backend.name} {earlier['precision']} did not convert "
                                  f"(same converter)\n{earlier['reason']}")
        return convert_graphs(backend.name, precision, source.signature, onnx_paths, bw.tmp, backend_options,
                              work=work, torch_model=source.torch_model)
    except ConversionError as e:
        if explicit:  # the user asked for this one: fail, saying why
            raise
        # a target default that does not convert: left out, and said so (manifest, card, output)
        not_converted.append({"backend": backend.name, "precision": precision, "reason": str(e)})
        lines = str(e).splitlines()
        say(f"{backend.name} {precision}: NOT CONVERTED, left out of the bundle: {lines[0]}"
            + "".join(f"\n    {ln.strip()}" for ln in lines[1:3] if not earlier))
        return None


def _check(bw, source: Source, plan: ParityPlan, backend, precision: str, files, failed: list) -> str:
    """Roll the files out against the reference (targets/parity.py), check
    an int8 file was quantised, add each artifact with its record (a failed
    one to `failed` too); returns the progress line's text."""
    from ..parity import check_set

    signature = source.signature
    runs = runners(backend.name, files, signature)
    records = check_set(signature, source.reference, runs, precision, plan.speech, plan.chunks, plan.ref_tokens,
                        trained=plan.trained)
    if plan.features_in:  # an audio-in encoder: also against the features-in model fed numpy features
        from .. import audio_in_parity
        audio_in_parity.judge_states(records["encoder"], precision)
        rec = records["encoder"]["features_in"] = plan.features_in(runs, precision)
        records["encoder"]["passed"] = bool(records["encoder"]["passed"] and rec["passed"])
    if precision == "int8":
        check_quantised(backend, files, records)
    for g, p in files.items():
        records[g]["reference"] = source.reference_name
        bw.add_artifact(p.name, g, backend.name, precision, records[g], files.reports.get(g))
        if not records[g]["passed"]:
            failed.append(f"{p.name}: {describe(records[g])}")
    return "; ".join(f"{g} {describe(r)}" for g, r in records.items())


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


