"""LSTM encoder with a CTC head. States: h and c of every layer.

Subsampling is frame stacking (4 frames -> one vector): it needs no cache and
keeps the state to exactly (h, c), the layout sherpa-onnx's LSTM transducer
also uses, so the Transducer family reuses this encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..signature import FrontendSpec, Signature, StateSpec, TensorSpec
from .base import GlobalCMVN, check_chunk, encoder_graph, register
from ._family_model import FamilyModel


@dataclass(frozen=True)
class LstmConfig:
    vocab_size: int = 47
    num_mel_bins: int = 80
    stack: int = 4  # subsampling by frame stacking
    hidden: int = 256
    num_layers: int = 3
    chunk_frames: int = 16  # 160 ms of features per step
    dropout: float = 0.1


class LstmEncoder(nn.Module):
    """Frame stacking -> linear -> unidirectional LSTM. Causal by construction,
    so the whole-utterance run is the streaming run."""

    def __init__(self, num_mel_bins: int, stack: int, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        self.stack = stack
        self.cmvn = GlobalCMVN(num_mel_bins)
        self.input = nn.Linear(num_mel_bins * stack, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)

    def _stack(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        return x.reshape(b, t // self.stack, f * self.stack)

    def forward(self, x, h, c):
        y = torch.relu(self.input(self._stack(self.cmvn(x))))
        y, (h_next, c_next) = self.lstm(self.dropout(y), (h, c))
        return self.dropout(y), h_next, c_next

    def offline(self, feats: torch.Tensor, lengths: torch.Tensor):
        b, t, _ = feats.shape
        t4 = t - t % self.stack
        zeros = feats.new_zeros(self.lstm.num_layers, b, self.lstm.hidden_size)
        y, _, _ = self.forward(feats[:, :t4], zeros, zeros)
        return y, torch.div(lengths, self.stack, rounding_mode="floor")

    def state_specs(self) -> tuple[StateSpec, ...]:
        shape = (self.lstm.num_layers, 1, self.lstm.hidden_size)
        return (
            StateSpec("h", shape, doc="LSTM hidden state per layer", batch_axis=1),
            StateSpec("c", shape, doc="LSTM cell state per layer", batch_axis=1),
        )


@register("lstm", LstmConfig, "unidirectional LSTM encoder, CTC head, states h/c")
class LstmCtc(FamilyModel):
    def __init__(self, config: LstmConfig):
        super().__init__(config)
        check_chunk(config.chunk_frames, config.stack, "stack")
        self.encoder = LstmEncoder(config.num_mel_bins, config.stack, config.hidden,
                                   config.num_layers, config.dropout)
        self.ctc = nn.Linear(config.hidden, config.vocab_size)
        self.encoder_cmvn = self.encoder.cmvn

    def plan(self) -> Signature:
        c = self.config
        out = TensorSpec("log_probs", (1, c.chunk_frames // c.stack, c.vocab_size), doc="CTC log-probabilities")
        encoder = encoder_graph(c.chunk_frames, c.num_mel_bins, out, self.encoder.state_specs())
        return Signature("lstm", FrontendSpec(num_mel_bins=c.num_mel_bins), c.chunk_frames, c.chunk_frames,
                         c.stack, (encoder,), c.vocab_size, decoder="ctc")

    def step(self, x, h, c):
        y, h, c = self.encoder(x, h, c)
        return torch.log_softmax(self.ctc(y), dim=-1), h, c

    def step_fns(self) -> dict:
        return {"encoder": self.step}

    def forward(self, feats, lengths):
        y, out_lens = self.encoder.offline(feats, lengths)
        return torch.log_softmax(self.ctc(y), dim=-1), out_lens
