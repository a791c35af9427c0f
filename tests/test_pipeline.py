"""The three steps end to end on an easy generated dataset: every output file is written, and
the clusters beat k-means on raw pixels by a clear margin."""
import json
import os
import pathlib

import numpy as np
import pytest
from sklearn.cluster import KMeans

from tests.pipeline_run import (folder_outputs, run_eval, run_step, simclr, scan, selflabel,
                                write_config, write_env)
from tests.shapes import SHAPES, shape_arrays, write_shapes
from utils.metrics import cluster_metrics

PER_CLASS = 60
FOLDER_KEYS = dict(train_db_name='folder', val_db_name='folder', num_classes=len(SHAPES))


@pytest.fixture(scope='module')
def shapes_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('shapes')
    folder = tmp / 'shapes'
    write_shapes(str(folder), PER_CLASS)
    env = write_env(str(tmp), tmp / 'out')
    configs = {
        'pretext': write_config(str(tmp), 'pretext', **FOLDER_KEYS, epochs=40, batch_size=100),
        'scan': write_config(str(tmp), 'scan', **FOLDER_KEYS, epochs=20, batch_size=100),
        'selflabel': write_config(str(tmp), 'selflabel', **FOLDER_KEYS, epochs=10,
                                  batch_size=100),
    }
    opts = [f'folder={folder}']
    run_step(simclr, env, configs['pretext'], *opts)
    run_step(scan, env, configs['scan'], *opts)
    run_step(selflabel, env, configs['selflabel'], *opts)
    results = {step: run_eval(env, configs[step], '--opts', *opts) for step in configs}
    return {'out': pathlib.Path(folder_outputs(tmp / 'out', folder)), 'results': results}


def test_every_output_file_is_written(shapes_run):
    out = shapes_run['out']
    expected = ['pretext/checkpoint.pth.tar', 'pretext/model.pth.tar', 'pretext/log.jsonl',
                'pretext/topk-train-neighbors.npy', 'pretext/topk-val-neighbors.npy',
                'pretext/eval/metrics.json',
                'scan/checkpoint.pth.tar', 'scan/model.pth.tar', 'scan/log.jsonl',
                'scan/eval/metrics.json', 'scan/eval/confusion_matrix.png',
                'scan/eval/prototypes.png', 'scan/eval/most_confident.png',
                'selflabel/checkpoint.pth.tar', 'selflabel/model.pth.tar',
                'selflabel/log.jsonl', 'selflabel/eval/metrics.json',
                'selflabel/eval/confusion_matrix.png', 'selflabel/eval/prototypes.png',
                'selflabel/eval/most_confident.png']
    missing = [p for p in expected if not os.path.isfile(out / p)]
    assert not missing
    neighbors = np.load(out / 'pretext' / 'topk-train-neighbors.npy')
    assert neighbors.shape == (PER_CLASS * len(SHAPES), 21)
    log = [json.loads(line) for line in open(out / 'selflabel' / 'log.jsonl')]
    assert [r['epoch'] for r in log] == list(range(1, 11))
    assert {'confident_share', 'non_empty_clusters', 'val_acc'} <= set(log[-1])


def test_metrics_json_describes_the_clusters(shapes_run):
    results = shapes_run['results']['selflabel']
    assert sum(results['cluster_sizes']) == PER_CLASS * len(SHAPES)
    # as many clusters as classes: every non-empty cluster is matched to a class of its own, an
    # empty one (a collapse) is never named after a class
    sizes, named = results['cluster_sizes'], results['cluster_to_class']
    assert all((name is None) == (sizes[int(k)] == 0) for k, name in named.items())
    matched = [name for name in named.values() if name is not None]
    assert len(set(matched)) == len(matched) and set(matched) <= set(SHAPES)
    assert len(matched) >= len(SHAPES) - 1
    assert len(results['per_class']) == len(SHAPES)
    assert shapes_run['results']['pretext']['kmeans']['acc'] > 0.2


def test_pretext_eval_reports_the_originals_val_neighbour_accuracy(shapes_run):
    pretext = shapes_run['results']['pretext']
    accs = pretext['val_neighbor_acc']
    assert list(accs) == ['top1', 'top5', 'top20']
    assert all(1 / len(SHAPES) < a <= 1 for a in accs.values())  # above chance on easy shapes
    log = [json.loads(line) for line in open(shapes_run['out'] / 'pretext' / 'log.jsonl')]
    assert 0 <= log[-1]['knn_acc'] <= 1  # val is train here: no query votes for itself


def test_pipeline_beats_kmeans_on_raw_pixels(shapes_run):
    images, labels = shape_arrays(PER_CLASS)
    raw = images.reshape(len(images), -1) / 255.0
    kmeans_acc = cluster_metrics(KMeans(len(SHAPES), n_init=10, random_state=0).fit_predict(raw),
                                 labels, len(SHAPES))['acc']
    scan_acc = shapes_run['results']['scan']['acc']
    final_acc = shapes_run['results']['selflabel']['acc']
    print(f"k-means on pixels {kmeans_acc:.3f}, SCAN {scan_acc:.3f}, self-label {final_acc:.3f}")
    assert final_acc >= kmeans_acc + 0.3
