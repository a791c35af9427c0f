"""The folder pipeline on a frozen pretrained backbone (a small timm ViT with random weights,
loaded from a file): with the feature cache and without it the heads reach the same accuracy
on easy images; eval, --annotate and --predict work on the result; the cache is reused when
nothing changed and recomputed, saying why, when the images or the backbone change."""
import csv
import json
import os

import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image

from data.fingerprint import DatasetChanged
from data.image_folder import scan_folder, working_copies
from tests.folder_images import KINDS, picture
from tests.pipeline_run import (folder_outputs, run_eval, run_step, scan, selflabel, simclr,
                                write_env)
from tests.test_annotate import hungarian_acc
from utils.experiment_clash import ExperimentClash
from utils.runtime import get_args_parser, run_cli

PER_KIND = 20
CONFIGS = {step: f'configs/{step}/{prefix}_folder_pretrained.yml' for step, prefix in
           (('pretext', 'simclr'), ('scan', 'scan'), ('selflabel', 'selflabel'))}
# A tiny ViT at 32 pixels (4 patches): the folder_pretrained configs, sized for a test.
MODEL = ['backbone=timm/vit_tiny_patch16_224', 'transformation_kwargs.crop_size=32',
         'transformation_kwargs.resize=32', 'num_classes=3', 'num_workers=0']
STEP_OPTS = {
    'pretext': ['num_neighbors=5', 'batch_size=30'],
    'scan': ['num_neighbors=5', 'batch_size=30', 'epochs=30', 'optimizer_kwargs.lr=0.01',
             'cached_views=2', 'augmentation_kwargs.cutout_kwargs.length=8'],
    'selflabel': ['batch_size=30', 'epochs=5', 'optimizer_kwargs.lr=0.001', 'cached_views=2',
                  'augmentation_kwargs.cutout_kwargs.length=8'],
}


pytestmark = pytest.mark.usefixtures('one_thread')


def write_pictures(folder, per_kind, seed=0):
    """RGB pictures of the three kinds in class folders; returns {path: kind}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for kind in KINDS:
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
        for i in range(per_kind):
            path = os.path.join(folder, kind, f'{kind}_{i:02d}.png')
            Image.fromarray(picture(kind, rng)).save(path)
            truth[os.path.abspath(path)] = kind
    return truth


def write_weights(path, seed):
    torch.manual_seed(seed)
    net = timm.create_model('vit_tiny_patch16_224', num_classes=0)
    safetensors.torch.save_file(net.state_dict(), str(path))
    return str(path)


class Pipeline:
    """One folder, one weights file, outputs under root/<name>/."""

    def __init__(self, root, folder, weights):
        self.root, self.folder, self.weights = str(root), str(folder), weights

    def opts(self, step, *extra):
        weights = [f'pretrained_weights={self.weights}'] if step == 'pretext' else []
        return [f'folder={self.folder}', *MODEL, *STEP_OPTS[step], *weights, *extra]

    def env(self, name):
        return write_env(os.path.join(self.root, name), os.path.join(self.root, name, 'out'))

    def step(self, name, step, *extra):
        module = {'pretext': simclr, 'scan': scan, 'selflabel': selflabel}[step]
        return run_step(module, self.env(name), CONFIGS[step], *self.opts(step, *extra))

    def eval(self, name, step, *args):
        return run_eval(self.env(name), CONFIGS[step], *args, '--opts', *self.opts(step))

    def pretext_dir(self, name):
        return os.path.join(folder_outputs(os.path.join(self.root, name, 'out'), self.folder,
                                           backbone='timm/vit_tiny_patch16_224'),
                            'pretext')


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Steps 1-3 with the cache and without it (same images, same weights file)."""
    tmp = tmp_path_factory.mktemp('frozen')
    pipeline = Pipeline(tmp, tmp / 'pictures', write_weights(tmp / 'vit.safetensors', 0))
    write_pictures(pipeline.folder, PER_KIND)
    results = {}
    for name, cache in (('cached', 'true'), ('uncached', 'false')):
        results[name] = {'pretext': pipeline.step(name, 'pretext')}
        for step in ('scan', 'selflabel'):
            pipeline.step(name, step, f'feature_cache={cache}')
            results[name][step] = pipeline.eval(name, step)
    return pipeline, results


def test_step_one_trains_nothing_and_caches_the_features(runs):
    pipeline, results = runs
    pretext = results['cached']['pretext']
    assert pretext['train']['features'] == 'embedded (not computed yet)'
    assert pretext['val']['features'] == 'cached'  # a folder's val images are its train images
    assert pretext['train']['neighbor_acc'] > 0.95
    out = pipeline.pretext_dir('cached')
    features = np.load(os.path.join(out, 'features-train.npy'))
    assert features.shape == (3 * PER_KIND, 192)
    assert np.load(os.path.join(out, 'features-train-views.npy')).shape == (2, 3 * PER_KIND, 192)
    assert not os.path.exists(os.path.join(out, 'checkpoint.pth.tar'))
    assert not os.path.exists(os.path.join(out, 'features-val.npy'))
    key = json.load(open(os.path.join(out, 'features-train.json')))['key']
    assert set(key) == {'images', 'backbone', 'preprocessing'}


def test_cached_and_uncached_heads_are_equally_good(runs):
    _, results = runs
    for step in ('scan', 'selflabel'):
        cached, uncached = results['cached'][step]['acc'], results['uncached'][step]['acc']
        print(f"{step}: ACC cached {cached:.3f}, uncached {uncached:.3f}")
        assert cached >= 0.95 and uncached >= 0.95
        assert abs(cached - uncached) <= 0.05


def test_models_hold_the_frozen_backbone(runs):
    pipeline, _ = runs
    out = os.path.dirname(pipeline.pretext_dir('cached'))
    pretext = torch.load(os.path.join(out, 'pretext', 'model.pth.tar'), weights_only=True)
    final = torch.load(os.path.join(out, 'selflabel', 'model.pth.tar'), weights_only=True)
    source = safetensors.torch.load_file(pipeline.weights)
    for key, value in source.items():
        torch.testing.assert_close(pretext['model'][f'backbone.{key}'], value)
        torch.testing.assert_close(final['model'][f'backbone.{key}'], value)
    assert final['model']['cluster_head.0.weight'].shape == (3, 192)


def test_annotate_and_predict_embed_new_images_with_the_backbone(runs, tmp_path):
    pipeline, _ = runs
    new = tmp_path / 'new pictures'
    truth = write_pictures(str(new), 8, seed=1)
    out = tmp_path / 'annotations'
    pipeline.eval('cached', 'selflabel', '--annotate', str(out), '--predict', str(new))
    with open(out / 'annotations.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert sorted(r['path'] for r in rows) == sorted(truth)
    clusters = [int(r['cluster']) for r in rows]
    assert hungarian_acc(clusters, [truth[r['path']] for r in rows]) >= 0.95
    assert os.path.isfile(out / 'index.html')


def test_step_one_without_weights_or_network_stops_before_reading_images(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache', lambda *a, **k: None)
    pipeline = Pipeline(tmp_path, tmp_path / 'not read', 'hub')
    env = pipeline.env('run')
    with pytest.raises(SystemExit) as error:
        run_cli(simclr.main, get_args_parser('test'),
                ['--config_env', env, '--config_exp', CONFIGS['pretext'],
                 '--opts', *pipeline.opts('pretext')])
    message = str(error.value)
    assert 'https://huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/' \
           'model.safetensors' in message
    assert 'pretrained_weights=/path/to/model.safetensors' in message
    assert not os.path.exists(pipeline.pretext_dir('run'))


def clear_folder_scans():
    """What a new process would see: the folder is scanned and loaded again."""
    scan_folder.cache_clear()
    working_copies.cache_clear()


def test_cache_is_reused_and_invalidated_when_images_or_backbone_change(tmp_path):
    pipeline = Pipeline(tmp_path, tmp_path / 'pictures',
                        write_weights(tmp_path / 'a.safetensors', 0))
    write_pictures(pipeline.folder, 10)
    first = pipeline.step('run', 'pretext')['train']['features']
    again = pipeline.step('run', 'pretext')['train']['features']
    assert (first, again) == ('embedded (not computed yet)', 'cached')

    pipeline.weights = write_weights(tmp_path / 'b.safetensors', 1)  # another backbone
    with pytest.raises(ExperimentClash, match='changed: pretrained_weights'):
        pipeline.step('run', 'pretext')  # another experiment: never over the first one
    model = os.path.join(pipeline.pretext_dir('run'), 'model.pth.tar')
    os.remove(model)  # as the message says; the cached features stay
    assert pipeline.step('run', 'pretext')['train']['features'] == \
        'embedded (the backbone changed since it was computed)'

    changed = os.path.join(pipeline.folder, 'disc', 'disc_03.png')
    Image.fromarray(picture('checks', np.random.default_rng(5))).save(changed)
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    clear_folder_scans()
    with pytest.raises(DatasetChanged, match='rerun simclr.py'):  # step 1's record says so
        pipeline.step('run', 'scan', 'feature_cache=true')
    assert pipeline.step('run', 'pretext')['train']['features'] == \
        'embedded (the images changed since it was computed)'

    os.remove(model)
    assert pipeline.step('run', 'pretext', 'transformation_kwargs.crop_size=16',
                         'transformation_kwargs.resize=16')['train']['features'] == \
        'embedded (the preprocessing changed since it was computed)'
    clear_folder_scans()
