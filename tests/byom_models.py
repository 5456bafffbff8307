"""Models written the way other projects write them, for the bring-your-own-model
tests and docs/bring-your-own-model.md: nothing here knows about edge-speech
except the `declare_*` functions at the bottom."""

from __future__ import annotations

import torch
from torch import nn

import edge

FEATS, HIDDEN, VOCAB, CHUNK, CACHE = 20, 16, 12, 8, 8
POSITIONS = 64  # the positional table's length: positions saturate there


class TimeMajorChunkModel(nn.Module):
    """A WeNet-like chunk step: time-major features, a lengths input, an
    int64 frame offset the caller advances, a constant cache size, nested
    states (a dict holding a list), and an attention mask the caller derives
    from a count of valid cache frames."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp = nn.Linear(FEATS, HIDDEN)
        self.conv = nn.Conv1d(HIDDEN, HIDDEN, 3, groups=HIDDEN)
        self.q, self.k, self.v = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        self.pos = nn.Parameter(0.1 * torch.randn(POSITIONS, HIDDEN, generator=g))
        self.out = nn.Linear(HIDDEN, VOCAB)

    def init_states(self, batch: int = 1) -> dict:
        return {"conv": [torch.zeros(batch, HIDDEN, 2)],
                "attn": {"keys": torch.zeros(batch, CACHE, HIDDEN), "values": torch.zeros(batch, CACHE, HIDDEN)},
                "valid": torch.zeros(batch, dtype=torch.int64)}

    def forward_chunk(self, xs, lengths, offset, cache_size: int, states, mask):
        # xs [T, B, F] time-major; lengths [B] (all T for a full chunk); offset [] int64
        x = self.inp(xs.transpose(0, 1))  # [B, T, H]
        pos = self.pos[torch.clamp(offset + torch.arange(xs.shape[0]), max=POSITIONS - 1)]
        x = x + pos * (lengths[:, None, None] > 0)
        cc = torch.cat([states["conv"][0], x.transpose(1, 2)], dim=2)
        x = x + self.conv(cc).transpose(1, 2)
        k = torch.cat([states["attn"]["keys"], self.k(x)], dim=1)
        v = torch.cat([states["attn"]["values"], self.v(x)], dim=1)
        scores = self.q(x) @ k.transpose(1, 2) / HIDDEN ** 0.5
        full = torch.cat([mask, torch.ones(mask.shape[0], xs.shape[0], dtype=torch.bool)], dim=1)
        scores = scores + (~full[:, None, :]).float() * -1e4
        x = x + torch.softmax(scores, dim=-1) @ v
        y = torch.log_softmax(self.out(x), dim=-1).transpose(0, 1)  # time-major out [T, B, V]
        new = {"conv": [cc[:, :, -2:]],
               "attn": {"keys": k[:, -cache_size:], "values": v[:, -cache_size:]},
               "valid": torch.clamp(states["valid"] + lengths, max=cache_size)}
        return y, new


class RawVad(nn.Module):
    """A Silero-like VAD: 64 past samples + 512 new ones in, a speech
    probability out, an LSTM state as a (h, c) tuple."""

    def __init__(self):
        super().__init__()
        self.frame = nn.Conv1d(1, 32, 64, stride=32)
        self.rnn = nn.LSTMCell(32, 32)
        self.head = nn.Linear(32, 1)

    def forward(self, samples, state):
        h, c = state
        f = torch.relu(self.frame(samples[:, None, :])).mean(dim=2)  # [1, 32]
        h, c = self.rnn(f, (h, c))
        return torch.sigmoid(self.head(h)), (h, c)


class Conv2dCacheModel(nn.Module):
    """A front end like icefall's Conv2dSubsampling in streaming mode: its
    2-D convolution keeps its last frames as a 4-D cache [B, C, frames, F'],
    computed in the graph (converters then hold it channels-last)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=(1, 2))
        self.conv2 = nn.Conv2d(8, 8, (3, 1))
        self.out = nn.Linear(8 * CONV_F, VOCAB)

    def forward(self, x, cache):  # x [B, CHUNK, FEATS], cache [B, 8, 2, CONV_F]
        h = torch.cat([cache, torch.relu(self.conv1(x[:, None]))], dim=2)  # [B, 8, CHUNK, CONV_F]
        y = torch.relu(self.conv2(h))  # [B, 8, CHUNK - 2, CONV_F]
        y = y.permute(0, 2, 1, 3).reshape(y.shape[0], CHUNK - 2, 8 * CONV_F)
        return torch.log_softmax(self.out(y), dim=-1), h[:, :, -2:]


CONV_F = (FEATS - 3) // 2 + 1


def declare_conv2d_cache():
    """CHUNK feature frames in, CHUNK - 2 out: the first conv's 2 frames of
    context overlap the next chunk (shift CHUNK - 2), the second conv's come
    from the cache."""
    torch.manual_seed(0)
    m = Conv2dCacheModel().eval()
    step = edge.Step(m, states=lambda b: torch.zeros(b, 8, 2, CONV_F), names=["conv_cache"],
                     returns=("log_probs", edge.STATES))
    return edge.declare("conv2dcache", encoder=step, head="ctc", chunk=CHUNK, shift=CHUNK - 2, subsampling=1,
                        frontend=edge.FrontendSpec(num_mel_bins=FEATS), tokens=[f"w{i}" for i in range(VOCAB)],
                        trained=False)


def declare_time_major():
    torch.manual_seed(0)
    m = TimeMajorChunkModel().eval()
    valid_mask = edge.Derived(
        lambda st: torch.arange(CACHE)[None, :] >= CACHE - st["valid"][:, None], doc="valid cache frames")
    step = edge.Step(
        m.forward_chunk, states=m.init_states,
        args=(edge.FEATURES, edge.LENGTHS, edge.Counter("offset", step=CHUNK, max=POSITIONS - CHUNK),
              edge.Const(CACHE), edge.STATES, valid_mask),
        returns=("log_probs", edge.STATES), layout="TBF", output_layout="TBF",
        names=lambda path: "_".join(str(p) for p in path))
    return edge.declare("timemajor", encoder=step, head="ctc", chunk=CHUNK,
                        frontend=edge.FrontendSpec(num_mel_bins=FEATS), tokens=[f"w{i}" for i in range(VOCAB)],
                        trained=False)


def declare_vad(forget_bias: float = 0.0):
    """forget_bias > 0 opens the LSTM's forget gate, as training does for a
    VAD that must remember seconds of context: its output then depends on
    audio long past (a memory, not a drift)."""
    torch.manual_seed(0)
    vad = RawVad().eval()
    with torch.no_grad():
        vad.rnn.bias_hh[32:64] += forget_bias  # LSTMCell gate order: input, forget, cell, output
    return edge.declare("vad", encoder=edge.Step(vad, states=lambda b: (torch.zeros(b, 32), torch.zeros(b, 32)),
                                                 names=["h", "c"], returns=("speech_prob", edge.STATES),
                                                 layout="BT"),
                        head="none", chunk=576, shift=512, frontend=edge.FrontendSpec.raw(16000, left_pad=64),
                        trained=False)
