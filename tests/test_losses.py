"""The cascade's losses on hand-made cases."""

from __future__ import annotations

import torch

from ccrec.losses import mle_loss, precision_loss, scorer_loss


def test_mle_loss_one_term_per_future_category():
    log_probs = torch.log(torch.tensor([[1e-9, 0.5, 0.25, 0.25]]))
    targets = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    expected = -(torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25))) / 2
    assert torch.allclose(mle_loss(log_probs, targets), expected)


def test_precision_loss_zero_for_true_positives():
    scores = torch.tensor([[0.9, 0.2, 1.0]], requires_grad=True)
    labels = torch.ones(1, 3)
    m1 = torch.tensor([[0.9, 0.5, 0.1]])
    loss = precision_loss(scores, labels, m1, torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert (scores.grad == 0).all()


def test_precision_gradient_grows_with_m1_probability_on_false_positives():
    scores = torch.tensor([[0.6, 0.6, 0.6]], requires_grad=True)
    labels = torch.zeros(1, 3)
    m1 = torch.tensor([[0.1, 0.3, 0.6]])
    precision_loss(scores, labels, m1, torch.ones(1, 3, dtype=torch.bool)).backward()
    g = scores.grad[0]
    assert 0 < g[0] < g[1] < g[2]
    assert torch.allclose(g, 2 * m1[0] * 0.6)


def test_literal_precision_loss_has_no_gradient_and_masks():
    scores = torch.tensor([[0.6, 0.6]], requires_grad=True)
    labels = torch.tensor([[0.0, 1.0]])
    m1 = torch.tensor([[0.5, 0.9]])
    mask = torch.tensor([[True, True]])
    loss = precision_loss(scores, labels, m1, mask, mode="literal")
    assert torch.allclose(loss, torch.tensor(0.25))
    assert not loss.requires_grad
    total, parts = scorer_loss(scores, labels, m1, mask, mode="none")
    assert parts["precision"] == 0
    assert torch.allclose(total, torch.tensor(0.6**2 + 0.4**2))
    masked = precision_loss(scores, labels, m1, torch.tensor([[False, True]]))
    assert masked.item() == 0.0
