"""The zipformer package's own streaming ONNX export (its bin/export.py),
run on the AsrModel inside a declared Zipformer: the files a researcher has
today, which edge-bench times under sherpa-onnx as the baseline.

Called, not copied: `zipformer.bin.export.export_onnx_streaming_transducer`
with the defaults of its CLI (dynamic batch, int8 = quantize_dynamic of the
encoder's and joiner's MatMuls with QInt8 weights, the decoder left fp32).
Two shims, both about this machine rather than the export: torch 2.13's
default exporter is dynamo, which the package's calls predate (so
`dynamo=False` is passed, as the DESIGN notes say); and modules its CLI
imports but this path never calls (fp16 conversion, data loading, training
logs) are stubbed when absent, as examples/zipformer_factory.py does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import types
import warnings
from pathlib import Path

from .export import FILES, SherpaExportError

SUFFIX = "epoch-99-avg-1"  # the package's file naming for --epoch 99 --avg 1
PACKAGE_FILES = {"fp32": {"encoder": f"encoder-{SUFFIX}.onnx", "decoder": f"decoder-{SUFFIX}.onnx",
                          "joiner": f"joiner-{SUFFIX}.onnx", "tokens": FILES["tokens"]},
                 "int8": {"encoder": f"encoder-{SUFFIX}.int8.onnx", "decoder": f"decoder-{SUFFIX}.onnx",
                          "joiner": f"joiner-{SUFFIX}.int8.onnx", "tokens": FILES["tokens"]}}
# imported at the top of zipformer/bin/{export,train}.py, unused by the streaming transducer export
_UNUSED_IMPORTS = {"onnxconverter_common": ("float16",), "atdataset": ("ATDataloader", "Fbank", "SpecAugment",
                                                                       "fix_random_seed", "time_warp"),
                   "torchaudio": ()}


def asr_model(model):
    """The package's AsrModel behind a declared Zipformer's decoder/joiner steps."""
    for graph in ("decoder", "joiner"):
        for m in model.modules_of(graph) if hasattr(model, "modules_of") else []:
            if all(hasattr(m, a) for a in ("encoder", "encoder_embed", "decoder", "joiner")):
                return m
    raise SherpaExportError("no zipformer AsrModel (encoder, encoder_embed, decoder, joiner) in this model's "
                            "decoder/joiner steps: the package's own export needs one")


def _stub_unused_imports() -> None:
    import importlib.util

    for name, attrs in _UNUSED_IMPORTS.items():
        stub = sys.modules.get(name)
        if stub is None and importlib.util.find_spec(name) is None:
            stub = sys.modules[name] = types.ModuleType(name)
        if stub is not None and stub.__spec__ is None:  # a stub (ours or the factory's), not the real module
            for a in attrs:
                if not hasattr(stub, a):
                    setattr(stub, a, None)


@contextlib.contextmanager
def _legacy_exporter():
    import torch

    export = torch.onnx.export
    torch.onnx.export = functools.partial(export, dynamo=False)
    try:
        yield
    finally:
        torch.onnx.export = export


def package_export(model, out_dir: Path | str, tokens: list[str]) -> dict[str, dict[str, Path]]:
    """{"fp32": {encoder, decoder, joiner, tokens}, "int8": {...}} written by
    the package's own export into `out_dir`."""
    import copy

    _stub_unused_imports()
    from zipformer.bin import export as pkg

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    asr = copy.deepcopy(asr_model(model)).eval()  # the export patches the encoder class; keep ours apart
    zipformer_class = type(asr.encoder)
    forward = zipformer_class.forward
    params = types.SimpleNamespace(exp_dir=out_dir, suffix=SUFFIX, feature_dim=80, dynamic_batch=True,
                                   use_external_data=False, export_fp16=False, enable_int8_quantization=True)
    level = logging.getLogger().level
    try:
        with _legacy_exporter(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on the package's asserts: its export, as it is
            pkg.export_onnx_streaming_transducer(params, asr)
    finally:
        zipformer_class.forward = forward  # it sets forward = streaming_forward on the class
        logging.getLogger().setLevel(level)
    (out_dir / FILES["tokens"]).write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens)), encoding="utf-8")
    return {p: {k: out_dir / v for k, v in names.items()} for p, names in PACKAGE_FILES.items()}
