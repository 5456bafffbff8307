"""Checkpoints: a plain dict of primitives and tensors, loaded with
`weights_only=True` so a checkpoint cannot run code.

Layout: {"format", "version", "family", "config", "state_dict", "tokens",
"meta"}. Every way a checkpoint can be wrong gets one `CheckpointError` with a
message that says what to do.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import torch

from .families import get_family
from .families.base import StreamingModel

FORMAT = "edge-speech-checkpoint"
VERSION = 1
SHIPPED_DIR = Path(__file__).parent / "checkpoints"


class CheckpointError(ValueError):
    pass


def save_checkpoint(model: StreamingModel, path: Path | str, tokens: list[str] | None = None,
                    meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "family": model.family,
        "config": dataclasses.asdict(model.config),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "tokens": list(tokens or []),
        "meta": dict(meta or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: Path | str) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the .pt file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a torch checkpoint (no zip container): "
                              "it is truncated, corrupted, or another kind of file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"checkpoint {path} holds Python objects beyond tensors and plain data, "
                              "which are refused for safety; re-save it with edge.checkpoint.save_checkpoint") from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read ({msg}); it is truncated or corrupted") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an {FORMAT} file (a raw state_dict? save it with "
                              "edge.checkpoint.save_checkpoint(model, path))")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')}, expected {VERSION}")
    return payload


def load_checkpoint(path: Path | str, family: str | None = None) -> tuple[StreamingModel, dict]:
    """Build the model a checkpoint describes and load its weights.
    Returns (model in eval mode, payload without the state_dict)."""
    payload = read_checkpoint(path)
    if family is not None and payload["family"] != family:
        raise CheckpointError(f"checkpoint {path} holds a {payload['family']!r} model, not {family!r}; "
                              f"use --family {payload['family']} or another checkpoint")
    try:
        fam = get_family(payload["family"])
    except KeyError as e:
        raise CheckpointError(str(e.args[0])) from None
    try:
        config = fam.config_from_dict(payload["config"])
        model = fam.build(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: invalid config for {fam.name!r}: {e}") from None
    want = model.state_dict()
    got = payload["state_dict"]
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    mismatched = [f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(want[k].shape)}"
                  for k in sorted(set(want) & set(got)) if tuple(got[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or mismatched:
        lines = [f"checkpoint {path} does not fit a {fam.name!r} model built from its config:"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {label} ({len(items)}): " + "; ".join(items[:5]) + (" ..." if len(items) > 5 else ""))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(got)
    model.eval()
    info = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, info


def shipped_checkpoint(family: str) -> Path | None:
    """The demo model trained here and shipped in the package, if present."""
    p = SHIPPED_DIR / family / "model.pt"
    return p if p.exists() else None


def load_or_init(family: str, checkpoint: Path | str | None = None, seed: int = 0) -> tuple[StreamingModel, dict]:
    """The given checkpoint; else the shipped one; else a seeded untrained
    model, marked as such in the returned info."""
    path = Path(checkpoint) if checkpoint else shipped_checkpoint(family)
    if path is not None:
        model, info = load_checkpoint(path, family)
        info["source"] = f"checkpoint:{path.name}" if checkpoint else f"shipped:{family}/model.pt"
        return model, info
    torch.manual_seed(seed)
    model = get_family(family).build().eval()
    return model, {"family": family, "tokens": [], "meta": {"trained": False, "seed": seed},
                   "source": f"untrained(seed={seed})"}
