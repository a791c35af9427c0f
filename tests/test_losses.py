"""The three losses against values worked out by hand."""
import copy
import math

import numpy as np
import pytest
import torch

import scan
from losses import ConfidenceBasedCE, SCANLoss, SimCLRLoss, lowest_loss_head, scan_head_losses
from models.heads import ClusteringModel


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


def one_sided_example():
    # image 0: views [1, 0] and [0, 1]; image 1: both views [1, 0]; temperature 1
    return views([[1, 0], [0, 1]], [[1, 0], [1, 0]])


def test_simclr_is_one_sided_by_default():
    # Anchors are the first views only. Image 0's anchor [1, 0]: positive [0, 1] (dot 0)
    # against two dots of 1 -> log(1 + 2e). Image 1's anchor [1, 0]: positive dot 1 against
    # dots 1 and 0 -> log(2 + 1/e). The loss is their mean.
    expected = (math.log(1 + 2 * math.e) + math.log(2 + 1 / math.e)) / 2
    assert SimCLRLoss(temperature=1.0)(one_sided_example()).item() == pytest.approx(expected,
                                                                                   abs=1e-6)


def test_simclr_symmetric_is_opt_in():
    # The second views are anchors too: image 0's [0, 1] has dots 0, 0, 0 -> log 3; image 1's
    # [1, 0] has positive dot 1 against dots 1 and 0 -> log(2 + 1/e).
    expected = (math.log(1 + 2 * math.e) + 2 * math.log(2 + 1 / math.e) + math.log(3)) / 4
    loss = SimCLRLoss(temperature=1.0, symmetric=True)(one_sided_example())
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_simclr_matches_the_supcontrast_form():
    # the original's computation, written out: anchors = first views, contrast = all 2b views,
    # the anchor itself masked out, mean -log p(positive)
    features = torch.nn.functional.normalize(torch.randn(6, 2, 5, generator=torch.Generator()
                                                         .manual_seed(0)), dim=2)
    b, t = 6, 0.3
    contrast = torch.cat(torch.unbind(features, dim=1), dim=0)
    dots = features[:, 0] @ contrast.T / t
    logits_mask = torch.ones(b, 2 * b).scatter(1, torch.arange(b).view(-1, 1), 0)
    log_prob = dots - torch.log((torch.exp(dots) * logits_mask).sum(1, keepdim=True))
    expected = -log_prob[torch.arange(b), torch.arange(b) + b].mean()
    assert SimCLRLoss(t)(features).item() == pytest.approx(expected.item(), abs=1e-5)


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


def test_scan_loss_fully_disagreeing_pair_costs_100():
    # torch's BCELoss, as the original: log(0) is clamped at -100
    _, consistency, _ = SCANLoss()(logits_of([[1.0, 0.0]]), logits_of([[0.0, 1.0]]))
    assert consistency.item() == pytest.approx(100.0)


def test_scan_loss_keeps_a_gradient_on_nearly_disagreeing_pairs():
    # similarity 2 e^-40 / (1 + e^-40): about 8.5e-18, far below the 1e-8 a clamp would stop at
    anchor = torch.tensor([[20.0, -20.0]], requires_grad=True)
    _, consistency, _ = SCANLoss()(anchor, torch.tensor([[-20.0, 20.0]]))
    expected = -math.log(2 * math.exp(-40) / (1 + math.exp(-40)))
    assert consistency.item() == pytest.approx(expected, rel=1e-4)    # 39.3, not 18.4
    consistency.backward()  # a clamp at 1e-8 would give exactly 0 here
    assert anchor.grad.abs().sum().item() > 0


def test_scan_head_losses_as_the_original_evaluation():
    # 3 images, each with itself and one other as neighbours; head 1 puts image 2 alone
    neighbors = [[0, 1], [1, 0], [2, 0]]
    same = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    split = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    h_same, h_split = scan_head_losses([np.array(same), np.array(split)], np.array(neighbors))
    assert h_same['consistency'] == pytest.approx(0.0)
    assert h_same['entropy'] == pytest.approx(0, abs=1e-6)
    # one pair of six has similarity 0: 100 / 6; entropy of (2/3, 1/3), weight 1
    assert h_split['consistency'] == pytest.approx(100 / 6)
    ent = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert h_split['entropy'] == pytest.approx(ent, abs=1e-6)
    assert h_split['total'] == pytest.approx(100 / 6 - ent, abs=1e-5)
    assert lowest_loss_head([h_same, h_split]) == (0, pytest.approx(0.0, abs=1e-6))


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


def scan_step_batchnorm(concat):
    """One scan.py training step on a BatchNorm model; returns its BatchNorm's state after it
    and the loss logged, beside a reference computed by hand for two separate passes."""
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3),
                                   torch.nn.BatchNorm1d(3))
    model = ClusteringModel({'backbone': backbone, 'dim': 3}, nclusters=2)
    anchors, neighbors = torch.randn(6, 4), torch.randn(6, 4) + 3.0  # unlike statistics
    reference = copy.deepcopy(model).train()
    expected = SCANLoss(5.0)(reference(anchors)[0], reference(neighbors)[0])[0].item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = scan.train_one_epoch(model, [{'anchor': anchors, 'neighbor': neighbors}], SCANLoss(5.0),
                                 optimizer, torch.device('cpu'), 1, head_only=False, concat=concat)
    return model.backbone[2], stats['loss'], expected


def test_scan_step_runs_anchors_and_neighbours_in_two_passes_by_default():
    # As the original: BatchNorm normalises each pass with its own statistics, and its running
    # statistics are updated once per pass.
    bn, loss, two_pass_loss = scan_step_batchnorm(concat=False)
    assert bn.num_batches_tracked.item() == 2
    assert loss == pytest.approx(two_pass_loss, abs=1e-5)


def test_scan_concat_forward_is_one_pass():
    bn, loss, two_pass_loss = scan_step_batchnorm(concat=True)
    assert bn.num_batches_tracked.item() == 1
    assert abs(loss - two_pass_loss) > 1e-3
