"""What a bundle is built from: the signature, the reference every artifact
is checked against, the ONNX graphs, and the tokens it decodes into."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    # the stream proof's reference, (run, name), where it is not the model's own step (targets.proofs)
    stream_reference: tuple | None = None

    @classmethod
    def from_model(cls, model, info: dict) -> "Source":
        from edge.export import export_onnx, torch_runner

        model = model.eval()
        sig = model.signature()
        return cls(sig, {g.name: torch_runner(model, g) for g in sig.graphs}, "pytorch",
                   lambda work: export_onnx(model, work / "onnx"), info, model)

    @classmethod
    def from_onnx(cls, onnx_path: Path, spec: dict, work: Path) -> "Source":
        from .. import onnx_source, ort, thirdparty

        path, sig = thirdparty.normalise(onnx_path, spec, work / "source" / "encoder.onnx")
        info = {"source": f"onnx:{Path(onnx_path).name}", "tokens": thirdparty.spec_tokens(spec),
                "meta": {"trained": bool(spec.get("trained", True)), "thirdparty": True},
                "max_duration_s": spec.get("max_duration_s")}
        paths = {g.name: path.parent / f"{g.name}.onnx" for g in sig.graphs}  # a transducer's three graphs
        reference = {g.name: ort.runner(paths[g.name], g) for g in sig.graphs}
        # the encoder's reference is the untouched file, run as its authors run it (targets/onnx_source.py)
        io = sig.extra["onnx_source"]
        reference["encoder"] = onnx_source.runner(onnx_path, io)
        # the stream proof runs the file with its counters counting on, so a limit the spec's max hides shows
        stream_ref = (onnx_source.runner(onnx_path, io, unclamped=True),
                      "source-onnx (onnxruntime)" + (", counters unclamped" if io["counters"] else ""))
        return cls(sig, reference, "source-onnx (onnxruntime)", lambda _work: paths, info,
                   stream_reference=stream_ref)


def tokens_for(info: dict, vocab_size: int) -> list[str]:
    """The model's own tokens; else the demo vocabulary's when the sizes
    agree (an untrained built-in family); else placeholders."""
    tokens = list(info.get("tokens") or [])
    if not tokens:
        try:
            from edge.assets import demo_tokens
            tokens = demo_tokens()
        except ImportError:
            tokens = []
    if len(tokens) != vocab_size:
        tokens = ["<blk>"] + [f"\u2581t{i}" for i in range(1, vocab_size)]
    return tokens
