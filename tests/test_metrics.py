"""Hungarian matching, clustering metrics, and the choice of the best SCAN head."""
import numpy as np
import pytest

from losses import lowest_loss_head, scan_head_losses
from utils.metrics import cluster_metrics, hungarian_match, per_class_precision_recall


def test_permuted_labels_score_perfectly():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, size=200)
    permutation = np.array([3, 0, 4, 1, 2])
    metrics = cluster_metrics(permutation[targets], targets, 5)
    assert metrics['acc'] == 1.0 and metrics['nmi'] == pytest.approx(1.0)
    assert metrics['ari'] == pytest.approx(1.0) and metrics['ami'] == pytest.approx(1.0)
    assert metrics['mapping'] == {int(permutation[c]): c for c in range(5)}


def test_partial_agreement_known_value():
    targets = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    clusters = np.array([1, 1, 1, 0, 0, 0, 0, 1])   # cluster 1 ~ class 0, cluster 0 ~ class 1
    metrics = cluster_metrics(clusters, targets, 2)
    assert metrics['acc'] == pytest.approx(6 / 8)
    assert hungarian_match(clusters, targets, 2, 2) == {1: 0, 0: 1}


def test_ami_is_chance_adjusted():
    # independent clusterings: AMI near 0 while NMI is not; the original reports AMI for
    # ImageNet-1000 (from the contingency table: sklearn's adjusted_mutual_info_score)
    rng = np.random.default_rng(1)
    targets, clusters = rng.integers(0, 10, 300), rng.integers(0, 10, 300)
    metrics = cluster_metrics(clusters, targets, 10)
    assert abs(metrics['ami']) < 0.02 and metrics['nmi'] > 0.02


def test_more_clusters_than_classes_leaves_some_unmatched():
    targets = np.array([0, 0, 1, 1, 1, 1])
    clusters = np.array([0, 0, 1, 1, 2, 2])
    mapping = hungarian_match(clusters, targets, 3, 2)
    assert mapping[0] == 0 and sorted(mapping.values()).count(-1) == 1
    assert cluster_metrics(clusters, targets, 2)['acc'] == pytest.approx(4 / 6)


def test_unknown_labels_are_ignored():
    targets = np.array([0, 1, -1, -1])
    metrics = cluster_metrics(np.array([1, 0, 0, 0]), targets, 2)
    assert metrics['acc'] == 1.0 and metrics['num_samples'] == 2


def test_top5_uses_the_matched_classes():
    targets = np.array([0, 1])
    probs = np.array([[0.1, 0.9] + [0.0] * 4, [0.9, 0.1] + [0.0] * 4])   # 6 clusters, 2 classes
    metrics = cluster_metrics(probs.argmax(1), targets, 2, probs=probs)
    assert metrics['acc'] == 1.0 and metrics['acc_top5'] == 1.0


def test_per_class_precision_recall():
    rows = per_class_precision_recall(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert rows[0] == {'class': 0, 'precision': 0.5, 'recall': 1.0, 'support': 1}
    assert rows[1]['precision'] == 1.0 and rows[1]['recall'] == pytest.approx(2 / 3)


def test_best_head_is_the_consistent_balanced_one():
    # 4 images in two neighbour pairs (0,1) and (2,3). Head 0 gives each pair one confident
    # cluster; head 1 puts everything in one cluster; head 2 disagrees within pairs.
    neighbors = np.array([[0, 1], [1, 0], [2, 3], [3, 2]])
    good = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.01, 0.99]])
    collapsed = np.array([[0.99, 0.01]] * 4)
    inconsistent = np.array([[0.99, 0.01], [0.01, 0.99], [0.99, 0.01], [0.01, 0.99]])
    losses = scan_head_losses([collapsed, inconsistent, good], neighbors)
    head, loss = lowest_loss_head(losses)
    assert head == 2 and loss == pytest.approx(losses[2]['total'])
    # consistency of the good head: -log(0.99^2 + 0.01^2); entropy of a uniform mean: log 2
    assert losses[2]['consistency'] == pytest.approx(-np.log(0.99**2 + 0.01**2), rel=1e-4)
    assert losses[2]['entropy'] == pytest.approx(np.log(2), rel=1e-4)
    assert losses[0]['entropy'] < 0.1
