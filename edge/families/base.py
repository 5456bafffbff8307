"""What every streaming family provides, and the registry of families.

A family is a config dataclass plus a `StreamingModel` subclass. The model
declares its `signature()` once; `graph_module(name)` returns a module whose
forward takes the graph's inputs then states (signature order) and returns
its outputs then next states. The exporter, the parity checks, the bundle and
the client all read that declaration.

Export-friendly rules followed by every step function (see docs/exporting.md):
states are never None (zeros of the full shape on the first chunk), no Python
scalars from tensors, masks are additive biases, fixed shapes, attention as
explicit 3-D matmuls, and training-only branches stay in `forward`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..signature import GraphSpec, Signature, StateSpec, TensorSpec

NEG_BIAS = -1.0e4  # additive mask value: finite, so fp16 and softmax stay NaN-free


class GlobalCMVN(nn.Module):
    """Feature normalisation inside the graph, so the device frontend stays a
    plain kaldi fbank. Statistics are set from training data."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.istd.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


def check_chunk(chunk_frames: int, factor: int, what: str) -> None:
    if chunk_frames % factor:
        raise ValueError(f"chunk_frames={chunk_frames} must be a multiple of the subsampling factor "
                         f"{what}={factor}")


def encoder_graph(chunk_frames: int, num_mel_bins: int, output: TensorSpec,
                  states: tuple[StateSpec, ...]) -> GraphSpec:
    """Every family's encoder graph: one chunk of fbank frames in, its output
    and the family's states."""
    return GraphSpec("encoder",
                     inputs=(TensorSpec("x", (1, chunk_frames, num_mel_bins), doc="fbank frames of one chunk"),),
                     outputs=(output,), states=states)


class StreamingModel(nn.Module):
    """Base for the families. Subclasses set `family` and implement the hooks."""

    family: str = ""

    def __init__(self, config):
        super().__init__()
        self.config = config

    # -- declared once -----------------------------------------------------
    def plan(self) -> Signature:
        """The signature the family means to have (checked against the declaration)."""
        raise NotImplementedError

    def step_fns(self) -> dict[str, Callable]:
        """graph name -> fn(*inputs, *states) -> (*outputs, *next_states)."""
        raise NotImplementedError

    def signature(self) -> Signature:
        """The frozen signature (a built-in family: its plan through edge.declare, see _family_model.py)."""
        raise NotImplementedError

    def graph_module(self, name: str) -> nn.Module:
        """A module with forward(*inputs, *states) -> (*outputs, *next_states)."""
        raise NotImplementedError

    # -- offline reference and training ------------------------------------
    def forward(self, feats: torch.Tensor, lengths: torch.Tensor):
        """Batched whole-utterance run with the same limited context as the
        streaming step: returns (encoder outputs, output lengths)."""
        raise NotImplementedError

    def cmvn(self) -> GlobalCMVN:
        return self.encoder_cmvn

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size


# -- registry -----------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    model_cls: type
    doc: str

    def config_from_dict(self, d: dict):
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown config keys {unknown}; known: {sorted(fields)}")
        return self.config_cls(**d)

    def build(self, config=None, **overrides) -> StreamingModel:
        config = config or self.config_cls()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        return self.model_cls(config)


REGISTRY: dict[str, Family] = {}


def register(name: str, config_cls: type, doc: str):
    def deco(model_cls):
        model_cls.family = name
        REGISTRY[name] = Family(name, config_cls, model_cls, doc)
        return model_cls
    return deco


def get_family(name: str) -> Family:
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown family {name!r}.{hint} Registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
