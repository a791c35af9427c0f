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


def test_moco_step_mines_on_the_normalised_backbone_features(tmp_path):
    """setup: moco (ImageNet): the imported weights' backbone features, L2-normalised, not the
    MLP's output, give the neighbours, as in the original."""
    import os

    from PIL import Image

    from data import build_dataset
    from data.augment import build_val_transform
    from data.imagenet import read_class_list
    from models import ContrastiveModel, build_backbone
    from tests.pipeline_run import ROOT, run_step, write_env
    from tests.test_models import moco_checkpoint
    from utils.config import load_config
    import simclr

    rng = np.random.default_rng(0)
    wnids, _ = read_class_list('imagenet_50')
    for split in ('train', 'val'):  # one noise image per class: no two alike
        for wnid in wnids:
            os.makedirs(tmp_path / 'data' / 'imagenet' / split / wnid)
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
                tmp_path / 'data' / 'imagenet' / split / wnid / 'a.JPEG', quality=95)
    torch.manual_seed(0)
    source = ContrastiveModel(build_backbone('resnet50'))
    torch.save(moco_checkpoint(source), tmp_path / 'moco.pth.tar')
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = os.path.join(ROOT, 'configs', 'pretext', 'moco_imagenet_50.yml')
    opts = [f"pretrained_weights={tmp_path / 'moco.pth.tar'}", 'num_neighbors=5',
            'transformation_kwargs.crop_size=32', 'num_workers=0', 'batch_size=25']
    run_step(simclr, env, exp, *opts)

    cfg = load_config(env, exp, opts)
    dataset = build_dataset(cfg, 'train', transform=build_val_transform(cfg))
    images = torch.stack([dataset[i]['image'] for i in range(len(dataset))])
    source.eval()
    with torch.no_grad():
        backbone = source.backbone(images)
        head = source(images)
    mined = np.load(cfg.paths.topk_neighbors_train_path)
    # batches of another size may swap two near-tied neighbours, nothing more
    assert (mined == mine_nearest_neighbors(backbone, 5)).mean() > 0.98
    assert (mined == mine_nearest_neighbors(head, 5)).mean() < 0.8
