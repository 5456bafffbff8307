"""The build itself: a model in, a verified bundle folder out.

`build_bundle` resolves what to build from (the model, a checkpoint, a
third-party ONNX), then `_build` runs the steps, one module each:
  plan      what to build (plan.py: --quant) and what every artifact is
            checked against (artifacts.py: the parity stream, the reference)
  export    the ONNX graphs (source.py)
  convert   every (backend, precision) through its backend object, and
  check     each artifact rolled out against the reference (artifacts.py)
  prove     reset, streaming == offline, how long it streams (prove.py)
  write     golden files, tokens, manifest, card, atomic commit (write.py)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edge.errors import UserError

from ..backends import BACKENDS
from ..common import one_torch_thread
from .artifacts import convert_and_check, parity_plan
from .plan import DEFAULT_FAMILY, Target, check_backends, get_target, parse_quant, takes_audio
from .prove import prove
from .source import Source, tokens_for
from .write import write_bundle

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
                 audio_in: bool | None = None, ort_rewrites=None) -> Path:
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
    plan.takes_audio).
    `ort_rewrites`: the .ort route's graph rewrites (targets/ort_rewrite.py):
    None for each precision's default, () for none, or names; the manifest's
    `conversion.route.rewrites_selected` then records the choice."""
    from edge.checkpoint import load_or_init
    from edge.families import get_family

    name = name or (spec or {}).get("name") or "demo"  # an --onnx spec's "name" names the bundle
    tgt = get_target(target)
    pairs = tuple(backends) if backends else parse_quant(tgt, quant)
    check_backends(pairs)
    backend_options = {}
    if ort_rewrites is not None:  # an unknown name: one error, before any work
        from ..ort_rewrite import parse_names

        rewrites = parse_names(ort_rewrites)
        backend_options = {} if rewrites is None else {"ort": {"rewrites": rewrites}}
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
            pairs, skipped = _without_torch(pairs, target, explicit=bool(backends or quant))
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
                          skipped=skipped, backend_options=backend_options)


def _without_torch(pairs, target: str, explicit: bool):
    """A model that came as an ONNX file has no PyTorch module for the
    backends that convert from one (targets.backends: `torch_only`): a
    target default of theirs is left out and said so; asked for, an error."""
    from_torch = [(b, p) for b, p in pairs if BACKENDS[b].torch_only]
    if not from_torch:
        return pairs, []
    if explicit:
        why = "; ".join(dict.fromkeys(BACKENDS[b].torch_only for b, _ in from_torch))
        others = [b for b, found in BACKENDS.items() if not found.torch_only]
        raise UserError(f"{why}: a third-party ONNX model can go to {', '.join(others)} (use --quant ort:fp32,...)")
    skipped = [{"backend": b, "precision": p, "reason": f"{BACKENDS[b].torch_only}; this model came as an ONNX "
                f"file, so the {target} bundle has no {BACKENDS[b].client.suffix}"} for b, p in from_torch]
    return tuple(bp for bp in pairs if bp not in from_torch), skipped


def _build(source: Source, tgt: Target, pairs, out: Path, work: Path, name: str, keep_failed: bool,
           parity_chunks: int, progress, stream_seconds: float | None = None, explicit: bool = True,
           stream_budget_s: float | None = None, skipped: list | None = None,
           backend_options: dict | None = None) -> Path:
    """The build's steps, in order: plan what every artifact is checked
    against, export the ONNX graphs, convert and check every pair, prove the
    streaming graph, write the golden files, manifest and card."""
    from ..bundle import BundleWriter

    say = progress or (lambda msg: None)
    tokens = tokens_for(source.info, source.signature.vocab_size)
    trained = bool(source.info.get("meta", {}).get("trained", False))
    plan = parity_plan(source, parity_chunks, trained, say)
    with BundleWriter(out) as bw:
        onnx_paths = source.onnx(work)
        failed, not_converted = convert_and_check(bw, source, plan, pairs, onnx_paths, work, explicit,
                                                  skipped or [], say, backend_options)
        proofs = prove(source, source.signature, onnx_paths, plan.speech, stream_seconds, say, stream_budget_s)
        if failed and not keep_failed:
            raise UserError("parity failed, bundle not written (use --keep-failed to keep it, marked failed):\n  "
                            + "\n  ".join(failed))
        write_bundle(bw, source, tgt, name, tokens, trained, plan, proofs, not_converted)
    return out
