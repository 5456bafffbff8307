"""The sherpa-onnx export: our one exporter (edge.export.export_graph) on the
model's graphs, plus the metadata sherpa-onnx reads and its file naming.

A model type (targets.sherpa.lstm, targets.sherpa.zipformer2) supplies three
things: `matches(signature)`, `wrap(model, graph, signature, input_range)` (the
graph module as sherpa feeds it; most return the model's own), and
`metadata(signature, graph)` (the keys sherpa-onnx reads, as strings).
"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

from runtime_py.signature import Signature

from . import lstm, zipformer2
from .contract import (FILES, INPUT_RANGE_KEY, INPUT_RANGES, INT8_FILES, INT16_SCALE,  # noqa: F401 - re-exported
                       SHERPA_BLANK_ID, UNIT_OFFSET, SherpaExportError)

MODEL_TYPES = (lstm, zipformer2)
QUANTIZED_GRAPHS = ("encoder", "joiner")  # the decoder stays fp32, as in sherpa-onnx's published int8 models


def model_type(sig: Signature):
    for mt in MODEL_TYPES:
        if mt.matches(sig):
            return mt
    raise SherpaExportError(
        f"model {sig.family!r} has no sherpa-onnx flavour: the built-in 'transducer' family (sherpa's lstm "
        "type) and an icefall streaming Zipformer2 transducer (zipformer2) have one")


def _check_common(sig: Signature, tokens: list[str]) -> None:
    if sig.decoder != "transducer" or {g.name for g in sig.graphs} != {"encoder", "decoder", "joiner"}:
        raise SherpaExportError(f"family {sig.family!r} is not a transducer with encoder/decoder/joiner graphs; "
                                "only a transducer has a sherpa-onnx flavour")
    if sig.blank_id != SHERPA_BLANK_ID:
        raise SherpaExportError(f"sherpa-onnx hard-codes blank id 0; this model's blank id is {sig.blank_id}")
    if sig.context_size < 1:
        raise SherpaExportError(f"context_size={sig.context_size}: sherpa-onnx needs a stateless decoder "
                                "with context_size >= 1")
    if sig.frontend.kind != "fbank" or sig.frontend.window != "povey" or sig.frontend.dither != 0.0:
        raise SherpaExportError(f"sherpa-onnx's online transducer computes a povey fbank without dither; "
                                f"this model's frontend is {sig.frontend}")
    if len(tokens) != sig.vocab_size:
        raise SherpaExportError(f"{len(tokens)} tokens given, the model's vocabulary has {sig.vocab_size}")
    bad = [t for t in tokens if not t or any(ch.isspace() for ch in t)]
    if bad:
        raise SherpaExportError(f"tokens.txt is 'symbol id' per line: symbols must be non-empty and "
                                f"contain no whitespace; offending: {bad[:5]}")
    if len(set(tokens)) != len(tokens):
        raise SherpaExportError("duplicate symbols in the token list")


def input_range_of(sig: Signature) -> str:
    """A model trained on [-1, 1] samples (sample_scale 1) is already sherpa's
    default: its only flavour is "unit", with no offset."""
    return "unit" if sig.frontend.sample_scale == 1.0 else "int16"


def sherpa_signature(sig: Signature, input_range: str) -> Signature:
    """The signature embedded in the sherpa files: the unit flavour's features
    are computed from unscaled samples."""
    scale = INT16_SCALE if input_range == "int16" else 1.0
    frontend = dataclasses.replace(sig.frontend, sample_scale=scale)
    return dataclasses.replace(sig, frontend=frontend, extra=dict(sig.extra, sherpa_input_range=input_range))


class _SherpaGraphs:
    """The model as edge.export.export_graph sees it, with each graph module
    as the model type wraps it for sherpa."""

    def __init__(self, model, mt, sig: Signature, offset: float):
        self.model, self.mt, self.sig, self.offset = model, mt, sig, offset

    def graph_module(self, name: str):
        return self.mt.wrap(self.model, name, self.sig, self.offset)

    def eval(self):
        return self


def export_sherpa(model, out_dir: Path | str, tokens: list[str], input_range: str | None = None,
                  dynamic_batch: bool | None = None, int8: bool = False,
                  rewrites: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write encoder.onnx, decoder.onnx, joiner.onnx and tokens.txt (and with
    int8, encoder.int8.onnx / joiner.int8.onnx as targets.ort quantises them)
    for the sherpa-onnx model type the signature matches, and edge-rewrites.json
    (the .ort route's graph rewrites that ran on each file and their check,
    targets/sherpa/rewrite.py). Returns {name: path}.

    input_range: "int16" (features of int16-range samples: sherpa needs
    normalize_samples=False) or "unit" (sherpa's defaults); default: what the
    model was trained on. dynamic_batch: the encoder's batch axis symbolic so
    decode_streams can stack streams; default: the model type's choice (the
    decoder and joiner always have one, for sherpa's modified_beam_search).
    rewrites: the graph rewrites to try on every file (None: ort_rewrite.DEFAULT
    per precision; (): none, the exported graphs as they are)."""
    import tempfile

    from edge.export import batch_layout, export_graph

    from .rewrite import rewrite_graph, write_report

    model = model.eval()
    sig = model.signature()
    _check_common(sig, tokens)
    mt = model_type(sig)
    mt.check(sig)
    input_range = input_range or input_range_of(sig)
    if input_range not in INPUT_RANGES:
        raise SherpaExportError(f"input_range {input_range!r} must be one of {INPUT_RANGES}")
    if input_range == "int16" and sig.frontend.sample_scale == 1.0:
        raise SherpaExportError("this model was trained on features of [-1, 1] samples: its sherpa flavour is "
                                "input_range='unit' (sherpa-onnx's defaults)")
    offset = UNIT_OFFSET if input_range == "unit" and sig.frontend.sample_scale != 1.0 else 0.0
    ssig = sherpa_signature(sig, input_range)
    dynamic = mt.DYNAMIC_BATCH if dynamic_batch is None else dynamic_batch
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphs = _SherpaGraphs(model, mt, sig, offset)
    # the exporter's opt-in batch axis, each state's batch grouping found by running PyTorch. The
    # stateless decoder and joiner get one whatever the model type: sherpa-onnx's modified_beam_search
    # runs them on all hypotheses at once, and fails on a batch-1 graph ("y ... Got: 4 Expected: 1").
    ssig = dataclasses.replace(ssig, graphs=tuple(batch_layout(graphs, g, ssig) if dynamic or not g.states else g
                                                  for g in ssig.graphs))
    paths: dict[str, Path] = {}
    records: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edge-sherpa-") as tmp:
        int8_sources = {}
        for graph in ssig.graphs:
            plain = Path(tmp) / FILES[graph.name]  # as exported; the rewrites start from it
            meta = mt.metadata(model, ssig, graph.name) | {INPUT_RANGE_KEY: input_range}
            with warnings.catch_warnings():
                # h0/c0 are graph inputs, so the exporter's LSTM batch warning does not apply
                warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
                warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter, on purpose
                export_graph(graphs, graph, plain, ssig, meta)
            work = Path(tmp) / "rewrites"  # one check per (graph, rewrites), shared by the precisions
            src, records[FILES[graph.name]] = rewrite_graph(plain, graph, ssig, "fp32", work, rewrites)
            paths[graph.name] = Path(shutil.copyfile(src, out_dir / FILES[graph.name]))
            if int8 and graph.name in QUANTIZED_GRAPHS:  # quantised from the rewritten graph, as targets/ort.py
                int8_sources[graph.name], records[INT8_FILES[graph.name]] = rewrite_graph(
                    plain, graph, ssig, "int8", work, rewrites)
        tok = out_dir / FILES["tokens"]
        tok.write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")
        paths["tokens"] = tok
        if int8:
            paths.update({f"{g}.int8": p for g, p in quantize_sherpa(out_dir, ssig, int8_sources).items()})
    paths["rewrites"] = write_report(out_dir, records)
    return paths


def quantize_sherpa(out_dir: Path | str, signature: Signature | None = None,
                    sources: dict[str, Path] | None = None) -> dict[str, Path]:
    """encoder.int8.onnx and joiner.int8.onnx beside the fp32 files, with the
    bundle's int8 recipe (targets.quantize: Conv static, calibrated on speech
    through the files' signature; MatMul dynamic; dynamic only without a
    signature); the decoder stays fp32, as sherpa-onnx's published int8 models keep it.
    sources: the fp32 graph to quantise per graph name (default: the fp32 file in out_dir)."""
    from targets.quantize import quantize

    out_dir = Path(out_dir)
    done = {}
    for g in QUANTIZED_GRAPHS:
        graph = signature.graph(g) if signature is not None else None
        quantize((sources or {}).get(g, out_dir / FILES[g]), out_dir / INT8_FILES[g], graph, signature)
        done[g] = out_dir / INT8_FILES[g]
    return done
