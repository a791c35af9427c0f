"""Neighbour mining on constructed features whose neighbours are known."""
import numpy as np
import pytest
import torch

from utils.knn import weighted_knn_accuracy
from utils.mining import mine_nearest_neighbors, neighbor_accuracy, recall_at_k


def points_on_circle(angles_deg):
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_exact_neighbors_on_a_circle():
    # Angles 0, 10, 20, ..., 350: each point's 2 nearest are the points 10 degrees either side.
    features = points_on_circle(np.arange(0, 360, 10))
    indices = mine_nearest_neighbors(features, k=2)
    assert indices.shape == (36, 3)
    assert (indices[:, 0] == np.arange(36)).all()          # each point is its own nearest
    for i, row in enumerate(indices):
        assert set(row[1:]) == {(i - 1) % 36, (i + 1) % 36}


def test_features_are_normalised_before_search():
    # Scaling a vector must not change its neighbours (inner product of unit vectors).
    features = points_on_circle([0, 5, 90, 95]) * np.array([[1], [100], [1], [0.01]], np.float32)
    indices = mine_nearest_neighbors(torch.from_numpy(features), k=1)
    assert indices[:, 1].tolist() == [1, 0, 3, 2]


def test_neighbor_accuracy_known_value():
    indices = np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0], [3, 2, 1]])
    targets = np.array([0, 0, 1, 1])
    # anchor 0: {0, 1} -> 1/2; anchor 1: {0, 1} -> 1/2; anchor 2: {1, 0} -> 1/2; anchor 3: {1, 0}
    assert neighbor_accuracy(indices, targets) == pytest.approx(0.5)
    assert neighbor_accuracy(indices, np.full(4, -1)) is None


def test_too_many_neighbors_is_a_clear_error():
    with pytest.raises(ValueError, match='cannot mine 5 neighbours among 3 images'):
        mine_nearest_neighbors(np.eye(3, dtype=np.float32), k=5)


def clustered_features(n_clusters=50, per_cluster=200, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = centres.repeat(per_cluster, 0) + 0.3 * rng.normal(size=(n_clusters * per_cluster, dim))
    return x.astype(np.float32)


def test_blocked_torch_search_equals_faiss():
    # The GPU path (blocked matrix products, bounded memory) checked on the CPU: blocks of 300
    # rows over 10,000 features give faiss's exact answer.
    features = clustered_features()[:10000]
    by_faiss = mine_nearest_neighbors(features, k=10, backend='faiss')
    by_torch = mine_nearest_neighbors(features, k=10, backend='torch', block_rows=300)
    assert recall_at_k(by_torch, by_faiss) > 0.999


def test_ivf_recall_against_exact():
    # Stated recall: an IVF index (nlist = 4 sqrt(N), nprobe 16) finds at least 95% of the exact
    # top-20 neighbours on clustered data.
    features = clustered_features()
    exact = mine_nearest_neighbors(features, k=20, index_type='exact')
    approx = mine_nearest_neighbors(features, k=20, index_type='ivf', nprobe=16)
    assert approx.shape == exact.shape
    assert recall_at_k(approx, exact) >= 0.95


def test_weighted_knn_on_separable_features():
    train = torch.from_numpy(points_on_circle([0, 5, 10, 180, 185, 190]))
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    query = torch.from_numpy(points_on_circle([3, 183]))
    acc = weighted_knn_accuracy(train, targets, query, torch.tensor([0, 1]), 2, k=3)
    assert acc == 1.0
    assert weighted_knn_accuracy(train, targets, query, torch.tensor([1, 0]), 2, k=3) == 0.0
