"""How well num_classes=auto (utils/k_selection.py) finds the number of classes, and what it
costs: prints, per data set, the true K, the K chosen, the other consistent K, the seconds the
choice took, and the Hungarian ACC of k-means on the same features at the chosen and at the true
K (a cheap stand-in for SCAN's ACC at each K).

    python benchmarks/choose_k.py                                  # generated K = 3, 5, 20, 50
    python benchmarks/choose_k.py --noise 1.0 1.3 --per_class 200
    python benchmarks/choose_k.py --config_env configs/env.yml \
        --config_exp configs/scan/scan_digits.yml                  # step 1's mined neighbours

Generated data: K clusters of uneven sizes (half to 1.5x --per_class) in 32 dimensions, L2
normalised as step 1's features are; --noise sets how much the clusters overlap (the accuracy of
their 20 nearest neighbours is printed). A step-1 run (the scan config of a finished step 1):
step 1's features of the train images and their labels, whole and restricted to the first 3 and
5 classes and to the last 5.
"""
import argparse
import os
import sys
import time

import numpy as np
from sklearn.cluster import KMeans

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.k_selection import choose_num_classes  # noqa: E402
from utils.metrics import cluster_metrics  # noqa: E402
from utils.mining import mine_nearest_neighbors  # noqa: E402


def generated(k, per_class, noise, seed, dim=32):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.integers(per_class // 2, per_class * 3 // 2 + 1, k)
    points = np.concatenate([c + noise * rng.standard_normal((s, dim)) / np.sqrt(dim)
                             for c, s in zip(centres, sizes)]).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points, np.repeat(np.arange(k), sizes)


def kmeans_acc(features, labels, k, seed=0):
    normalised = features / np.linalg.norm(features, axis=1, keepdims=True)
    found = KMeans(k, n_init=3, random_state=seed).fit_predict(normalised)
    return cluster_metrics(found, labels, int(labels.max()) + 1)['acc']


def report(name, features, labels, k_range):
    truth = int(labels.max()) + 1
    neighbors = mine_nearest_neighbors(features, 20, backend='faiss')
    purity = float((labels[neighbors[:, 1:]] == labels[:, None]).mean())
    chosen, table, seconds = choose_num_classes(features, k_range)
    others = [k for k, (_, read, _) in table.items() if read == k and k != chosen]
    acc_chosen = kmeans_acc(features, labels, chosen)
    acc_true = acc_chosen if chosen == truth else kmeans_acc(features, labels, truth)
    print(f"{name:<30}{len(labels):>7}{purity:>7.3f}{truth:>4}{chosen:>7}  "
          f"{','.join(map(str, others)) or '-':<16}{seconds:>6.1f}{acc_chosen:>8.3f}"
          f"{acc_true:>8.3f}", flush=True)
    return abs(chosen - truth)


def step1_run(config_env, config_exp):
    import torch

    from data import build_dataset
    from data.settings import complete_image_settings
    from scan import step1_train_features
    from utils.config import load_config
    cfg = complete_image_settings(load_config(config_env, config_exp))
    features = step1_train_features(cfg, torch.device('cpu'))
    labels = np.asarray(build_dataset(cfg, 'train').targets)
    name = cfg.train_db_name
    yield f"{name} (all)", features, labels
    for k in (3, 5):
        keep = labels < k
        yield f"{name} (classes 0-{k - 1})", features[keep], labels[keep]
    keep = labels >= 5
    yield f"{name} (classes 5-9)", features[keep], labels[keep] - 5


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ks', type=int, nargs='+', default=[3, 5, 20, 50])
    parser.add_argument('--noise', type=float, nargs='+', default=[1.0])
    parser.add_argument('--per_class', type=int, default=100)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--range', type=int, nargs=2, default=[2, 50], dest='k_range')
    parser.add_argument('--config_env')
    parser.add_argument('--config_exp')
    args = parser.parse_args()
    print(f"{'data':<30}{'images':>7}{'nb acc':>7}{'K':>4}{'chosen':>7}  {'also consistent':<16}"
          f"{'secs':>6}{'ACC@ch':>8}{'ACC@K':>8}  (ACC: k-means on the features)")
    if args.config_exp:
        sets = step1_run(args.config_env, args.config_exp)
    else:
        sets = ((f"generated K={k} noise={noise} s{seed}",
                 *generated(k, args.per_class, noise, seed))
                for noise in args.noise for k in args.ks for seed in args.seeds)
    errors = [report(name, features, labels, args.k_range) for name, features, labels in sets]
    print(f"true K chosen in {errors.count(0)} of {len(errors)}; within 2 in "
          f"{sum(e <= 2 for e in errors)}")


if __name__ == '__main__':
    main()
