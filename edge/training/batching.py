"""Batches: length-bucketed, at most `--batch-frames` padded feature frames;
light SpecAugment (frequency and time masks per utterance); padding into
tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    import torch


def make_batches(lengths: np.ndarray, batch_frames: int, rng: np.random.Generator,
                 max_utts: int = 256) -> list[np.ndarray]:
    """Length-bucketed batches: sort (with a little noise, so batches differ per
    epoch), cut so that B * max_len <= batch_frames, shuffle the batch order."""
    noisy = lengths * rng.uniform(0.9, 1.1, size=len(lengths))
    order = np.argsort(noisy, kind="stable")
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, int(lengths[i]))
        if cur and (m * (len(cur) + 1) > batch_frames or len(cur) >= max_utts):
            batches.append(np.array(cur)); cur, m = [], int(lengths[i])
        cur.append(i); cur_max = m
    if cur:
        batches.append(np.array(cur))
    rng.shuffle(batches)
    return batches


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, fill: torch.Tensor, gen: torch.Generator,
                 freq_masks: int = 2, freq_width: int = 10, time_masks: int = 2, time_width: int = 20,
                 time_frac: float = 0.1) -> torch.Tensor:
    """Mask bands of bins and spans of frames (filled with the CMVN mean, i.e.
    zero after normalisation). Time masks are at most time_frac of each utterance."""
    import torch

    b, t, d = x.shape
    mask = torch.zeros(b, t, d, dtype=torch.bool)
    fpos = torch.arange(d)
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (b, 1), generator=gen)
        f0 = (torch.rand(b, 1, generator=gen) * (d - w)).long()
        mask |= ((fpos[None] >= f0) & (fpos[None] < f0 + w))[:, None, :]
    tpos = torch.arange(t)
    for _ in range(time_masks):
        maxw = torch.clamp((lengths.float() * time_frac).long(), max=time_width)[:, None]
        w = (torch.rand(b, 1, generator=gen) * (maxw + 1).float()).long()
        t0 = (torch.rand(b, 1, generator=gen) * (lengths[:, None] - w).clamp_min(1).float()).long()
        mask |= ((tpos[None] >= t0) & (tpos[None] < t0 + w))[:, :, None]
    return torch.where(mask, fill.to(x.dtype), x)


def collate(data: dict, idx: np.ndarray, targets: list[list[int]]):
    """Utterances idx as zero-padded tensors: features [B, T, D], lengths,
    token ids [B, U], token counts."""
    import torch

    offs = data["offsets"]
    lens = np.array([offs[i + 1] - offs[i] for i in idx])
    t = int(lens.max())
    d = data["feats"].shape[1]
    x = np.zeros((len(idx), t, d), dtype=np.float32)
    for k, i in enumerate(idx):
        x[k, : lens[k]] = data["feats"][offs[i]: offs[i + 1]]
    tl = np.array([len(targets[i]) for i in idx])
    y = np.zeros((len(idx), max(int(tl.max()), 1)), dtype=np.int64)
    for k, i in enumerate(idx):
        y[k, : tl[k]] = targets[i]
    return torch.from_numpy(x), torch.from_numpy(lens), torch.from_numpy(y), torch.from_numpy(tl)
