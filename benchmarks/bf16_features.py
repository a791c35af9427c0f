"""Does embedding in bf16 change what SCAN sees? A trained backbone (the digits' SimCLR small
CNN; no pretrained ViT weights can be downloaded here) embeds the digits' train split in fp32
and under bf16 autocast (`precision: bf16`, what `auto` picks on a CPU with native bf16): the
cosine of each bf16 feature to its fp32 one, the share of the 20 mined neighbours both find,
the neighbours' label accuracy and k-means' Hungarian ACC on each, and the seconds of each.

    python benchmarks/bf16_features.py /tmp/bf16 --pretext_epochs 15
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from data import build_dataset  # noqa: E402
from data.augment import build_val_transform  # noqa: E402
from data.feature_cache import embed_backbone_features  # noqa: E402
from models.loading import clustering_model_from_pretext  # noqa: E402
from tests.pipeline_run import run_step, simclr, write_env  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.device import configure_backends  # noqa: E402
from utils.metrics import cluster_metrics  # noqa: E402
from utils.mining import mine_nearest_neighbors, neighbor_accuracy, recall_at_k  # noqa: E402

CONFIG = os.path.join(ROOT, 'configs', 'pretext', 'simclr_digits.yml')
SCAN_CONFIG = os.path.join(ROOT, 'configs', 'scan', 'scan_digits.yml')  # builds the model
NEIGHBORS = 20


def embed(cfg, backbone, precision):
    """(L2-normalised features as numpy, targets, seconds) under one precision."""
    cpu = torch.device('cpu')
    configure_backends(cpu, precision)
    dataset = build_dataset(cfg, 'train')
    started = time.perf_counter()
    features, targets = embed_backbone_features(backbone, dataset, build_val_transform(cfg), cfg,
                                                cpu, desc=precision)
    seconds = time.perf_counter() - started
    features = torch.nn.functional.normalize(features, dim=1)
    return features.numpy(), targets.numpy(), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='a folder for the pretext run (reused when there)')
    parser.add_argument('--pretext_epochs', type=int, default=15)
    args = parser.parse_args()
    env = write_env(args.work, os.path.join(args.work, 'outputs'))
    cfg = load_config(env, SCAN_CONFIG, ['num_workers=0'])
    if not os.path.isfile(cfg.paths.pretext_model):
        run_step(simclr, env, CONFIG, f'epochs={args.pretext_epochs}', 'num_workers=0')
    backbone = clustering_model_from_pretext(cfg).backbone.eval()
    runs = {p: embed(cfg, backbone, p) for p in ('fp32', 'bf16')}
    (full, targets, _), (half, _, _) = runs['fp32'], runs['bf16']
    cosine = (full * half).sum(1)
    exact = mine_nearest_neighbors(full, NEIGHBORS)
    report = {'images': len(full), 'cosine_mean': round(float(cosine.mean()), 5),
              'cosine_min': round(float(cosine.min()), 5),
              f'shared_top{NEIGHBORS}_neighbours': round(
                  recall_at_k(mine_nearest_neighbors(half, NEIGHBORS), exact), 4)}
    classes = int(targets.max()) + 1
    for precision, (features, _, seconds) in runs.items():
        found = KMeans(classes, n_init=10, random_state=0).fit_predict(features)
        report[precision] = {
            'seconds': round(seconds, 2),
            f'neighbour_acc_top{NEIGHBORS}': round(neighbor_accuracy(
                mine_nearest_neighbors(features, NEIGHBORS), targets), 4),
            'kmeans_acc': round(cluster_metrics(found, targets, classes)['acc'], 4)}
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
