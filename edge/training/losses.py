"""Losses: -log P(y|x) per utterance, averaged over the batch. CTC for the
CTC families (lstm, conformer); RNN-T (`edge.rnnt_loss`) for the transducer;
optionally a distillation term from a CTC teacher."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    import torch


def _ctc(model, x, lens, y, ylens):
    import torch

    out, out_lens = model(x, lens)
    out_lens = out_lens.clamp(max=out.shape[1])
    loss = torch.nn.functional.ctc_loss(out.transpose(0, 1), y, out_lens, ylens, blank=0,
                                        reduction="sum", zero_infinity=True) / x.shape[0]
    return loss, out, out_lens


def _rnnt(model, x, lens, y, ylens, aux):
    """The RNN-T loss, and the student's frame log-posteriors through the
    training-only head `aux` when distilling (None otherwise)."""
    import torch

    from ..rnnt_loss import decoder_contexts, rnnt_loss

    hidden, out_lens = model.encoder.offline(x, lens)
    out = model.encoder_proj(hidden)
    student = torch.log_softmax(aux(hidden), dim=-1) if aux is not None else None
    out_lens = out_lens.clamp(max=out.shape[1])
    ctx = decoder_contexts(y[:, : int(ylens.max())], model.config.context_size, model.config.blank_id,
                           start=model.signature().start_context())  # the context the decoder will start from
    dec = model.decoder(ctx)  # [B, U+1, J]
    logits = model.joiner(out[:, :, None, :], dec[:, None, :, :])  # [B, T, U+1, V]
    loss = rnnt_loss(logits, y, out_lens, ylens, blank=model.config.blank_id, reduction="mean")
    return loss, student, out_lens


def distill_term(distill: dict, x, lens, student, out_lens):
    """KL(teacher || student) per utterance on the frame posteriors, the
    teacher's delayed by distill["delay"] frames, summed over valid frames and
    averaged over the batch. x: the teacher's input features."""
    import torch

    with torch.no_grad():
        t_lp, _ = distill["teacher"](x, lens)
    d = distill["delay"]
    if d > 0:
        t_lp = torch.cat([t_lp[:, :1].expand(-1, d, -1), t_lp[:, : t_lp.shape[1] - d]], dim=1)
    t = min(t_lp.shape[1], student.shape[1])
    valid = (torch.arange(t)[None, :] < out_lens[:, None]).float()
    kl = (t_lp[:, :t].exp() * (t_lp[:, :t] - student[:, :t])).sum(-1)
    return (kl * valid).sum() / x.shape[0]


def compute_loss(model, x, lens, y, ylens, distill: dict | None = None, teacher_x=None) -> torch.Tensor:
    """-log P(y|x) averaged over the batch (CTC or RNN-T by the model's decoder).

    distill (optional): {"teacher": a CTC model with the same output frame rate,
    "weight": w, "delay": d frames, "aux": for the transducer, a Linear from the
    encoder's hidden size to the vocabulary (a training-only head, not saved)}.
    Adds w * KL(teacher || student) per utterance on the frame posteriors, the
    teacher's delayed by d frames (a causal student cannot fire as early as a
    chunked teacher). It gets a student past the CTC/RNN-T plateau quickly.
    teacher_x: the teacher's features of the same frames when its frontend
    differs from the student's (None: the teacher reads x)."""
    if model.signature().decoder == "ctc":
        loss, student, out_lens = _ctc(model, x, lens, y, ylens)
    else:
        loss, student, out_lens = _rnnt(model, x, lens, y, ylens, distill["aux"] if distill else None)
    if distill and distill["weight"] > 0:
        tx = x if teacher_x is None else teacher_x
        loss = loss + distill["weight"] * distill_term(distill, tx, lens, student, out_lens)
    return loss
