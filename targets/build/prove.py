"""Prove: what a streaming graph must do beyond matching the reference
chunk by chunk (targets/proofs.py): reset, streaming == offline, and how long
it can stream; a failed reset or offline check fails the build."""

from __future__ import annotations

from edge.errors import UserError

from .source import Source


def prove(source: Source, signature, onnx_paths: dict, speech: list, stream_seconds: float | None,
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


