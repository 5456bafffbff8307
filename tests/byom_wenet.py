"""A WeNet-style U2++ conformer, written the way WeNet writes its streaming
encoder (`forward_chunk`). Its size is a `WenetConfig`: `TOY` (0.19 M
parameters, small enough for the default test suite; `declare_wenet_style`)
and `DEPLOY` (the size of WeNet's streaming U2++ conformer recipe, about
34 M parameters with its CTC head; `declare_wenet_style_deploy`, for
benchmarks).

What makes it WeNet-like, and hard for converters:
- `forward_chunk(xs, offset, required_cache_size, att_cache, cnn_cache,
  att_mask)` with one stacked attention cache `[layers, heads, cache, 2 d_k]`
  (keys and values side by side) and one stacked conv cache
  `[layers, 1, d, kernel - 1]`;
- a 0-dim int64 `offset` that starts at the cache size ("16/4 mode": a real
  cache of zeros and a mask hiding it on the first chunk) and slices a
  sinusoidal table `pe[:, offset - cache : offset - cache + size]`, a Slice
  whose start is data;
- relative-position attention with `pos_bias_u` / `pos_bias_v` and a
  bias-free `linear_pos`, masked by `masked_fill(-inf)`;
- a Conv2d subsampling front end (4x) and a causal depthwise conv module.

Nothing here knows about edge-speech except the `declare_*` functions at the bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import edge

MAX_LEN = 5000  # the positional table's length, as WeNet's default


@dataclass(frozen=True)
class WenetConfig:
    feats: int = 20  # mel bins
    d: int = 64  # WeNet's output_size (attention dimension)
    heads: int = 4
    layers: int = 2  # num_blocks
    ffn: int = 128  # linear_units
    kernel: int = 7  # cnn_module_kernel
    vocab: int = 32  # CTC output units
    chunk: int = 4  # encoder frames per chunk (decoding_chunk_size)
    left_chunks: int = 2  # num_decoding_left_chunks

    @property
    def cache(self) -> int:  # WeNet's required_cache_size
        return self.chunk * self.left_chunks

    @property
    def window(self) -> int:  # feature frames per chunk (4x subsampling, 6 frames of context + 1)
        return (self.chunk - 1) * 4 + 7


TOY = WenetConfig()
# WeNet's examples/aishell/s0/conf/train_u2++_conformer.yaml: 80 mel bins, output_size 256,
# attention_heads 4, num_blocks 12, linear_units 2048, cnn_module_kernel 8 (its
# train_unified_conformer.yaml has 15), a char table of 4233 units (<sos/eos> is id 4232);
# its run.sh decodes with decoding_chunk_size 16, and wenet/bin/export_onnx_cpu.py's
# "16/4 mode" streams 16-frame chunks with 4 left chunks (required_cache_size 64).
DEPLOY = WenetConfig(feats=80, d=256, heads=4, layers=12, ffn=2048, kernel=8, vocab=4233, chunk=16, left_chunks=4)

# The toy's sizes as module constants, for the tests that import them.
FEATS, D, HEADS, LAYERS, FFN, KERNEL, VOCAB = (TOY.feats, TOY.d, TOY.heads, TOY.layers, TOY.ffn, TOY.kernel,
                                               TOY.vocab)
CHUNK, LEFT_CHUNKS, CACHE, WINDOW = TOY.chunk, TOY.left_chunks, TOY.cache, TOY.window


class RelPositionalEncoding(nn.Module):
    def __init__(self, d: int, max_len: int = MAX_LEN):
        super().__init__()
        self.xscale = math.sqrt(d)
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * -(math.log(10000.0) / d))
        pe = torch.zeros(max_len, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("pe", pe[None])  # [1, max_len, d]: WeNet keeps the batch axis

    def position_encoding(self, offset, size: int):
        return self.pe[:, offset:offset + size]  # offset: a 0-dim tensor in streaming


class Subsampling4(nn.Module):
    def __init__(self, cfg: WenetConfig):
        super().__init__()
        d = cfg.d
        self.conv = nn.Sequential(nn.Conv2d(1, d, 3, 2), nn.ReLU(), nn.Conv2d(d, d, 3, 2), nn.ReLU())
        self.out = nn.Linear(d * (((cfg.feats - 1) // 2 - 1) // 2), d)
        self.pos_enc = RelPositionalEncoding(d)

    def forward(self, x):
        x = self.conv(x.unsqueeze(1))  # [B, D, T', F']
        b, c, t, f = x.size()
        return self.out(x.transpose(1, 2).contiguous().view(b, t, c * f)) * self.pos_enc.xscale


class RelPositionAttention(nn.Module):
    def __init__(self, cfg: WenetConfig):
        super().__init__()
        d = cfg.d
        self.h, self.d_k = cfg.heads, d // cfg.heads
        self.linear_q, self.linear_k, self.linear_v, self.linear_out = (nn.Linear(d, d) for _ in range(4))
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def heads(self, linear, x):  # [B, T, D] -> [B, h, T, d_k]
        return linear(x).view(x.size(0), -1, self.h, self.d_k).transpose(1, 2)

    def forward(self, x, mask, pos_emb, cache):
        q = self.heads(self.linear_q, x).transpose(1, 2)  # [B, T, h, d_k]
        k, v = self.heads(self.linear_k, x), self.heads(self.linear_v, x)
        key_cache, value_cache = cache
        k, v = torch.cat([key_cache, k], dim=2), torch.cat([value_cache, v], dim=2)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scores = (q_u @ k.transpose(-2, -1) + q_v @ p.transpose(-2, -1)) / math.sqrt(self.d_k)
        hidden = mask.unsqueeze(1).eq(0)[..., :scores.size(-1)]  # [B, 1, 1, T2]
        attn = torch.softmax(scores.masked_fill(hidden, -float("inf")), dim=-1).masked_fill(hidden, 0.0)
        out = (attn @ v).transpose(1, 2).contiguous().view(x.size(0), -1, self.h * self.d_k)
        return self.linear_out(out), (k, v)


class CausalConvModule(nn.Module):
    def __init__(self, cfg: WenetConfig):
        super().__init__()
        d = cfg.d
        self.lorder = cfg.kernel - 1
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1)
        self.depthwise_conv = nn.Conv1d(d, d, cfg.kernel, groups=d)
        self.norm = nn.LayerNorm(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1)

    def forward(self, x, cache):
        x = torch.cat((cache, x.transpose(1, 2)), dim=2)  # [B, D, lorder + T]
        new_cache = x[:, :, -self.lorder:]
        x = nn.functional.glu(self.pointwise_conv1(x), dim=1)
        x = self.depthwise_conv(x).transpose(1, 2)
        x = nn.functional.silu(self.norm(x)).transpose(1, 2)
        return self.pointwise_conv2(x).transpose(1, 2), new_cache


def _ffn(cfg: WenetConfig):
    return nn.Sequential(nn.Linear(cfg.d, cfg.ffn), nn.SiLU(), nn.Linear(cfg.ffn, cfg.d))


class ConformerLayer(nn.Module):
    def __init__(self, cfg: WenetConfig):
        super().__init__()
        self.ff_macaron, self.self_attn, self.conv_module, self.ff = _ffn(cfg), RelPositionAttention(cfg), \
            CausalConvModule(cfg), _ffn(cfg)
        self.norm_ff_macaron, self.norm_mha, self.norm_conv, self.norm_ff, self.norm_final = (
            nn.LayerNorm(cfg.d) for _ in range(5))

    def forward(self, x, mask, pos_emb, att_cache, cnn_cache):
        x = x + 0.5 * self.ff_macaron(self.norm_ff_macaron(x))
        att, new_kv = self.self_attn(self.norm_mha(x), mask, pos_emb, att_cache)
        x = x + att
        conv, new_cnn = self.conv_module(self.norm_conv(x), cnn_cache)
        x = x + conv
        x = x + 0.5 * self.ff(self.norm_ff(x))
        return self.norm_final(x), new_kv, new_cnn


class WenetStyleEncoder(nn.Module):
    def __init__(self, cfg: WenetConfig = TOY):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(1)
        self.register_buffer("cmvn_mean", torch.randn(cfg.feats, generator=g))
        self.register_buffer("cmvn_istd", 0.5 + torch.rand(cfg.feats, generator=g))
        self.embed = Subsampling4(cfg)
        self.encoders = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.layers))
        self.after_norm = nn.LayerNorm(cfg.d)
        self.ctc = nn.Linear(cfg.d, cfg.vocab)

    def forward_chunk(self, xs, offset, required_cache_size: int, att_cache, cnn_cache, att_mask):
        xs = self.embed((xs - self.cmvn_mean) * self.cmvn_istd)
        cache_t1 = att_cache.size(2)
        pos_emb = self.embed.pos_enc.position_encoding(offset - cache_t1, cache_t1 + xs.size(1))
        next_cache_start = max(cache_t1 + xs.size(1) - required_cache_size, 0)
        r_att, r_cnn = [], []
        for i, layer in enumerate(self.encoders):
            kv = att_cache[i:i + 1]
            half = att_cache.size(-1) // 2
            xs, (k, v), new_cnn = layer(xs, att_mask, pos_emb, (kv[..., :half], kv[..., half:]), cnn_cache[i])
            r_att.append(torch.cat((k, v), dim=-1)[:, :, next_cache_start:, :])
            r_cnn.append(new_cnn.unsqueeze(0))
        return self.after_norm(xs), torch.cat(r_att, dim=0), torch.cat(r_cnn, dim=0)

    def init_states(self) -> dict:
        c = self.cfg
        return {"att_cache": torch.zeros(c.layers, c.heads, c.cache, 2 * (c.d // c.heads)),
                "cnn_cache": torch.zeros(c.layers, 1, c.d, c.kernel - 1)}


def _perturb(module: nn.Module, seed: int = 0) -> None:
    """Random weights with distinct values everywhere (see DESIGN: equal layers share weights)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))


def declare_wenet_style():
    """The 0.19 M-parameter toy of the default test suite."""
    return declare_wenet_config(TOY, "wenetstyle")


def declare_wenet_style_deploy():
    """The size of WeNet's streaming U2++ conformer recipe (see DEPLOY), random weights: for benchmarks."""
    return declare_wenet_config(DEPLOY, "wenetstyle_deploy")


def declare_wenet_config(cfg: WenetConfig, name: str):
    """The offset is a counter the graph advances (it starts at the cache size,
    as WeNet's export feeds it), the cache size a constant, and the attention
    mask derived from the offset: cache frames before the stream began are hidden."""
    torch.manual_seed(0)
    m = WenetStyleEncoder(cfg).eval()
    _perturb(m)
    states = m.init_states()
    chunk, cache, vocab = cfg.chunk, cfg.cache, cfg.vocab

    def mask(st):
        cache_valid = torch.arange(cache) >= 2 * cache - st["offset"]
        return torch.cat([cache_valid, torch.ones(chunk, dtype=torch.bool)]).view(1, 1, cache + chunk)

    def ctc_chunk(xs, offset, required_cache_size: int, att_cache, cnn_cache, att_mask):
        """forward_chunk and the CTC head's log-softmax, as a WeNet runtime runs the two. The
        reshapes pin the outputs' shapes: the tracer cannot prove them static, since the
        position slice's length is computed from sizes (edge-export says so when they are left out)."""
        out, att, cnn = m.forward_chunk(xs, offset, required_cache_size, att_cache, cnn_cache, att_mask)
        return (torch.log_softmax(m.ctc(out), dim=-1).reshape(1, chunk, vocab), att.reshape(att_cache.shape),
                cnn.reshape(cnn_cache.shape))

    step = edge.Step(
        ctc_chunk, states=states, module=m, batch_axis={"att_cache": None, "cnn_cache": 1},
        args=(edge.FEATURES, edge.Counter("offset", step=chunk, max=MAX_LEN - chunk, start=cache),
              edge.Const(cache), edge.State("att_cache"), edge.State("cnn_cache"),
              edge.Derived(mask, doc="valid attention frames")),
        returns=("log_probs", edge.State("att_cache"), edge.State("cnn_cache")))
    return edge.declare(name, encoder=step, head="ctc", chunk=cfg.window, shift=chunk * 4,
                        frontend=edge.FrontendSpec(num_mel_bins=cfg.feats), tokens=[f"w{i}" for i in range(vocab)],
                        trained=False)
