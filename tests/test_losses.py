"""The three losses against values worked out by hand."""
import math

import pytest
import torch

from losses import ConfidenceBasedCE, SCANLoss, SimCLRLoss


def views(*pairs):
    return torch.tensor(pairs, dtype=torch.float32)


def test_simclr_two_images_aligned_views():
    # Each image's two views coincide; the images are orthogonal. For every anchor:
    # positive sim 1, the two views of the other image sim 0 -> -log(e / (e + 2)).
    features = views([[1, 0], [1, 0]], [[0, 1], [0, 1]])
    loss = SimCLRLoss(temperature=1.0)(features)
    assert loss.item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)


def test_simclr_all_orthogonal_gives_log_of_candidates():
    features = torch.eye(4).view(2, 2, 4)
    assert SimCLRLoss(temperature=0.5)(features).item() == pytest.approx(math.log(3), abs=1e-6)


def test_simclr_temperature_sharpens():
    features = views([[1, 0], [1, 0]], [[0, 1], [0, 1]])
    # With T = 0.1: -log(e^10 / (e^10 + 2)).
    expected = math.log(1 + 2 * math.exp(-10))
    assert SimCLRLoss(temperature=0.1)(features).item() == pytest.approx(expected, abs=1e-6)


def logits_of(probs):
    return torch.tensor(probs).log()


def test_scan_loss_uniform_predictions():
    p = [[0.5, 0.5], [0.5, 0.5]]
    total, consistency, entropy = SCANLoss(entropy_weight=5.0)(logits_of(p), logits_of(p))
    assert consistency.item() == pytest.approx(math.log(2), abs=1e-5)   # -log(0.5)
    assert entropy.item() == pytest.approx(math.log(2), abs=1e-5)
    assert total.item() == pytest.approx(math.log(2) - 5 * math.log(2), abs=1e-5)


def test_scan_loss_confident_consistent_pairs():
    p = [[0.8, 0.2], [0.2, 0.8]]
    total, consistency, entropy = SCANLoss(entropy_weight=2.0)(logits_of(p), logits_of(p))
    assert consistency.item() == pytest.approx(-math.log(0.68), abs=1e-5)  # 0.64 + 0.04
    assert entropy.item() == pytest.approx(math.log(2), abs=1e-5)           # mean is uniform
    assert total.item() == pytest.approx(-math.log(0.68) - 2 * math.log(2), abs=1e-5)


def test_scan_loss_penalises_collapse_through_entropy():
    collapsed = [[0.99, 0.01], [0.99, 0.01]]
    _, _, entropy = SCANLoss()(logits_of(collapsed), logits_of(collapsed))
    expected = -(0.99 * math.log(0.99) + 0.01 * math.log(0.01))
    assert entropy.item() == pytest.approx(expected, abs=1e-5)


def weak_and_strong():
    weak = logits_of([[0.995, 0.005], [0.999, 0.001], [0.002, 0.998], [0.6, 0.4]])
    strong = torch.tensor([[math.log(3), 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, -5.0]])
    return weak, strong


def test_confidence_ce_masks_and_balances():
    weak, strong = weak_and_strong()
    loss, n = ConfidenceBasedCE(threshold=0.99, apply_class_balancing=True)(weak, strong)
    # confident: samples 0, 1 (class 0) and 2 (class 1); sample 3 is masked out.
    # weights: class 0 -> 3/2, class 1 -> 3/1; CE: -log(3/4), log 2, log 2.
    ce = [-math.log(0.75), math.log(2), math.log(2)]
    expected = (1.5 * ce[0] + 1.5 * ce[1] + 3 * ce[2]) / (1.5 + 1.5 + 3)
    assert n == 3
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_confidence_ce_without_balancing_is_plain_mean():
    weak, strong = weak_and_strong()
    loss, n = ConfidenceBasedCE(threshold=0.99, apply_class_balancing=False)(weak, strong)
    assert loss.item() == pytest.approx((-math.log(0.75) + 2 * math.log(2)) / 3, abs=1e-5)


def test_confidence_ce_nothing_confident_returns_none():
    weak = logits_of([[0.6, 0.4], [0.5, 0.5]])
    loss, n = ConfidenceBasedCE(threshold=0.99)(weak, torch.zeros(2, 2))
    assert loss is None and n == 0


def test_confidence_ce_gradient_only_reaches_confident_samples():
    weak, strong = weak_and_strong()
    strong.requires_grad_(True)
    loss, _ = ConfidenceBasedCE(threshold=0.99)(weak, strong)
    loss.backward()
    assert strong.grad[3].abs().sum().item() == 0.0
    assert strong.grad[:3].abs().sum().item() > 0.0
