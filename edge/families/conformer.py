"""Chunked Conformer with a CTC head.

Streaming design (each choice keeps streaming == offline exact):
- Subsampling: two causal Conv1d (kernel 3, stride 2). Each keeps its last
  input frame as a cache, which is what a zero left pad gives offline.
- Attention: a query sees its whole chunk plus `left_context` earlier encoder
  frames. Each layer caches the keys and values of those frames
  (`attn_cache`), and `attn_valid` marks which cache slots hold real frames
  (zeros at the start of an utterance), applied as an additive bias.
- Positions: a learned bias per head indexed by the *relative* distance
  between query and key, which is bounded by the window. No absolute frame
  index exists anywhere, so nothing can overflow after hours of streaming.
- Convolution module: causal depthwise conv; each layer caches its last
  kernel-1 inputs (`conv_cache`).
- Attention is written as batched 3-D matmuls (no nn.MultiheadAttention,
  no 4-D tensors in the batch-1 step), which onnx2tf and coremltools convert
  cleanly.

The streaming step (`step`, what is exported) computes the same function as
the offline forward used in training, in a form that costs fewer and cheaper
kernels per chunk on a phone CPU (measured in docs/benchmarks.md):
- the attention cache holds the past frames' keys and values, so only the
  chunk's own frames are projected, by one fused q|k|v matmul;
- the time convolutions run as im2col matmuls (subsampling) and as a
  gather-multiply-sum (depthwise), instead of Conv kernels with layout
  transposes around them;
- the per-layer caches are stacked layer-major along axis 0, so one Split and
  one Concat move them in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..signature import FrontendSpec, Signature, StateSpec, TensorSpec
from .base import NEG_BIAS, GlobalCMVN, check_chunk, encoder_graph, register
from ._family_model import FamilyModel


@dataclass(frozen=True)
class ConformerConfig:
    vocab_size: int = 47
    num_mel_bins: int = 80
    d_model: int = 128
    num_heads: int = 4
    ffn_dim: int = 512
    num_layers: int = 4
    conv_kernel: int = 15
    chunk_frames: int = 32  # feature frames per step (320 ms) -> 8 encoder frames
    left_context: int = 32  # encoder frames of attention history (1.28 s)
    dropout: float = 0.1


SUBSAMPLING = 4


class CausalSubsampling(nn.Module):
    """Two causal Conv1d(k=3, s=2) + ReLU over time; 4x fewer frames."""

    def __init__(self, idim: int, odim: int):
        super().__init__()
        self.conv1 = nn.Conv1d(idim, odim, 3, stride=2)
        self.conv2 = nn.Conv1d(odim, odim, 3, stride=2)

    @staticmethod
    def _conv(conv: nn.Conv1d, x: torch.Tensor, cache: torch.Tensor, im2col: bool):
        # x [B, T, C], cache [B, 1, C]: the previous input frame (zeros at start).
        xin = torch.cat([cache, x], dim=1)
        if im2col:  # the same conv as one matmul: output t sees frames 2t..2t+2, flattened (tap, channel)
            n = (xin.shape[1] - 3) // 2 + 1
            w = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)  # [O, 3*I]: folded on export
            y = torch.relu(nn.functional.linear(windows(xin, n, 3, 2), w, conv.bias))
        else:
            y = torch.relu(conv(xin.transpose(1, 2))).transpose(1, 2)
        return y, xin[:, -1:, :]

    def forward(self, x, cache1, cache2, im2col: bool = False):
        """im2col=True is the streaming step's form (no Conv kernel, no layout
        transposes; a matmul that int8 quantisation covers too)."""
        y, cache1 = self._conv(self.conv1, x, cache1, im2col)
        y, cache2 = self._conv(self.conv2, y, cache2, im2col)
        return y, cache1, cache2


def windows(x: torch.Tensor, n: int, kernel: int, stride: int) -> torch.Tensor:
    """[B, T, C] -> [B, n, kernel*C]: the `kernel` frames output t sees,
    starting at t*stride, flattened tap-major (one Gather, 3-D tensors only)."""
    idx = (torch.arange(n)[:, None] * stride + torch.arange(kernel)[None, :]).reshape(-1)
    return x[:, idx, :].reshape(x.shape[0], n, kernel * x.shape[2])


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.w1 = nn.Linear(d, hidden)
        self.w2 = nn.Linear(hidden, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, scale: float = 1.0):
        # `scale` (the Conformer's half-step 0.5) goes into w2: a power of two,
        # so the result is the same as scaling the output, one Mul fewer.
        h = self.dropout(nn.functional.silu(self.w1(self.norm(x))))
        return self.dropout(nn.functional.linear(h, self.w2.weight * scale, self.w2.bias * scale))


class ChunkAttention(nn.Module):
    """Multi-head self-attention over [left cache | chunk] with a learned
    relative-position bias. All heads go through one batched matmul: heads are
    folded into the batch axis ([B*H, T, dk]). With batch 1, as in every
    exported step, that takes only 3-D tensors (onnx2tf re-lays out 4-D ones,
    see docs/exporting.md); training batches (B > 1) pass through 4-D views."""

    def __init__(self, d: int, heads: int, chunk: int, left: int, dropout: float):
        super().__init__()
        self.heads, self.dk = heads, d // heads
        self.chunk, self.left = chunk, left
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d)
        # distance (query - key) ranges over [-(chunk-1), left + chunk - 1]
        self.pos_bias = nn.Parameter(torch.zeros(heads, left + 2 * chunk - 1))
        self.dropout = nn.Dropout(dropout)

    def _rel_index(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        dist = q_pos[:, None] - k_pos[None, :] + (self.chunk - 1)
        return dist.clamp(0, self.pos_bias.shape[1] - 1)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B*H, T, dk] (batch-major, head-minor)."""
        b, t, _ = x.shape
        if b == 1:
            return x.reshape(t, self.heads, self.dk).transpose(0, 1)
        return x.reshape(b, t, self.heads, self.dk).transpose(1, 2).reshape(b * self.heads, t, self.dk)

    def _merge_heads(self, y: torch.Tensor, b: int) -> torch.Tensor:
        """[B*H, T, dk] -> [B, T, D]."""
        t = y.shape[1]
        if b == 1:
            return y.transpose(0, 1).reshape(1, t, self.heads * self.dk)
        return y.reshape(b, self.heads, t, self.dk).transpose(1, 2).reshape(b, t, self.heads * self.dk)

    def _bias(self, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Position bias [H, Tq, Tk] plus mask [B, Tq or 1, Tk] -> [B*H, Tq, Tk]."""
        pos = self.pos_bias[:, idx]
        b = mask.shape[0]
        if b == 1:
            return pos + mask
        return (pos.unsqueeze(0) + mask.unsqueeze(1)).reshape(b * self.heads, *pos.shape[1:])

    def attend(self, q_in, kv_in, bias):
        """q_in [B, Tq, D], kv_in [B, Tk, D], bias [B*H, Tq, Tk] (from step_bias/offline_bias)."""
        b = q_in.shape[0]
        q = self._split_heads(self.q(q_in) * self.dk ** -0.5)
        k = self._split_heads(self.k(kv_in))
        v = self._split_heads(self.v(kv_in))
        att = self.dropout(torch.softmax(torch.matmul(q, k.transpose(1, 2)) + bias, dim=-1))
        return self.out(self._merge_heads(torch.matmul(att, v), b))

    def step(self, xn, cache, bias):
        """One chunk. xn [B, C, D]: normalised inputs; cache [B*2H, left, dk]:
        keys (heads 0..H-1) then values (H..2H-1) of the last `left` frames;
        bias from step_bias. Returns (output [B, C, D], next cache). q, k and v
        come from one matmul over the chunk's frames only; the 1/sqrt(dk) of
        the scores is folded into the q weights."""
        b, t, _ = xn.shape
        h, dk = self.heads, self.dk
        scale = dk ** -0.5
        w = torch.cat([self.q.weight * scale, self.k.weight, self.v.weight])  # folded to one constant on export
        bias_qkv = torch.cat([self.q.bias * scale, self.k.bias, self.v.bias])
        qkv = nn.functional.linear(xn, w, bias_qkv)  # [B, C, 3D]
        if b == 1:
            heads = qkv.reshape(t, 3 * h, dk).transpose(0, 1)  # [3H, C, dk]
            q, kv_new = heads.split([h, 2 * h], dim=0)
            kv = torch.cat([cache, kv_new], dim=1)  # [2H, left + C, dk]
            k, v = kv.split([h, h], dim=0)
        else:
            heads = qkv.reshape(b, t, 3 * h, dk).transpose(1, 2)  # [B, 3H, C, dk]
            q = heads[:, :h].reshape(b * h, t, dk)
            kv = torch.cat([cache.reshape(b, 2 * h, -1, dk), heads[:, h:]], dim=2)  # [B, 2H, left + C, dk]
            k, v = kv[:, :h].reshape(b * h, -1, dk), kv[:, h:].reshape(b * h, -1, dk)
            kv = kv.reshape(b * 2 * h, -1, dk)
        att = torch.softmax(torch.matmul(q, k.transpose(1, 2)) + bias, dim=-1)
        out = self.out(self._merge_heads(torch.matmul(att, v), b))
        return out, kv[:, kv.shape[1] - cache.shape[1]:, :]

    def step_bias(self, valid: torch.Tensor) -> torch.Tensor:
        # Positions are constants of the fixed chunk shape: traced as constants,
        # so the position part is folded into one initializer by ONNX Runtime.
        q_pos = torch.arange(self.chunk) + self.left
        k_pos = torch.arange(self.left + self.chunk)
        idx = self._rel_index(q_pos, k_pos)  # [C, K+C]
        kv_valid = torch.cat([valid, torch.ones_like(valid[:, :1]).expand(valid.shape[0], self.chunk)], dim=1)
        mask = ((kv_valid - 1.0) * -NEG_BIAS).unsqueeze(1)  # [B, 1, K+C]: 0 or NEG_BIAS
        return self._bias(idx, mask)

    def offline_bias(self, t: int, lengths: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(t, device=lengths.device)
        chunk_id = torch.div(pos, self.chunk, rounding_mode="floor")
        lo = chunk_id * self.chunk - self.left  # first key a query may see
        hi = (chunk_id + 1) * self.chunk  # one past the last
        allowed = (pos[None, :] >= lo[:, None]) & (pos[None, :] < hi[:, None])  # [T, T]
        key_ok = pos[None, :] < lengths[:, None]  # [B, T]
        ok = allowed[None] & key_ok[:, None, :]
        mask = torch.where(ok, 0.0, NEG_BIAS)  # [B, T, T]
        return self._bias(self._rel_index(pos, pos), mask)


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, kernel, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.kernel = kernel

    def forward(self, x, cache, gather: bool = False):
        """cache [B, kernel-1, D]: the last inputs of the depthwise conv.
        gather=True is the streaming step's form of the depthwise conv."""
        y = nn.functional.glu(self.pw1(self.norm(x)), dim=-1)
        yin = torch.cat([cache, y], dim=1)
        if gather:
            y = self._depthwise_gather(yin, y.shape[1])
        else:
            y = self.dw(yin.transpose(1, 2)).transpose(1, 2)
        y = self.pw2(nn.functional.silu(self.dw_norm(y)))
        return self.dropout(y), yin[:, yin.shape[1] - (self.kernel - 1):, :]

    def _depthwise_gather(self, yin: torch.Tensor, t: int) -> torch.Tensor:
        """The depthwise conv as gather-multiply-sum: [kernel, D] weights times
        the kernel frames each of the last t outputs sees. In ONNX Runtime a
        depthwise Conv on 8 frames costs ~22 us, mostly overhead, plus two
        layout transposes; this form ~10 us (docs/benchmarks.md)."""
        b, _, d = yin.shape
        k = self.kernel
        w = self.dw.weight[:, 0, :].t().unsqueeze(1)  # [kernel, 1, D]
        idx = (torch.arange(k)[:, None] + torch.arange(t)[None, :]).reshape(-1)  # tap-major
        u = yin[:, idx, :]  # [B, kernel*t, D]: tap j of output i at row j*t + i
        if b == 1:  # 3-D only: [kernel, t, D] summed over taps, keepdim gives [1, t, D]
            return (u.reshape(k, t, d) * w).sum(0, keepdim=True) + self.dw.bias
        return (u.reshape(b, k, t, d) * w).sum(1) + self.dw.bias


class ConformerBlock(nn.Module):
    def __init__(self, c: ConformerConfig, chunk_out: int):
        super().__init__()
        self.ff1 = FeedForward(c.d_model, c.ffn_dim, c.dropout)
        self.att_norm = nn.LayerNorm(c.d_model)
        self.att = ChunkAttention(c.d_model, c.num_heads, chunk_out, c.left_context, c.dropout)
        self.conv = ConvModule(c.d_model, c.conv_kernel, c.dropout)
        self.ff2 = FeedForward(c.d_model, c.ffn_dim, c.dropout)
        self.norm = nn.LayerNorm(c.d_model)
        self.dropout = nn.Dropout(c.dropout)

    def step(self, x, bias, att_cache, conv_cache):
        x = x + self.ff1(x, 0.5)
        a, att_cache = self.att.step(self.att_norm(x), att_cache, bias)
        x = x + a
        y, conv_cache = self.conv(x, conv_cache, gather=True)
        x = x + y
        x = x + self.ff2(x, 0.5)
        return self.norm(x), att_cache, conv_cache

    def offline(self, x, bias, conv_zero):
        x = x + self.ff1(x, 0.5)
        xn = self.att_norm(x)
        x = x + self.dropout(self.att.attend(xn, xn, bias))
        y, _ = self.conv(x, conv_zero)
        x = x + y
        x = x + self.ff2(x, 0.5)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    def __init__(self, c: ConformerConfig):
        super().__init__()
        check_chunk(c.chunk_frames, SUBSAMPLING, "subsampling")
        if c.d_model % c.num_heads:
            raise ValueError(f"d_model={c.d_model} must be divisible by num_heads={c.num_heads}")
        self.c = c
        self.chunk_out = c.chunk_frames // SUBSAMPLING
        self.cmvn = GlobalCMVN(c.num_mel_bins)
        self.subsampling = CausalSubsampling(c.num_mel_bins, c.d_model)
        self.layers = nn.ModuleList(ConformerBlock(c, self.chunk_out) for _ in range(c.num_layers))

    def state_specs(self) -> tuple[StateSpec, ...]:
        c = self.c
        return (
            StateSpec("sub1_cache", (1, 1, c.num_mel_bins), doc="last input frame of subsampling conv 1"),
            StateSpec("sub2_cache", (1, 1, c.d_model), doc="last input frame of subsampling conv 2"),
            StateSpec("attn_cache", (c.num_layers * 2 * c.num_heads, c.left_context, c.d_model // c.num_heads),
                      doc="keys then values per head of the last left_context frames; layer-major "
                          "(rows l*2H .. l*2H+2H-1 are layer l; a batch of B streams has B*2H rows per layer)"),
            StateSpec("attn_valid", (1, c.left_context),
                      doc="1 where the attention cache holds a real frame of this utterance"),
            StateSpec("conv_cache", (c.num_layers, c.conv_kernel - 1, c.d_model),
                      doc="last kernel-1 inputs of the depthwise convolution; layer-major "
                          "(row l is layer l; a batch of B streams has B rows per layer)"),
        )

    def step(self, x, sub1, sub2, att_cache, att_valid, conv_cache):
        y, sub1, sub2 = self.subsampling(self.cmvn(x), sub1, sub2, im2col=True)
        bias = self.layers[0].att.step_bias(att_valid)
        n = len(self.layers)
        att_out, conv_out = [], []
        for layer, a, cv in zip(self.layers, att_cache.chunk(n, 0), conv_cache.chunk(n, 0)):
            y, a, cv = layer.step(y, bias, a, cv)
            att_out.append(a)
            conv_out.append(cv)
        left = att_valid.shape[1]
        valid = torch.cat([att_valid, torch.ones_like(att_valid[:, :1]).expand(att_valid.shape[0], self.chunk_out)], 1)
        return (y, sub1, sub2, torch.cat(att_out), valid[:, valid.shape[1] - left:],
                torch.cat(conv_out))

    def offline(self, feats, lengths):
        b, t, _ = feats.shape
        x = self.cmvn(feats)
        zeros1 = x.new_zeros(b, 1, x.shape[2])
        zeros2 = x.new_zeros(b, 1, self.c.d_model)
        y, _, _ = self.subsampling(x[:, : t - t % SUBSAMPLING], zeros1, zeros2)
        out_lens = torch.div(lengths, SUBSAMPLING, rounding_mode="floor")
        bias = self.layers[0].att.offline_bias(y.shape[1], out_lens)
        conv_zero = y.new_zeros(b, self.c.conv_kernel - 1, self.c.d_model)
        for layer in self.layers:
            y = layer.offline(y, bias, conv_zero)
        return y, out_lens


@register("conformer", ConformerConfig, "chunked Conformer encoder, CTC head, attention and conv caches")
class ConformerCtc(FamilyModel):
    def __init__(self, config: ConformerConfig):
        super().__init__(config)
        self.encoder = ConformerEncoder(config)
        self.ctc = nn.Linear(config.d_model, config.vocab_size)
        self.encoder_cmvn = self.encoder.cmvn

    def plan(self) -> Signature:
        c = self.config
        out = TensorSpec("log_probs", (1, c.chunk_frames // SUBSAMPLING, c.vocab_size), doc="CTC log-probabilities")
        encoder = encoder_graph(c.chunk_frames, c.num_mel_bins, out, self.encoder.state_specs())
        return Signature("conformer", FrontendSpec(num_mel_bins=c.num_mel_bins), c.chunk_frames,
                         c.chunk_frames, SUBSAMPLING, (encoder,), c.vocab_size, decoder="ctc",
                         extra={"left_context": c.left_context})

    def step(self, x, *states):
        y, *next_states = self.encoder.step(x, *states)
        return (torch.log_softmax(self.ctc(y), dim=-1), *next_states)

    def step_fns(self) -> dict:
        return {"encoder": self.step}

    def forward(self, feats, lengths):
        y, out_lens = self.encoder.offline(feats, lengths)
        return torch.log_softmax(self.ctc(y), dim=-1), out_lens
