"""Files for the sherpa-onnx columns: targets.sherpa's export of this model
(fp32, and int8 with the bundle's recipe), and the zipformer package's own
export (fp32, and int8 as it makes it). A model without a sherpa-onnx
flavour, or without the package, gives rows that say why."""

from __future__ import annotations

from pathlib import Path

from .artifacts import _first_line
from .columns import COLUMNS


def _size(paths: dict) -> int:
    return sum(Path(p).stat().st_size for k, p in paths.items() if k != "tokens")


def _tokens(model, signature) -> list[str]:
    """The model's tokens (a declared model carries them; a built-in family's
    are the corpus vocabulary); placeholders otherwise: they only name ids in
    tokens.txt, which timing does not read."""
    tokens = list(getattr(model, "tokens", None) or [])
    if not tokens:
        from edge.data.corpus import tokens as corpus_tokens

        tokens = list(corpus_tokens())
    if len(tokens) != signature.vocab_size:
        tokens = ["<blk>"] + [f"t{i}" for i in range(1, signature.vocab_size)]
    return tokens


def prepare_sherpa(labels, model, signature, work: Path, say=print) -> dict:
    """label -> {"files": {encoder, decoder, joiner, tokens}, "size_bytes",
    "normalize_samples", "parity_passed": None} or {"error"}."""
    wanted = [lb for lb in labels if COLUMNS[lb].kind in ("sherpa", "client")]
    out = {}
    if not wanted:
        return out
    if model is None:
        return {lb: {"error": "needs the model (--model or --family) to export the sherpa-onnx files"}
                for lb in wanted}
    from targets.sherpa import export_sherpa, files
    from targets.sherpa.export import input_range_of
    from targets.sherpa.package import package_export

    tokens = _tokens(model, signature)
    exports = {}
    if any(COLUMNS[lb].export == "ours" for lb in wanted):
        say("[bench] sherpa-onnx: exporting our sherpa-form files (fp32 + int8) ...")
        try:
            d = work / "sherpa-ours"
            export_sherpa(model, d, tokens, int8=True)
            unit = input_range_of(signature) == "unit"
            exports["ours"] = {p: {"files": files(d, p), "normalize_samples": unit} for p in ("fp32", "int8")}
        except Exception as e:  # noqa: BLE001 - a model without a sherpa flavour is a row, not a crash
            exports["ours"] = {"error": f"sherpa export failed: {_first_line(e)}"}
    if any(COLUMNS[lb].export == "package" for lb in wanted):
        say("[bench] sherpa-onnx: the zipformer package's own export (its bin/export.py) ...")
        try:
            paths = package_export(model, work / "sherpa-package", tokens)
            unit = signature.frontend.sample_scale == 1.0
            exports["package"] = {p: {"files": f, "normalize_samples": unit} for p, f in paths.items()}
        except Exception as e:  # noqa: BLE001
            exports["package"] = {"error": f"package export failed: {_first_line(e)}"}
    for lb in wanted:
        c = COLUMNS[lb]
        got = exports[c.export]
        if "error" in got:
            out[lb] = {"error": got["error"]}
            continue
        entry = dict(got[c.precision])
        entry.update(size_bytes=_size(entry["files"]), parity_passed=None)
        out[lb] = entry
    return out
