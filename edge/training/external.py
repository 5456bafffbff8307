"""`edge-train --model FILE.py:FUNCTION`: train a transducer that your own
file builds (e.g. `examples/zipformer_factory.py:trainable_small`, icefall's
Zipformer2), with the same batching, features, RNN-T loss, distillation,
schedule and validation as the built-in families.

FUNCTION(tokens) gets the corpus's token list and returns a `Trainable`: the
modules in training form (an offline batched encoder, a decoder over token
contexts, a joiner), the streaming model over the *same* modules (what
validation decodes, and what a bundle exports), and the weights to save.
Features have no CMVN here: the model gets the frontend's fbank as it is
(as icefall trains), so the frontend is the streaming model's own."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class TrainableConfig:
    """What the loop needs to know of the model: `hidden` is the size of the
    encoder output the distillation head reads; `size` is recorded in the
    checkpoint's metadata (the factory's configuration)."""

    hidden: int
    context_size: int
    blank_id: int
    size: dict = dataclasses.field(default_factory=dict)


class _Offline:
    def __init__(self, encode: Callable):
        self.offline = encode


class Trainable(nn.Module):
    """A transducer in the shape the training loop expects (the built-in
    transducer family's): `encoder.offline(x, lens) -> (hidden [B, T, H], out_lens)`,
    `encoder_proj(hidden) -> [B, T, J]`, `decoder(contexts [B, U+1, C]) -> [B, U+1, J]`,
    `joiner(enc [B, T, 1, J], dec [B, 1, U+1, J]) -> logits [B, T, U+1, V]`.
    The decoder is trained from the streaming model's declared `decoder_start`."""

    external = True  # the loop's marker: no CMVN inside, weights saved as `weights()`

    def __init__(self, config: TrainableConfig, weights: nn.Module, encode: Callable, encoder_proj: Callable,
                 decoder: Callable, joiner: Callable, streaming: Callable[[], nn.Module],
                 on_step: Callable[[int], None] | None = None):
        super().__init__()
        self.on_step = on_step or (lambda step: None)  # called before every training step with its number
        self.config = config
        self.weights = weights  # the one registered module (e.g. the AsrModel): its state_dict is the checkpoint
        self.encoder = _Offline(encode)  # callables below are not submodules: weights holds every parameter
        self.encoder_proj, self._decoder, self._joiner = encoder_proj, decoder, joiner
        self._streaming_fn = streaming
        self._streaming = []  # [StreamingModel] once made; a list, so nn.Module does not register it

    def decoder(self, contexts: torch.Tensor) -> torch.Tensor:
        return self._decoder(contexts)

    def joiner(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return self._joiner(enc, dec)

    def streaming_model(self):
        """The StreamingModel (edge.declare) over these modules, made once."""
        if not self._streaming:
            was = self.training
            self._streaming.append(self._streaming_fn())
            self.train(was)  # declaring puts the modules in eval mode
        return self._streaming[0]

    def signature(self):
        return self.streaming_model().signature()

    @property
    def vocab_size(self) -> int:
        return self.signature().vocab_size


def build_trainable(spec: str, tokens: list[str]) -> Trainable:
    """Import FILE.py:FUNCTION (edge.factory's rules and error lines) and call it with the tokens."""
    from ..errors import UserError
    from ..factory import load_module

    target, sep, func = str(spec).rpartition(":")
    if not sep or not target or not func.isidentifier():
        raise UserError(f"--model takes FILE.py:FUNCTION (e.g. examples/zipformer_factory.py:trainable_small); "
                        f"got {spec!r}")
    module, origin = load_module(target)
    factory = getattr(module, func, None)
    if not callable(factory):
        raise UserError(f"{origin} has no function {func!r}")
    model = factory(tokens)
    if not isinstance(model, Trainable):
        raise UserError(f"{origin}:{func}(tokens) returned a {type(model).__name__}; for edge-train it must "
                        "return an edge.training.external.Trainable")
    if model.signature().decoder != "transducer":
        raise UserError(f"{origin}:{func}: edge-train --model trains transducers only")
    return model


def save_weights(model: Trainable, path: Path | str, tokens: list[str], meta: dict) -> Path:
    """{"model": the weights' state_dict, "tokens", "meta"}: icefall's checkpoint layout, so a
    factory loads it with `state.get("model", state)`; tokens.txt is written next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": {k: v.detach().cpu().contiguous() for k, v in model.weights.state_dict().items()},
               "tokens": list(tokens), "meta": dict(meta)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path
