"""RNN-T (transducer) loss in plain PyTorch, written for the small joint
tensors of this project (vocabulary 47, a handful of words per utterance).

The standard Graves (2012) lattice: at node (t, u) the joiner gives a
distribution over V tokens; "blank" moves to (t+1, u), the next target token
y[u] moves to (t, u+1). A path starts at (0, 0) and ends with the blank
emitted at (T-1, U). With alpha the forward variable,

    alpha[0, 0] = 0
    alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u],
                            alpha[t, u-1] + emit[t, u-1])
    log P(y | x) = alpha[T-1, U] + blank[T-1, U]

Vectorisation: one loop over t. Within a row the recursion in u is linear in
the probability domain, so it has a closed form with a cumulative sum and a
cumulative log-sum-exp:

    alpha[t, u] = E[u] + logcumsumexp_k (c[k] - E[k])     (k <= u)
    E[u] = sum_{j<u} emit[t, j],  c[k] = alpha[t-1, k] + blank[t-1, k]

Every quantity at (t, u) only depends on nodes with smaller t and u, so padded
frames and padded target positions cannot influence an utterance's own
(T_b - 1, U_b) entry, which is gathered at the end; no other masking is
needed (and padding gets exactly zero gradient).
"""

from __future__ import annotations

import torch


def rnnt_loss(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
              target_lengths: torch.Tensor, blank: int = 0, reduction: str = "mean") -> torch.Tensor:
    """logits [B, T, U+1, V] (unnormalised joiner outputs), targets [B, U] int
    (padding: any valid id), logit_lengths [B] (frames T_b >= 1), target_lengths
    [B] (U_b <= U). Returns -log P(y|x): per utterance for reduction="none",
    their sum for "sum", their mean over the batch for "mean" (no per-frame or
    per-token normalisation)."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be [B, T, U+1, V], got shape {tuple(logits.shape)}")
    b, t_max, u1, v = logits.shape
    u_max = u1 - 1
    if targets.shape[0] != b or targets.shape[1] < u_max:
        raise ValueError(f"targets {tuple(targets.shape)} do not fit logits {tuple(logits.shape)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction {reduction!r} must be 'mean', 'sum' or 'none'")
    targets = targets[:, :u_max].long()
    logit_lengths = logit_lengths.long().to(logits.device)
    target_lengths = target_lengths.long().to(logits.device)
    if bool((logit_lengths < 1).any()) or bool((logit_lengths > t_max).any()):
        raise ValueError("every logit length must be in [1, T]")
    if bool((target_lengths < 0).any()) or bool((target_lengths > u_max).any()):
        raise ValueError("every target length must be in [0, U]")

    log_probs = torch.log_softmax(logits, dim=-1)
    blank_lp = log_probs[..., blank]  # [B, T, U+1]
    if u_max > 0:
        idx = targets[:, None, :, None].expand(b, t_max, u_max, 1)
        emit_lp = log_probs[:, :, :u_max, :].gather(-1, idx).squeeze(-1)  # [B, T, U]
        zero = emit_lp.new_zeros(b, t_max, 1)
        emit_cum = torch.cat([zero, emit_lp.cumsum(dim=2)], dim=2)  # E: [B, T, U+1]
    else:
        emit_cum = blank_lp.new_zeros(b, t_max, 1)

    alphas = [emit_cum[:, 0]]  # row t = 0: only emissions
    for t in range(1, t_max):
        c = alphas[-1] + blank_lp[:, t - 1]  # arrive from (t-1, k) by a blank
        e = emit_cum[:, t]
        alphas.append(e + torch.logcumsumexp(c - e, dim=1))
    alpha = torch.stack(alphas, dim=1)  # [B, T, U+1]

    bi = torch.arange(b, device=logits.device)
    last_t = logit_lengths - 1
    loglik = alpha[bi, last_t, target_lengths] + blank_lp[bi, last_t, target_lengths]
    nll = -loglik
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    return nll.mean()


def decoder_contexts(targets: torch.Tensor, context_size: int, blank: int = 0,
                     start: list[int] | None = None) -> torch.Tensor:
    """Decoder inputs for training a stateless transducer: targets [B, U] ->
    [B, U+1, context_size], row u = the context_size tokens before target u,
    preceded by `start` (the context decoding starts from; default all blank,
    icefall's is [-1, blank] where -1 embeds to zeros)."""
    b = targets.shape[0]
    start = [blank] * context_size if start is None else list(start)
    if len(start) != context_size:
        raise ValueError(f"start context {start} must have context_size={context_size} tokens")
    pad = torch.tensor(start, dtype=targets.dtype).expand(b, context_size)
    seq = torch.cat([pad, targets.long()], dim=1)  # [B, context + U]
    return seq.unfold(1, context_size, 1)  # [B, U+1, context]
