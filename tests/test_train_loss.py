"""The AT-SFT loss against hand computations, including gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch

from videosafety.train.loss import IGNORE_INDEX, at_sft_loss, supervised_token_count


def _log_softmax(row):
    m = max(row)
    z = math.log(sum(math.exp(x - m) for x in row)) + m
    return [x - z for x in row]


def test_hand_computed_single_batch():
    # one row, 3 positions, vocab 3; labels shift by one: position 0 predicts labels[1], ...
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 0, 2]])
    ce_hand = -(_log_softmax([2.0, 0.0, 0.0])[0] + _log_softmax([0.0, 1.0, 0.0])[2]) / 2
    v_logit, q_logit = torch.tensor([0.5]), torch.tensor([-1.0])
    bce_v = -math.log(1 / (1 + math.exp(-0.5)))  # label 1
    bce_t = -math.log(1 - 1 / (1 + math.exp(1.0)))  # label 0
    parts = at_sft_loss(logits, labels, num_tokens=2, video_logit=v_logit, video_label=torch.tensor([1.0]),
                        query_logit=q_logit, query_label=torch.tensor([0.0]), num_samples=1)
    assert parts.ce.item() == pytest.approx(ce_hand, rel=1e-6)
    assert parts.bce_video.item() == pytest.approx(bce_v, rel=1e-6)
    assert parts.bce_query.item() == pytest.approx(bce_t, rel=1e-6)
    assert parts.total.item() == pytest.approx(ce_hand + 0.1 * bce_v + 0.1 * bce_t, rel=1e-6)
    # λ scales the auxiliary terms, never the token count (the reference's accident)
    p2 = at_sft_loss(logits, labels, num_tokens=2, video_logit=v_logit, video_label=torch.tensor([1.0]),
                     query_logit=q_logit, query_label=torch.tensor([0.0]), num_samples=1, lambda_v=1.0, lambda_t=0.0)
    assert p2.total.item() == pytest.approx(ce_hand + bce_v, rel=1e-6)


def test_plain_mode_is_ce_only():
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 2], [IGNORE_INDEX, 3, 4, IGNORE_INDEX]])
    assert supervised_token_count(labels) == 4
    parts = at_sft_loss(logits, labels, num_tokens=4)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    assert parts.total.item() == pytest.approx(ref.item(), rel=1e-6)
    assert parts.bce_video.item() == 0.0
    with pytest.raises(ValueError, match="no supervised token"):
        at_sft_loss(logits, torch.full_like(labels, IGNORE_INDEX), num_tokens=0)


def test_gradient_accumulation_equals_one_big_batch():
    """Micro-batches with unequal token counts: summing their contributions (normalised by the
    step's totals) gives the loss and the gradient of the whole batch at once."""
    torch.manual_seed(0)
    w = torch.randn(6, 7, requires_grad=True)
    head = torch.randn(6, requires_grad=True)
    x = torch.randn(4, 5, 6)
    labels = torch.randint(0, 7, (4, 5))
    labels[0, :4] = IGNORE_INDEX  # row 0 has 1 target, others more: a mean of means would differ
    labels[2, :2] = IGNORE_INDEX
    yv, yq = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 1.0, 0.0])

    def contribution(rows, n_tok, n_samp):
        logits = x[rows] @ w
        h = x[rows, -1] @ head
        return at_sft_loss(logits, labels[rows], num_tokens=n_tok, video_logit=h, video_label=yv[rows],
                           query_logit=-h, query_label=yq[rows], num_samples=n_samp).total

    n_tok, n_samp = supervised_token_count(labels), 4
    full = contribution([0, 1, 2, 3], n_tok, n_samp)
    g_full = torch.autograd.grad(full, [w, head])
    micro = [contribution([0], n_tok, n_samp), contribution([1, 2, 3], n_tok, n_samp)]
    total = sum(micro)
    g_acc = torch.autograd.grad(total, [w, head])
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    for a, b in zip(g_full, g_acc):
        torch.testing.assert_close(a, b)
    # and the hand formula: mean CE over all targets + 0.1 * mean BCEs over all samples
    logits = x @ w
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    h = x[:, -1] @ head
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert full.item() == pytest.approx((ce + 0.1 * bce(h, yv) + 0.1 * bce(-h, yq)).item(), rel=1e-5)
