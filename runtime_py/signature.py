"""The signature: the one declaration of a streaming model's contract.

A family declares its signature once; the ONNX export (names, shapes), the
manifest, the model card and the runtime's state allocation are all derived
from it. It is plain data (JSON-serialisable, torch-free) so the torch-free
client can read it back from `manifest.json` or from ONNX metadata.

Conventions
- Every graph is called with its `inputs` followed by its `states`, and
  returns its `outputs` followed by one `<state>_next` per state, in the same
  order. Shapes are fixed (batch 1, fixed chunk): mobile targets need that.
  An ONNX export may opt into a dynamic batch axis (`GraphSpec.dynamic_batch`,
  `StateSpec.batch_groups`); the declared shapes stay those of one stream.
- A state's `reset` scope says when the client returns it to `initial`:
  "utterance" at every endpoint (silence), "session" only when a new stream
  starts. `batch_axis` is None for a state without one (a rank-0 counter).
- `decoder` is the head: "ctc" and "transducer" are decoded by the client;
  "none" (VAD, keyword spotting, embeddings) hands every output to the app
  per chunk.
- A transducer's `decoder_start` is the decoder context it was trained to
  start from: the `context_size` token ids before the first token. None means
  all blanks (our families); icefall and sherpa-onnx start from
  [-1, ..., -1, blank], where -1 is a zero embedding.
- A frontend of kind "raw" feeds samples: one "frame" per sample, feature
  dim 1, `left_pad` zeros before the first sample (a model whose window
  holds past samples).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # 2 added optional fields only: a v1 signature reads unchanged
DTYPES = ("float32", "int64", "int32", "bool")
# The same dtypes as ONNX TensorProto element types (values fixed by the ONNX
# spec; written as numbers so this module needs no onnx), for the exporter and
# the third-party ONNX reader.
ONNX_ELEM_TYPES = {"float32": 1, "int32": 6, "int64": 7, "bool": 9}
# The metadata key under which every format (ONNX metadata_props, CoreML
# user_defined_metadata) embeds the signature as JSON.
METADATA_KEY = "edge.signature"
HEADS = ("ctc", "transducer", "none")
FRONTENDS = ("fbank", "mfcc", "raw")
RESET_SCOPES = ("utterance", "session")
NEXT_SUFFIX = "_next"


class SignatureError(ValueError):
    """A signature (or a manifest holding one) is malformed."""


# A field's annotation -> the values it takes. A manifest is JSON anyone can
# edit: "16", null, true or 1.5 where an int goes is refused here, naming
# the field, instead of failing as a TypeError deep in the frontend.
_FIELD_KINDS = {"int": numbers.Integral, "float": numbers.Real, "str": str, "bool": bool, "dict": dict,
                "int | None": (numbers.Integral, type(None))}


def _check_field_kinds(obj) -> None:
    for f in fields(obj):
        kind = _FIELD_KINDS.get(f.type)
        value = getattr(obj, f.name)
        if kind is None or value is None and f.type == "int | None":
            continue
        if not isinstance(value, kind) or isinstance(value, bool) and f.type != "bool":
            raise SignatureError(f"{type(obj).__name__}.{f.name} must be {f.type.replace(' | None', ' or null')}, "
                                 f"got {value!r}")
        if f.type == "float" and not math.isfinite(value):
            raise SignatureError(f"{type(obj).__name__}.{f.name} must be a finite number, got {value!r}")


def _dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, numbers.Integral):
        raise SignatureError(f"a shape holds whole numbers, got {d!r}")
    return int(d)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    doc: str = ""

    def __post_init__(self):
        _check_field_kinds(self)
        if isinstance(self.shape, (str, bytes, dict)) or not hasattr(self.shape, "__iter__"):
            raise SignatureError(f"tensor {self.name!r}: shape must be a list of sizes, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(_dim(d) for d in self.shape))
        if self.dtype not in DTYPES:
            raise SignatureError(f"tensor {self.name!r}: dtype {self.dtype!r} not in {DTYPES}")
        if any(d <= 0 for d in self.shape):  # rank 0 (a scalar) has no dims and passes
            raise SignatureError(f"tensor {self.name!r}: shape {self.shape} must be positive and fixed")


@dataclass(frozen=True)
class StateSpec(TensorSpec):
    initial: float = 0.0
    batch_axis: int | None = 0
    reset: str = "utterance"
    # Streams stack along batch_axis in `batch_groups` blocks: a layer-major
    # cache [layers * rows, ...] holds, for B streams, [layers * B * rows, ...]
    # (each layer's rows for every stream, then the next layer). Found and
    # written by a dynamic-batch export; 1 (not written) otherwise.
    batch_groups: int = 1

    def __post_init__(self):
        super().__post_init__()
        if self.reset not in RESET_SCOPES:
            raise SignatureError(f"state {self.name!r}: reset {self.reset!r} not in {RESET_SCOPES}")
        if self.batch_axis is not None and not 0 <= self.batch_axis < len(self.shape):
            raise SignatureError(f"state {self.name!r}: batch_axis {self.batch_axis} outside shape {self.shape}"
                                 + (" (a rank-0 state has no batch axis: give batch_axis=None)"
                                    if not self.shape else ""))
        if self.batch_groups < 1 or (self.batch_axis is not None and self.shape[self.batch_axis] % self.batch_groups):
            raise SignatureError(f"state {self.name!r}: batch_groups {self.batch_groups} does not divide "
                                 f"axis {self.batch_axis} of {self.shape}")

    @property
    def next_name(self) -> str:
        return self.name + NEXT_SUFFIX


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    states: tuple[StateSpec, ...] = ()
    doc: str = ""
    # Exported with a dynamic batch axis (an ORT/ONNX-only export option):
    # axis 0 of every input and output, each state's batch_axis. Written only
    # when true, so batch-1 signatures (and v2 manifests) read and serialise
    # exactly as before.
    dynamic_batch: bool = False

    def __post_init__(self):
        _check_field_kinds(self)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs] + [s.name for s in self.states]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs] + [s.next_name for s in self.states]

    def all_inputs(self) -> list[TensorSpec]:
        return list(self.inputs) + list(self.states)

    def all_outputs(self) -> list[TensorSpec]:
        nxt = [TensorSpec(s.next_name, s.shape, s.dtype, f"next value of {s.name}") for s in self.states]
        return list(self.outputs) + nxt


@dataclass(frozen=True)
class FrontendSpec:
    """Kaldi-compatible features. The defaults are kaldi-native-fbank's options
    as sherpa-onnx / icefall use them, with samples scaled to int16 range; in
    sherpa-onnx that scaling is `normalize_samples=False` (see docs/interop.md)."""

    kind: str = "fbank"  # "fbank", "mfcc" or "raw" (samples)
    sample_rate: int = 16000
    num_mel_bins: int = 80
    num_ceps: int = 13  # mfcc only
    frame_length: int = 400  # samples (25 ms)
    frame_shift: int = 160  # samples (10 ms)
    window: str = "povey"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    dither: float = 0.0
    snip_edges: bool = False
    low_freq: float = 20.0
    high_freq: float = -400.0  # <= 0 means Nyquist + high_freq (kaldi)
    sample_scale: float = 32768.0  # float samples in [-1, 1] are scaled to int16 range
    # Global mean/variance normalisation lives inside the model graph.
    normalisation: str = "in-model"
    left_pad: int = 0  # frames of zeros before the stream's first frame (raw: past samples a window holds)

    def __post_init__(self):
        _check_field_kinds(self)
        if self.kind not in FRONTENDS:
            raise SignatureError(f"frontend kind {self.kind!r} must be one of {FRONTENDS}")
        if self.kind == "raw" and (self.frame_length, self.frame_shift) != (1, 1):
            raise SignatureError("a raw frontend has frame_length = frame_shift = 1 sample; use FrontendSpec.raw()")
        if self.left_pad < 0:
            raise SignatureError(f"frontend left_pad={self.left_pad} must be >= 0")

    @classmethod
    def raw(cls, sample_rate: int = 16000, left_pad: int = 0, sample_scale: float = 1.0, *,
            left_context: int | None = None) -> "FrontendSpec":
        """Samples straight into the model: one frame per sample, `left_pad`
        zeros before the first one, float samples times `sample_scale`.
        (`left_context` is the older name of `left_pad`, still accepted.)"""
        return cls(kind="raw", sample_rate=sample_rate, num_mel_bins=1, frame_length=1, frame_shift=1,
                   window="povey", preemphasis=0.0, remove_dc_offset=False, snip_edges=True,
                   sample_scale=sample_scale, normalisation="none",
                   left_pad=left_pad if left_context is None else left_context)

    @property
    def feature_dim(self) -> int:
        return {"fbank": self.num_mel_bins, "mfcc": self.num_ceps, "raw": 1}[self.kind]


@dataclass(frozen=True)
class Signature:
    family: str
    frontend: FrontendSpec
    chunk_frames: int  # feature frames fed per encoder step
    shift_frames: int  # feature frames consumed per step; right context = chunk - shift
    subsampling: int  # feature frames per encoder output frame
    graphs: tuple[GraphSpec, ...]
    vocab_size: int
    blank_id: int = 0
    decoder: str = "ctc"  # the head: "ctc", "transducer" or "none" (outputs go to the app)
    context_size: int = 0  # transducer prediction network context (tokens)
    decoder_start: tuple[int, ...] | None = None  # the context before the first token; None: all blank
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_field_kinds(self)
        if self.subsampling < 1:
            raise SignatureError(f"subsampling={self.subsampling} must be >= 1")
        if self.shift_frames <= 0 or self.chunk_frames < self.shift_frames:
            raise SignatureError(
                f"chunk_frames={self.chunk_frames} must be >= shift_frames={self.shift_frames} > 0")
        if self.shift_frames % self.subsampling:
            raise SignatureError(
                f"shift_frames={self.shift_frames} is not a multiple of subsampling={self.subsampling}")
        if self.decoder not in HEADS:
            raise SignatureError(f"decoder (head) {self.decoder!r} must be one of {HEADS}")
        names = [g.name for g in self.graphs]
        if "encoder" not in names:
            raise SignatureError("a signature needs an 'encoder' graph")
        if len(set(names)) != len(names):
            raise SignatureError(f"duplicate graph names in {names}")
        if self.decoder == "transducer" and not {"decoder", "joiner"} <= set(names):
            raise SignatureError("a transducer signature needs 'decoder' and 'joiner' graphs")
        if self.decoder_start is not None:
            self._check_decoder_start()
            object.__setattr__(self, "decoder_start", tuple(self.decoder_start))  # JSON gives a list

    def _check_decoder_start(self) -> None:
        start = self.decoder_start
        if self.decoder != "transducer":
            raise SignatureError(f"decoder_start is for a transducer; this head is {self.decoder!r}")
        if not isinstance(start, (tuple, list)) or not all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in start):
            raise SignatureError(f"decoder_start must be a list of token ids, got {start!r}")
        if len(start) != self.context_size:
            raise SignatureError(f"decoder_start {list(start)} must hold context_size={self.context_size} ids")
        if any(not -1 <= t < self.vocab_size for t in start):
            raise SignatureError(f"decoder_start {list(start)}: each id must be -1 (no token) or a token id "
                                 f"below vocab_size={self.vocab_size}")

    def start_context(self) -> list[int]:
        """The decoder context a transducer starts (and restarts) from."""
        if self.decoder_start is not None:
            return list(self.decoder_start)
        return [self.blank_id] * self.context_size

    @property
    def right_context(self) -> int:
        return self.chunk_frames - self.shift_frames

    def graph(self, name: str) -> GraphSpec:
        for g in self.graphs:
            if g.name == name:
                return g
        raise KeyError(f"no graph {name!r} in signature of {self.family!r}; have {[g.name for g in self.graphs]}")

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        if d["decoder_start"] is None:  # optional: signatures without it stay as they were
            del d["decoder_start"]
        else:
            d["decoder_start"] = list(d["decoder_start"])
        for g in d["graphs"]:
            if not g["dynamic_batch"]:
                del g["dynamic_batch"]
            for st in g["states"]:
                if st["batch_groups"] == 1:
                    del st["batch_groups"]
            for key in ("inputs", "outputs", "states"):
                for t in g[key]:
                    t["shape"] = list(t["shape"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "Signature":
        try:
            if d.get("schema_version") not in READABLE_SCHEMAS:
                raise SignatureError(
                    f"signature schema_version {d.get('schema_version')!r} is not one of {READABLE_SCHEMAS}; "
                    "rebuild the bundle with this version of the tools")
            d = {**d, "schema_version": SCHEMA_VERSION}
            graphs = tuple(
                GraphSpec(
                    name=g["name"],
                    inputs=tuple(TensorSpec(**t) for t in g["inputs"]),
                    outputs=tuple(TensorSpec(**t) for t in g["outputs"]),
                    states=tuple(StateSpec(**s) for s in g.get("states", ())),
                    doc=g.get("doc", ""),
                    dynamic_batch=bool(g.get("dynamic_batch", False)),
                )
                for g in d["graphs"]
            )
            rest = {k: v for k, v in d.items() if k not in ("graphs", "frontend")}
            return cls(frontend=FrontendSpec(**d["frontend"]), graphs=graphs, **rest)
        except SignatureError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:  # a wrong kind; 1e999
            raise SignatureError(f"malformed signature: {type(e).__name__}: {e}") from None

    @classmethod
    def from_json(cls, s: str) -> "Signature":
        return cls.from_dict(json.loads(s))
