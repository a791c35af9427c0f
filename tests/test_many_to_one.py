"""Many-to-one ACC: with more clusters than classes, each cluster counts as its majority class."""
import json

import numpy as np
from easydict import EasyDict

import eval as eval_script
from data.base import ImageDataset
from utils.metrics import many_to_one_accuracy


def test_many_to_one_maps_each_cluster_to_its_majority_class():
    # class 0 split over clusters 0 and 1, class 1 in cluster 2 with one class-0 image
    predictions = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    targets = np.array([0, 0, 1, 0, 0, 1, 1, 1, 0])
    assert many_to_one_accuracy(predictions, targets, 4, 2) == 7 / 9
    assert many_to_one_accuracy(np.array([], int), np.array([], int), 3, 2) == 0.0


class Tiny(ImageDataset):
    classes = ['a', 'b']

    def __init__(self, targets):
        super().__init__()
        self.targets = np.asarray(targets)
        self.data = np.zeros((len(targets), 4, 4, 3), np.uint8)


def evaluate(tmp_path, clusters, targets, num_clusters):
    probs = np.eye(num_clusters)[clusters]
    cfg = EasyDict(step='scan', val_db_name='tiny', num_classes=num_clusters,
                   paths={f'{s}_dir': str(tmp_path / s) for s in ('pretext', 'scan')})
    results = eval_script.evaluate_clustering(cfg, 'model.pth.tar', str(tmp_path), Tiny(targets),
                                              probs, np.asarray(targets), head=0,
                                              features=probs)
    json.dumps(results)  # goes into metrics.json as it is
    return results


def test_metrics_gain_many_to_one_acc_when_clusters_outnumber_classes(tmp_path):
    results = evaluate(tmp_path, [0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1, -1], 4)
    assert results['acc'] == 4 / 7  # Hungarian: one cluster per class counts
    assert results['acc_many_to_one'] == 1.0  # unlabelled images are left out of both


def test_no_many_to_one_acc_when_clusters_match_classes(tmp_path):
    results = evaluate(tmp_path, [0, 0, 1, 1], [0, 0, 1, 0], 2)
    assert 'acc_many_to_one' not in results
