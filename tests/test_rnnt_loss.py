"""edge.rnnt_loss against a brute-force sum over every alignment path."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from edge.rnnt_loss import decoder_contexts, rnnt_loss


def brute_force_nll(logits: torch.Tensor, target: list[int], blank: int = 0) -> float:
    """-log sum over all paths for one utterance. logits [T, U+1, V] (only this
    utterance's own T and U+1 entries). A path is an interleaving of U label
    emissions and T-1 blanks (frame advances), followed by the final blank at
    (T-1, U)."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    t_len, u_len = lp.shape[0], len(target)
    moves = t_len - 1 + u_len
    total = []
    for emit_at in itertools.combinations(range(moves), u_len):
        t = u = 0
        score = 0.0
        emit_set = set(emit_at)
        for m in range(moves):
            if m in emit_set:
                score += float(lp[t, u, target[u]])
                u += 1
            else:
                score += float(lp[t, u, blank])
                t += 1
        assert (t, u) == (t_len - 1, u_len)
        score += float(lp[t, u, blank])
        total.append(score)
    return -math.log(sum(math.exp(s) for s in total))


def _case(seed: int, b=3, t=4, u=3, v=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, u + 1, v, generator=g, dtype=dtype) * 2
    t_lens = torch.tensor([t, 2, 3][:b] if b <= 3 else [t] * b)
    u_lens = torch.tensor([u, 1, 0][:b] if b <= 3 else [u] * b)
    targets = torch.randint(1, v, (b, u), generator=g)
    for i in range(b):  # padding with an arbitrary valid id must not matter
        targets[i, u_lens[i]:] = 0
    return logits, targets, t_lens, u_lens


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_padding(seed):
    logits, targets, t_lens, u_lens = _case(seed)
    got = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none")
    for i in range(logits.shape[0]):
        ti, ui = int(t_lens[i]), int(u_lens[i])
        ref = brute_force_nll(logits[i, :ti, : ui + 1], targets[i, :ui].tolist())
        assert got[i].item() == pytest.approx(ref, rel=1e-5, abs=1e-5)
    assert rnnt_loss(logits, targets, t_lens, u_lens).item() == pytest.approx(got.mean().item(), rel=1e-6)
    assert rnnt_loss(logits, targets, t_lens, u_lens, reduction="sum").item() == pytest.approx(
        got.sum().item(), rel=1e-6)


def test_padding_values_do_not_change_loss_or_get_gradient():
    logits, targets, t_lens, u_lens = _case(7)
    logits = logits.clone().requires_grad_(True)
    base = rnnt_loss(logits, targets, t_lens, u_lens, reduction="none")
    base.sum().backward()
    grad = logits.grad
    # utterance 1 has T=2, U=1: everything beyond is padding
    assert torch.all(grad[1, 2:] == 0) and torch.all(grad[1, :, 2:] == 0)
    noisy = logits.detach().clone()
    noisy[1, 2:] = 100.0
    noisy[1, :, 2:] = -100.0
    again = rnnt_loss(noisy, targets, t_lens, u_lens, reduction="none")
    torch.testing.assert_close(again, base.detach())


def test_single_frame_and_empty_target():
    logits = torch.randn(1, 1, 1, 4)
    got = rnnt_loss(logits, torch.zeros(1, 0, dtype=torch.long), torch.tensor([1]), torch.tensor([0]))
    assert got.item() == pytest.approx(-torch.log_softmax(logits[0, 0, 0], -1)[0].item(), rel=1e-6)


def test_gradcheck_float64():
    logits, targets, t_lens, u_lens = _case(3, b=2, t=3, u=2, v=3, dtype=torch.float64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda lg: rnnt_loss(lg, targets[:2], t_lens[:2], u_lens[:2], reduction="sum"), (logits,),
        eps=1e-6, atol=1e-6)


def test_decoder_contexts():
    y = torch.tensor([[5, 6, 7], [8, 0, 0]])
    ctx = decoder_contexts(y, 2)
    assert ctx.shape == (2, 4, 2)
    assert ctx[0].tolist() == [[0, 0], [0, 5], [5, 6], [6, 7]]
    assert ctx[1, :2].tolist() == [[0, 0], [0, 8]]
