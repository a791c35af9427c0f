"""The authors' released checkpoints: files in the original code's three formats and key layout
load strictly into our models and give the same outputs; eval.py reports on them."""
import io
import json
import os

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torchvision import datasets

import tests.original_models as original
from data.augment import build_val_transform
from models import ClusteringModel, ContrastiveModel, build_backbone
from models.loading import load_contrastive_weights, load_trained_clustering_model
from models.original import read_model_file
from tests.fake_datasets import patch_checksums, write_cifar10
from tests.pipeline_run import ROOT, run_eval
from utils.checkpoint import WeightsMismatch
from utils.config import load_config
from utils.metrics import cluster_metrics

VARIANTS = [('resnet18_cifar', False, 32), ('resnet18_stl', True, 96)]


def images(size, n=3):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(5))


def original_clustering(stl, nclusters=10, nheads=1, seed=0):
    torch.manual_seed(seed)
    return original.randomise_batchnorm(
        original.ClusteringModel(original.ResNet18(stl), nclusters, nheads), seed).eval()


def test_original_layout_has_the_shortcut_names():
    keys = original.ResNet18().state_dict()
    assert 'layer2.0.shortcut.0.weight' in keys and 'layer2.0.shortcut.1.running_var' in keys
    assert not any('downsample' in k or k.startswith('fc.') for k in keys)


@pytest.mark.parametrize('backbone,stl,size', VARIANTS)
def test_pretext_state_dict_gives_the_same_features(tmp_path, backbone, stl, size):
    torch.manual_seed(0)
    theirs = original.randomise_batchnorm(original.ContrastiveModel(original.ResNet18(stl))).eval()
    path = tmp_path / 'simclr.pth.tar'
    torch.save(theirs.state_dict(), path)  # a plain state dict, as the original saves it
    ours = load_contrastive_weights(ContrastiveModel(build_backbone(backbone)), str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(images(size)), theirs(images(size)), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize('backbone,stl,size', VARIANTS)
def test_scan_file_gives_the_same_logits_and_its_head(tmp_path, backbone, stl, size):
    theirs = original_clustering(stl, nheads=3)
    path = tmp_path / 'scan.pth.tar'
    # np.argmin's integer, as the original saves the best head
    torch.save({'model': theirs.state_dict(), 'head': np.int64(2)}, path)
    ours, head = load_trained_clustering_model(str(path), backbone)
    assert head == 2 and ours.nheads == 3
    with torch.no_grad():
        for a, b in zip(ours.eval()(images(size)), theirs(images(size))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('backbone,stl,size', VARIANTS)
def test_selflabel_state_dict_gives_the_same_logits(tmp_path, backbone, stl, size):
    theirs = original_clustering(stl, nclusters=20)
    path = tmp_path / 'selflabel.pth.tar'
    torch.save(theirs.state_dict(), path)
    ours, head = load_trained_clustering_model(str(path), backbone)
    assert head == 0
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(images(size))[0], theirs(images(size))[0],
                                   rtol=1e-5, atol=1e-5)


def test_numpy_1_head_index_loads(tmp_path):
    """Files written with numpy 1 name the scalar numpy.core.multiarray.scalar."""
    buffer = io.BytesIO()
    torch.save({'model': original_clustering(False).state_dict(), 'head': np.int64(0)}, buffer,
               _use_new_zipfile_serialization=False)  # the plain pickle stream of torch < 1.6
    old = buffer.getvalue().replace(b'numpy._core.multiarray\nscalar', b'numpy.core.multiarray\nscalar')
    assert old != buffer.getvalue()
    path = tmp_path / 'scan.pth.tar'
    path.write_bytes(old)
    assert read_model_file(str(path)).head == 0


def test_resnet50_scan_file_uses_torchvision_names(tmp_path):
    torch.manual_seed(0)
    theirs = ClusteringModel(build_backbone('resnet50'), 1000, nheads=10)
    path = tmp_path / 'scan_imagenet.pth.tar'
    torch.save({'model': theirs.state_dict(), 'head': 7}, path)
    ours, head = load_trained_clustering_model(str(path), 'resnet50')
    assert head == 7
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_mismatch_lists_the_keys_in_our_names(tmp_path):
    state = original_clustering(False).state_dict()
    del state['backbone.layer3.0.shortcut.1.weight']
    state['cluster_head.0.extra'] = torch.zeros(1)
    path = tmp_path / 'selflabel.pth.tar'
    torch.save(state, path)
    with pytest.raises(WeightsMismatch) as e:
        load_trained_clustering_model(str(path), 'resnet18_cifar')
    assert 'missing keys (1): backbone.layer3.0.downsample.1.weight' in str(e.value)
    assert 'unexpected keys (1): cluster_head.0.extra' in str(e.value)


def test_a_file_that_is_no_model_is_refused(tmp_path):
    path = tmp_path / 'x.pth.tar'
    torch.save({'epoch': 3}, path)
    with pytest.raises(ValueError, match='is not a model file'):
        read_model_file(str(path))


# ---------------------------------------------------------------- eval.py on CIFAR-10 files

@pytest.fixture
def cifar_env(tmp_path, monkeypatch):
    """An env.yml holding only root_dir, as the original's, with a fake CIFAR-10 in the default
    data_dir (<root_dir>/datasets)."""
    root = tmp_path / 'out'
    written = write_cifar10(str(root / 'datasets' / 'cifar-10'))
    patch_checksums(monkeypatch, datasets.CIFAR10, written)
    env = tmp_path / 'env.yml'
    env.write_text(yaml.safe_dump({'root_dir': str(root)}))
    return str(env), written


def eval_model(env, config, path):
    return run_eval(env, os.path.join(ROOT, 'configs', config), '--model', str(path),
                    '--opts', 'device=cpu', 'num_workers=0')


def test_eval_reports_the_original_scan_and_selflabel_files(cifar_env, tmp_path):
    env, written = cifar_env
    cfg = load_config(env, os.path.join(ROOT, 'configs', 'scan', 'scan_cifar10.yml'))
    transform = build_val_transform(cfg)
    batch = torch.stack([transform(Image.fromarray(x)) for x in written.images['test']])
    scan_model = original_clustering(False, nheads=2)
    with torch.no_grad():  # head 1 projects onto the features' principal directions: it tells
        features = scan_model.backbone(batch)  # the random images apart
        centred = features - features.mean(0)
        directions = torch.linalg.svd(centred, full_matrices=False).Vh[:10]
        scan_model.cluster_head[1].weight.copy_(directions / centred.std())
        scan_model.cluster_head[1].bias.copy_(-directions @ features.mean(0) / centred.std())
    scan_path = tmp_path / 'scan_cifar-10.pth.tar'
    torch.save({'model': scan_model.state_dict(), 'head': np.int64(1)}, scan_path)
    results = eval_model(env, 'scan/scan_cifar10.yml', scan_path)
    assert results['head'] == 1
    assert {'acc', 'nmi', 'ari', 'ami', 'acc_top5'} <= set(results)
    # the predictions are those of the original model's head 1 on the test images
    with torch.no_grad():
        expected = scan_model(batch)[1].argmax(1).numpy()
    assert results['cluster_sizes'] == np.bincount(expected, minlength=10).tolist()
    assert (np.array(results['cluster_sizes']) > 0).sum() > 3
    assert results['acc'] == cluster_metrics(expected, written.labels['test'], 10)['acc']
    saved = json.load(open(os.path.join(cfg.paths.scan_eval_dir, 'metrics.json')))
    assert saved['ami'] == results['ami']

    self_path = tmp_path / 'selflabel_cifar-10.pth.tar'
    torch.save(original_clustering(False).state_dict(), self_path)
    results = eval_model(env, 'selflabel/selflabel_cifar10.yml', self_path)
    assert results['head'] == 0 and 'ami' in results


def test_eval_reports_the_original_pretext_file(cifar_env, tmp_path):
    env, _ = cifar_env
    torch.manual_seed(0)
    path = tmp_path / 'simclr_cifar-10.pth.tar'
    torch.save(original.ContrastiveModel(original.ResNet18()).state_dict(), path)
    results = eval_model(env, 'pretext/simclr_cifar10.yml', path)
    assert 0 <= results['knn_acc'] <= 1
    assert {'acc', 'nmi', 'ari', 'ami'} <= set(results['kmeans'])
