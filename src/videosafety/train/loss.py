"""The AT-SFT objective (spec §3.2), as pure functions of tensors:

    L = CE_lm + λ_v · BCE(video) + λ_t · BCE(query)

CE_lm is the mean token cross-entropy over the supervised tokens of the whole optimizer step
(all micro-batches of a gradient-accumulation cycle, all ranks); each BCE is the mean over the
step's samples. The reference code divided the auxiliary terms by the number of supervised
tokens by accident; here λ alone scales them.

To make accumulation exact, a micro-batch contributes *sums* divided by the step's totals:
summing the micro-batch losses then gives the loss of the whole step at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from videosafety.models.alarm import IGNORE_INDEX
DEFAULT_LAMBDA = 0.1


@dataclass
class LossParts:
    total: torch.Tensor
    ce: torch.Tensor  # this micro-batch's share of the step's mean CE
    bce_video: torch.Tensor  # share of the step's mean video BCE (0 when heads are off)
    bce_query: torch.Tensor


def supervised_token_count(labels: torch.Tensor) -> int:
    """Tokens that carry a next-token target (labels are shifted by one inside the loss)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token negative log-likelihoods over supervised positions."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def at_sft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_tokens: int,
    video_logit: torch.Tensor | None = None,
    video_label: torch.Tensor | None = None,
    query_logit: torch.Tensor | None = None,
    query_label: torch.Tensor | None = None,
    num_samples: int | None = None,
    lambda_v: float = DEFAULT_LAMBDA,
    lambda_t: float = DEFAULT_LAMBDA,
) -> LossParts:
    """One micro-batch's contribution to the step loss.

    num_tokens: supervised tokens in the whole step (>= 1); num_samples: samples in the whole
    step. Pass no head logits for CE only (plain SFT, stage 1, CoT)."""
    if num_tokens < 1:
        raise ValueError("the step has no supervised token (every target was masked or truncated)")
    ce = token_nll_sum(logits, labels) / num_tokens
    zero = ce.new_zeros(())
    bce_v = bce_t = zero
    if video_logit is not None:
        if num_samples is None or num_samples < 1:
            raise ValueError("num_samples is needed with the harm heads")
        bce_v = F.binary_cross_entropy_with_logits(video_logit.float(), video_label.float(), reduction="sum") / num_samples
        bce_t = F.binary_cross_entropy_with_logits(query_logit.float(), query_label.float(), reduction="sum") / num_samples
    total = ce + lambda_v * bce_v + lambda_t * bce_t
    return LossParts(total=total, ce=ce.detach(), bce_video=bce_v.detach(), bce_query=bce_t.detach())
