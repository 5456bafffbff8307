"""Write: what a bundle holds besides its model files. The golden files (a
short utterance, its features, the encoder's chunks and the reference's
outputs, which edge-verify replays on the device), the token table, the
manifest (its fields: runtime_py/manifest.py, which also reads it) and the
model card; then the folder is committed atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime_py.manifest import GOLDEN, TOKENS, new_manifest


def write_golden(bw, signature, reference, tokens: list[str]) -> tuple[str, int]:
    """The golden files (GOLDEN's places); returns (utterance name, chunks)."""
    from runtime_py.audio import read_wav, write_wav
    from runtime_py.decoding import tokens_to_text
    from runtime_py.frontend import compute_features
    from runtime_py.stream import Model

    from .. import golden as gold

    gname, audio = gold.golden_audio(signature)
    rate = signature.frontend.sample_rate
    write_wav(bw.path(GOLDEN["audio"]), audio, rate)
    audio, _ = read_wav(bw.path(GOLDEN["audio"]))  # features of what the file holds (16-bit)
    feats = compute_features(gold.with_tail(audio, rate, signature), signature.frontend)
    np.save(bw.path(GOLDEN["features"]), feats)
    chunks = gold.feature_chunks(feats, signature)
    enc = signature.graph("encoder")
    stream = Model(signature, reference, batch=False).create_stream()
    outputs = [stream.step(c) for c in chunks]
    _savez(bw.path(GOLDEN["inputs"]["encoder"]), {f"{enc.inputs[0].name}_{i:04d}": c for i, c in enumerate(chunks)})
    _savez(bw.path(GOLDEN["outputs"]["encoder"]),
           {f"{k}_{i:04d}": v for i, o in enumerate(outputs) for k, v in o.items()})
    text = tokens_to_text(stream.tokens, tokens)
    bw.write_text(GOLDEN["transcript"], text + "\n")
    gold.write_cut(bw, audio, signature, Model(signature, reference, batch=False).create_stream(), tokens)
    for rel in (GOLDEN["audio"], GOLDEN["features"], GOLDEN["inputs"]["encoder"], GOLDEN["outputs"]["encoder"]):
        bw.add_file(rel)
    return gname, len(chunks)


def write_bundle(bw, source, target, name: str, tokens: list[str], trained: bool, plan, proofs: dict,
                 not_converted: list) -> None:
    """Golden files, tokens, manifest and card into `bw`, then commit it."""
    from .. import audio_in_card
    from .. import golden as gold
    from ..bundle import tool_versions
    from ..modelcard import model_card

    signature = source.signature
    utterance, chunks = write_golden(bw, signature, source.reference, tokens)
    bw.write_text(TOKENS, "".join(f"{t} {i}\n" for i, t in enumerate(tokens)))
    manifest = new_manifest(
        name=name, target=target.name, signature=signature, source=source.info["source"], trained=trained,
        reference=source.reference_name, tools=tool_versions(), utterance=utterance, golden_chunks=chunks,
        proofs=proofs, not_converted=not_converted,
        parity_stream={"chunks": plan.chunks, "reference_tokens": len(plan.ref_tokens),
                       "source": "shipped sample utterances with seeded gain/noise"
                       if gold.sample_utterances(signature.frontend.sample_rate) else "synthetic harmonic signal"})
    card = model_card(manifest, bw.artifacts, target, tokens=tokens)
    bw.write_text("README.md", audio_in_card.adapt(card, signature))  # unchanged unless the graph takes audio
    bw.commit(manifest)


def _savez(path: Path, arrays: dict) -> None:
    # np.savez writes zip entries with a fixed date, so the bytes are reproducible.
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
