"""Transducer: streaming LSTM encoder, stateless prediction network, joiner.

Three graphs. The prediction network sees only the last `context_size` tokens
(blank-padded at the start), so it carries no state and the decoder graph is a
pure function of its input; the client keeps the token context. Projections
into the joiner space are done in the encoder and decoder graphs, so the
joiner, which runs once per frame and emitted symbol, is one add, a tanh and
a matmul. This is the layout sherpa-onnx's LSTM transducer expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..signature import FrontendSpec, GraphSpec, Signature, TensorSpec
from .base import check_chunk, encoder_graph, register
from ._family_model import FamilyModel
from .lstm import LstmEncoder


@dataclass(frozen=True)
class TransducerConfig:
    vocab_size: int = 47
    num_mel_bins: int = 80
    stack: int = 4
    hidden: int = 256
    num_layers: int = 3
    chunk_frames: int = 16
    joiner_dim: int = 256
    decoder_dim: int = 128  # token embedding size
    context_size: int = 2
    blank_id: int = 0
    dropout: float = 0.1


class StatelessDecoder(nn.Module):
    """Embeds the last `context_size` tokens and mixes them with one linear."""

    def __init__(self, vocab: int, dim: int, context: int, joiner_dim: int, blank_id: int):
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab, dim, padding_idx=blank_id)
        self.mix = nn.Linear(dim * context, dim)
        self.proj = nn.Linear(dim, joiner_dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # y [..., context] int64 -> [..., joiner_dim]
        e = self.embed(y)
        e = e.reshape(*y.shape[:-1], e.shape[-1] * self.context)
        return self.proj(torch.relu(self.mix(e)))


class Joiner(nn.Module):
    def __init__(self, joiner_dim: int, vocab: int):
        super().__init__()
        self.out = nn.Linear(joiner_dim, vocab)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(enc + dec))


@register("transducer", TransducerConfig,
          "transducer: LSTM encoder, stateless prediction network (fixed context), joiner; three graphs")
class Transducer(FamilyModel):
    def __init__(self, config: TransducerConfig):
        super().__init__(config)
        c = config
        check_chunk(c.chunk_frames, c.stack, "stack")
        self.encoder = LstmEncoder(c.num_mel_bins, c.stack, c.hidden, c.num_layers, c.dropout)
        self.encoder_proj = nn.Linear(c.hidden, c.joiner_dim)
        self.decoder = StatelessDecoder(c.vocab_size, c.decoder_dim, c.context_size, c.joiner_dim, c.blank_id)
        self.joiner = Joiner(c.joiner_dim, c.vocab_size)
        self.encoder_cmvn = self.encoder.cmvn

    def plan(self) -> Signature:
        c = self.config
        out = TensorSpec("encoder_out", (1, c.chunk_frames // c.stack, c.joiner_dim), doc="encoder frames, projected")
        encoder = encoder_graph(c.chunk_frames, c.num_mel_bins, out, self.encoder.state_specs())
        decoder = GraphSpec(
            "decoder",
            inputs=(TensorSpec("y", (1, c.context_size), "int64",
                               doc="last context_size tokens, blank-padded at the start"),),
            outputs=(TensorSpec("decoder_out", (1, c.joiner_dim), doc="prediction network output, projected"),),
        )
        joiner = GraphSpec(
            "joiner",
            inputs=(TensorSpec("encoder_out", (1, c.joiner_dim), doc="one encoder frame"),
                    TensorSpec("decoder_out", (1, c.joiner_dim), doc="current decoder output")),
            outputs=(TensorSpec("logits", (1, c.vocab_size), doc="unnormalised token scores"),),
        )
        return Signature("transducer", FrontendSpec(num_mel_bins=c.num_mel_bins), c.chunk_frames,
                         c.chunk_frames, c.stack, (encoder, decoder, joiner), c.vocab_size,
                         blank_id=c.blank_id, decoder="transducer", context_size=c.context_size)

    def encoder_step(self, x, h, c):
        y, h, c = self.encoder(x, h, c)
        return self.encoder_proj(y), h, c

    def decoder_step(self, y):
        return self.decoder(y)

    def joiner_step(self, enc, dec):
        return self.joiner(enc, dec)

    def step_fns(self) -> dict:
        return {"encoder": self.encoder_step, "decoder": self.decoder_step, "joiner": self.joiner_step}

    def forward(self, feats, lengths):
        y, out_lens = self.encoder.offline(feats, lengths)
        return self.encoder_proj(y), out_lens
