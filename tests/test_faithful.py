"""Behaviour equal to the original SCAN code where our code had differed (issue 21): the
self-label EMA, the kNN monitor, the pretext evaluation, the prototypes, the step schedule and
the strong augmentation's op order. Each expected value is computed here the original's way."""
import json
import os
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from easydict import EasyDict
from torch.optim.swa_utils import AveragedModel

import selflabel
import simclr
from data import augment
from losses import ConfidenceBasedCE
from models.heads import ClusteringModel
from tests.folder_images import write_pattern_folder
from tests.pipeline_run import folder_outputs, run_step, write_config, write_env
from utils.config import load_config
from utils.ema import ShadowEMA
from utils.knn import weighted_knn_accuracy
from utils.mining import neighbor_accuracies
from utils.prototypes import original_prototypes
from utils.training import build_scheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures('one_thread')


# 1. Self-label EMA ------------------------------------------------------------------------

def small_model(seed=0):
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU())
    return ClusteringModel({'backbone': backbone, 'dim': 8}, nclusters=3)


def batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{'image': torch.randn(16, 6, generator=g),
             'image_augmented': torch.randn(16, 6, generator=g)} for _ in range(n)]


def original_ema_training(model, data, lr, alpha):
    """The original's selflabel_train with use_ema: step, shadow update, shadow loaded."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    criterion = ConfidenceBasedCE(0.0, True)
    shadow = {k: v.clone().detach() for k, v in model.state_dict().items()}
    keys = [k for k, _ in model.named_parameters()]
    model.train()
    for batch in data:
        with torch.no_grad():
            weak = model(batch['image'])[0]
        loss, _ = criterion(weak, model(batch['image_augmented'])[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = model.state_dict()
        for name in keys:
            shadow[name].copy_(alpha * shadow[name] + (1 - alpha) * state[name])
        model.load_state_dict(shadow, strict=True)
    return model.state_dict()


def our_training(model, data, lr, ema):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    selflabel.train_one_epoch(model, ema, data, ConfidenceBasedCE(0.0, True), optimizer,
                              torch.device('cpu'), 0)
    return model.state_dict()


def test_default_ema_is_the_originals_arithmetic_parameters_and_buffers():
    data, alpha = batches(), 0.999
    start = {k: v.clone() for k, v in small_model().state_dict().items()}
    expected = original_ema_training(small_model(), data, 0.03, alpha)
    model = small_model()
    got = our_training(model, data, 0.03, ShadowEMA(model, alpha))
    assert set(got) == set(expected)
    for key in got:
        assert torch.equal(got[key], expected[key]), key
    # BatchNorm statistics stay those of the start, though the model trained in train mode
    for key in ('backbone.1.running_mean', 'backbone.1.running_var',
                'backbone.1.num_batches_tracked'):
        assert torch.equal(got[key], start[key]), key
    assert not torch.equal(got['cluster_head.0.weight'], start['cluster_head.0.weight'])


def test_default_ema_equals_sgd_at_lr_times_one_minus_alpha():
    data, alpha = batches(), 0.999
    model = small_model()
    with_ema = our_training(model, data, 0.03, ShadowEMA(model, alpha))
    plain = small_model()
    buffers = {k: v.clone() for k, v in plain.named_buffers()}
    optimizer = torch.optim.SGD(plain.parameters(), lr=0.03 * (1 - alpha), momentum=0.9)
    criterion = ConfidenceBasedCE(0.0, True)
    plain.train()
    for batch in data:
        with torch.no_grad():
            weak = plain(batch['image'])[0]
        loss, _ = criterion(weak, plain(batch['image_augmented'])[0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for name, buffer in plain.named_buffers():  # BatchNorm statistics pinned
            buffer.copy_(buffers[name])
    for key, value in plain.state_dict().items():
        assert torch.allclose(with_ema[key].float(), value.float(), atol=1e-6), key


def ema_cfg(method):
    return EasyDict(use_ema=True, ema_alpha=0.999, ema_method=method)


def test_ema_method_default_is_original_and_averaged_is_opt_in():
    exp = os.path.join(ROOT, 'configs', 'selflabel', 'selflabel_imagenet_50.yml')
    cfg = load_config(os.path.join(ROOT, 'configs', 'env.yml'), exp)
    assert cfg.use_ema and cfg.ema_method == 'original'
    model = small_model()
    assert isinstance(selflabel.build_ema(ema_cfg('original'), model, None), ShadowEMA)
    assert isinstance(selflabel.build_ema(ema_cfg('averaged'), model, None), AveragedModel)
    assert selflabel.build_ema(EasyDict(use_ema=False), model, None) is None


# 2. kNN monitor ----------------------------------------------------------------------------

def clustered_features(classes=3, per_class=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 16, generator=g) * 3
    targets = torch.arange(classes).repeat_interleave(per_class)
    return centres[targets] + 0.3 * torch.randn(len(targets), 16, generator=g), targets


def test_knn_works_with_fewer_clusters_than_classes():
    features, targets = clustered_features(classes=3)
    # num_classes (the number of clusters asked) is 2 while the labels hold 3 classes
    acc = weighted_knn_accuracy(features, targets, features, targets, num_classes=2, k=5,
                                exclude_self=True)
    assert acc == 1.0


def test_knn_query_does_not_vote_for_itself_when_val_is_train():
    features = torch.randn(40, 8, generator=torch.Generator().manual_seed(3))
    targets = torch.arange(40) % 2  # labels unrelated to the features
    with_self = weighted_knn_accuracy(features, targets, features, targets, k=1)
    without = weighted_knn_accuracy(features, targets, features, targets, k=1, exclude_self=True)
    assert with_self == 1.0  # each image is its own nearest neighbour
    sims = torch.nn.functional.normalize(features, dim=1)
    sims = sims @ sims.T
    sims.fill_diagonal_(float('-inf'))
    expected = float((targets[sims.argmax(dim=1)] == targets).float().mean())
    assert without == pytest.approx(expected)
    assert without < 0.8


def test_knn_unlabelled_bank_rows_never_vote():
    features, targets = clustered_features(classes=2, per_class=10)
    targets = targets.clone()
    targets[:5] = -1
    acc = weighted_knn_accuracy(features, targets, features, targets, k=30, exclude_self=True)
    assert acc == 1.0


def test_knn_monitor_uses_the_originals_k_and_the_configs_temperature(monkeypatch):
    calls = []
    monkeypatch.setattr(simclr, 'embed', lambda *a: (torch.zeros(4, 2), torch.zeros(4)))
    monkeypatch.setattr(simclr, 'weighted_knn_accuracy',
                        lambda *a, **kw: calls.append(kw) or 0.5)
    labelled = EasyDict(has_labels=True)
    env = os.path.join(ROOT, 'configs', 'env.yml')
    for name in ('simclr_cifar10', 'simclr_cifar20', 'simclr_stl10'):
        cfg = load_config(env, os.path.join(ROOT, 'configs', 'pretext', f'{name}.yml'),
                          ['criterion_kwargs.temperature=0.37'])
        assert simclr.knn_monitor(None, [labelled, labelled], cfg, 'cpu') == 0.5
        assert calls[-1] == {'k': 100, 'temperature': 0.37, 'exclude_self': False}
    folder = load_config(env, os.path.join(ROOT, 'configs', 'pretext', 'simclr_folder.yml'),
                         ['folder=/nowhere', 'knn_k=7'])
    simclr.knn_monitor(None, [labelled, labelled], folder, 'cpu')
    assert calls[-1] == {'k': 7, 'temperature': 0.5, 'exclude_self': True}


# 3. eval.py on a pretext model: top-1/5/20 neighbour accuracy within val --------------------

def test_val_neighbor_accuracies_as_the_original_memory_bank():
    features, targets = clustered_features(classes=3, per_class=10)
    features[0] = features[10]  # image 0 (class 0) sits on image 10 (class 1)
    accs = neighbor_accuracies(features, targets.numpy())
    assert set(accs) == {1, 5, 20}
    assert accs[1] == pytest.approx(29 / 30)  # image 0's nearest other image is image 10's
    assert accs[20] < accs[5] <= accs[1]  # 20 neighbours of 30 images cross classes
    assert neighbor_accuracies(features[:6], targets[:6].numpy()).keys() == {1, 5}


# 4. Prototypes: one per cluster, nearest the mean of its 10 most confident ----------------

def test_original_prototypes():
    rng = np.random.default_rng(0)
    probs = np.full((30, 3), 0.05)
    clusters = np.array([0] * 12 + [1] * 18)  # cluster 2 is empty
    confidence = rng.uniform(0.5, 0.9, 30)
    probs[np.arange(30), clusters] = confidence
    features = rng.normal(size=(30, 4))
    found = original_prototypes(probs, features)
    assert set(found) == {0, 1}
    for k in (0, 1):
        members = np.flatnonzero(clusters == k)
        top = members[np.argsort(-confidence[members])[:10]]
        mean = features[top].mean(axis=0)
        assert found[k] == top[np.argmin(np.linalg.norm(features[top] - mean, axis=1))]


# 5. scheduler: step -----------------------------------------------------------------------

def original_step_lr(lr, epoch, decay_epochs, rate):
    steps = np.sum(epoch > np.array(decay_epochs))
    return lr * rate ** steps if steps > 0 else lr


def test_step_schedule_is_the_originals_adjust_learning_rate():
    cfg = EasyDict(scheduler='step', epochs=12, optimizer_kwargs=EasyDict(lr=0.4),
                   scheduler_kwargs=EasyDict(lr_decay_rate=0.1, lr_decay_epochs=[3, 7]))
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    scheduler = build_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(cfg.epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    expected = [original_step_lr(0.4, e, [3, 7], 0.1) for e in range(12)]
    assert lrs == pytest.approx(expected)
    assert lrs[3] == pytest.approx(0.4) and lrs[4] == pytest.approx(0.04)


def test_step_schedule_keys_are_validated(tmp_path):
    exp = os.path.join(ROOT, 'configs', 'scan', 'scan_digits.yml')
    env = os.path.join(ROOT, 'configs', 'env.yml')
    cfg = load_config(env, exp, ['scheduler=step', 'scheduler_kwargs.lr_decay_epochs=[2, 5]'])
    assert cfg.scheduler_kwargs.lr_decay_epochs == [2, 5]
    with pytest.raises(ValueError, match=r"lr_decay_epochs.*whole numbers"):
        load_config(env, exp, ['scheduler=step', 'scheduler_kwargs.lr_decay_epochs=[-1]'])


# 6. Strong augmentation: the original's op order, so a seed draws the same ops --------------

ORIGINAL_ORDER = ['identity', 'autocontrast', 'equalize', 'rotate', 'solarize', 'color',
                  'contrast', 'brightness', 'sharpness', 'shear_x', 'translate_x', 'translate_y',
                  'posterize', 'shear_y']


def test_strong_ops_in_the_originals_order(monkeypatch):
    assert [name for name, *_ in augment.STRONG_OPS] == ORIGINAL_ORDER
    applied = []
    monkeypatch.setattr(augment, 'STRONG_OPS', [
        (name, lambda img, v, name=name: applied.append(name) or img, low, high)
        for name, _, low, high in augment.STRONG_OPS])
    random.seed(7)
    augment.RandomStrongOps(40)(None)
    random.seed(7)
    drawn = [ORIGINAL_ORDER[i] for i in random.choices(range(14), k=40)]
    assert applied == drawn


# 2 (issue 16 point 5, issue 23 point 4): step 1 on a labelled folder of 3 classes asked for 2
# clusters runs its kNN monitor every epoch, leaving each query out of its own vote

def test_step1_knn_monitor_on_a_folder_with_more_classes_than_clusters(tmp_path):
    folder = tmp_path / 'images'
    write_pattern_folder(str(folder), per_kind=10, labelled=True)
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = write_config(str(tmp_path), 'pretext', base='folder', epochs=2, batch_size=30,
                       knn_every=1, num_neighbors=5)
    run_step(simclr, env, exp, f'folder={folder}', 'num_classes=2')
    log_path = os.path.join(folder_outputs(tmp_path / 'out', folder), 'pretext', 'log.jsonl')
    records = [json.loads(line) for line in open(log_path)]
    assert [r['epoch'] for r in records] == [1, 2]
    assert all(0.0 <= r['knn_acc'] <= 1.0 for r in records)
