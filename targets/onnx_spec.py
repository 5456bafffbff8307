"""The keys of an `--onnx` model's JSON spec: edge.declare's names.

A spec is the same declaration as `edge.declare(...)` for a graph that is
already ONNX, so the keys are declare's and edge.Step's (`name`, `head`,
`chunk`, `shift`, `layout`, `frontend`, `tokens`, `batch_axis`, `reset`...)
plus what only a file needs (which ports are states, which input is which).
A key not in SPEC_KEYS is refused, with the known ones listed: a typo must
not be silently ignored. docs/bring-your-own-model.md documents each key.
The facts both routes state (name, head, chunk and shift, max_duration_s)
are checked by edge.declaration's own checks, with its messages (`check_facts`
here; chunk and shift once the file has said its chunk), and "inputs" are
read into edge.declare's roles, `Const` and `Counter` (`input_roles`).
"""

from __future__ import annotations

import dataclasses

from edge.errors import UserError
from runtime_py.signature import FrontendSpec, SignatureError

SPEC_KEYS = {
    "states": "input -> output pairs of the state ports, e.g. {\"h_in\": \"h_out\"}",
    "name": "the model's name; names the bundle (dist/<name>-<family>-<target>)",
    "head": "\"ctc\" (default), \"none\" (outputs go to the app) or \"transducer\"",
    "chunk": "frames fed per step (samples for raw audio); needed when the time axis is dynamic",
    "shift": "frames consumed per step (default: chunk); right context = chunk - shift",
    "subsampling": "input frames per output frame (default: chunk / output frames)",
    "layout": "the file's feature input axes: BTF, TBF, BFT, BT (raw samples [1, T]) or T ([T]); default by rank",
    "frontend": "FrontendSpec fields; {\"kind\": \"raw\", \"sample_rate\": 16000, \"left_pad\": 64} for samples",
    "input": "the feature input (default: the one input that is not a state)",
    "output": "the output to decode (default: the first output that is not a state)",
    "outputs": "head none: the outputs the app gets (default: all that are not states)",
    "inputs": "other inputs: {\"sr\": {\"role\": \"const\", \"value\": 16000}} or "
              "{\"offset\": {\"role\": \"counter\", \"step\": 16, \"max\": 5000}}",
    "initial": "a state's initial value (default 0.0)",
    "reset": "a state's reset scope: \"utterance\" (default) or \"session\"",
    "state_shapes": "a state's shape where the file's is dynamic",
    "batch_axis": "a state's batch axis (null for none)",
    "tokens": "the vocabulary: a list of symbols, or a tokens.txt ('symbol id' per line) beside the spec",
    "blank_id": "the CTC / transducer blank (default 0)",
    "decoder_start": "head transducer: the context the decoder was trained to start from, e.g. [-1, 0] "
                     "(icefall/sherpa-onnx: -1 is a zero embedding; default all blank)",
    "trained": "false for random weights (the bundle says UNTRAINED)",
    "max_duration_s": "how long the model may stream (the stream proof checks this long)",
    "family": "the family name in the bundle's folder and manifest (default \"thirdparty\")",
    "decoder": "head transducer: the decoder graph, relative to the encoder's folder",
    "joiner": "head transducer: the joiner graph, relative to the encoder's folder",
}
# Keys of earlier releases, and what they are called now.
RENAMED = {"chunk_frames": "chunk", "shift_frames": "shift", "tokens_list": "tokens"}


def check_keys(spec: dict) -> None:
    """One error line for unknown keys, listing the known ones."""
    unknown = sorted(k for k in spec if k not in SPEC_KEYS)
    if unknown:
        hints = [f"{k!r} is now {RENAMED[k]!r}" for k in unknown if k in RENAMED]
        raise UserError(f"unknown spec key(s) {', '.join(repr(k) for k in unknown)}"
                        + (f" ({'; '.join(hints)})" if hints else "")
                        + f"; the keys are: {', '.join(SPEC_KEYS)}")


ROLES = ("const", "counter")


def check_facts(spec: dict) -> None:
    """name, head and max_duration_s as edge.declare checks them."""
    from edge.declaration import check_facts as declared_facts

    declared_facts(spec.get("name", "thirdparty"), spec.get("head", "ctc"), spec.get("max_duration_s"))


def check_chunk(chunk: int, spec: dict) -> None:
    """The file's chunk and the spec's shift, as edge.declare checks them."""
    from edge.declaration import check_chunk as declared_chunk

    declared_chunk(chunk, spec.get("shift"))


def input_roles(spec: dict) -> dict:
    """The spec's "inputs" as edge.declare's roles: {"role": "const",
    "value": v} is Const(v); {"role": "counter", "step": s, "max": m,
    "start": a} is Counter(name, s, m, a)."""
    from edge.roles import Const, Counter

    roles = {}
    for name, role in (spec.get("inputs") or {}).items():
        kind = role.get("role") if isinstance(role, dict) else None
        if kind == "const":
            roles[name] = Const(role.get("value"))
        elif kind == "counter":
            try:
                step, top = int(role["step"]), int(role["max"])
            except (KeyError, TypeError, ValueError):
                raise UserError(f"counter {name!r} needs integer \"step\" and \"max\"") from None
            roles[name] = Counter(name, step, top, start=role.get("start", 0))
        else:
            raise UserError(f"input {name!r}: role {kind!r} is not one of {ROLES}")
    return roles


_RAW_ARGS = ("sample_rate", "left_pad", "sample_scale")


def frontend_from_spec(given: dict | None, feature_dim: int, raw_input: bool) -> FrontendSpec:
    """FrontendSpec from the spec's "frontend" (its field names). "kind": "raw"
    starts from FrontendSpec.raw()'s settings, so three keys say it all; a
    raw-sample input (layout BT or T) is raw without saying so."""
    given = dict(given or {})
    fields = [f.name for f in dataclasses.fields(FrontendSpec)]
    unknown = sorted(k for k in given if k not in fields)
    if unknown:
        hint = " ('left_context' is 'left_pad')" if "left_context" in unknown else ""
        raise UserError(f"unknown frontend key(s) {', '.join(repr(k) for k in unknown)}{hint}; "
                        f"the keys are: {', '.join(fields)}")
    kind = given.get("kind", "raw" if raw_input else "fbank")
    try:
        if kind == "raw":
            base = FrontendSpec.raw(**{k: given[k] for k in _RAW_ARGS if k in given})
            rest = {k: v for k, v in given.items() if k not in _RAW_ARGS and k != "kind"}
            frontend = dataclasses.replace(base, **rest)
        else:
            frontend = FrontendSpec(**{"num_mel_bins": feature_dim, **given})
    except (SignatureError, TypeError) as e:
        raise UserError(f"spec \"frontend\": {e}") from None
    if frontend.feature_dim != feature_dim:
        raise UserError(f"the feature input has dim {feature_dim}, but the spec's {frontend.kind} frontend makes "
                        f"{frontend.feature_dim}" + (" (raw samples have dim 1: \"layout\": \"BT\")"
                                                      if frontend.kind == "raw" else ""))
    return frontend
