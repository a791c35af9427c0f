"""The pretrained folder path as shipped embeds each image once per run of the three steps:
step 2's pairs and step 3's strong input come from the cached features (feature_dropout), and
the heads still learn; `cached_views` brings back embedded augmented views."""
import os

import numpy as np
import pytest
import torch

from data import feature_cache
from data.feature_cache import augmented_view, any_view
from tests.pipeline_run import folder_outputs, run_eval, run_step, scan, selflabel, simclr
from tests.pipeline_run import write_env, write_config
from tests.test_frozen_backbone import CONFIGS, MODEL, write_pictures, write_weights
from utils.config import ConfigError, load_config

PER_KIND = 20
STEP_OPTS = {  # as tests/test_frozen_backbone.py, but the shipped configs' views and dropout
    'pretext': ['num_neighbors=5', 'batch_size=30'],
    'scan': ['num_neighbors=5', 'batch_size=30', 'epochs=30', 'optimizer_kwargs.lr=0.01'],
    'selflabel': ['batch_size=30', 'epochs=5', 'optimizer_kwargs.lr=0.001'],
}

pytestmark = pytest.mark.usefixtures('one_thread')


def test_feature_dropout_is_the_augmented_draw_of_a_feature():
    views = torch.arange(1, 401, dtype=torch.float32).reshape(1, 4, 100)
    assert torch.equal(augmented_view(views), views[0]) and torch.equal(any_view(views), views[0])
    torch.manual_seed(0)
    dropped = augmented_view(views, dropout=0.25)
    kept = dropped != 0
    assert 0.6 < kept.float().mean() < 0.9  # about 3 in 4 kept
    torch.testing.assert_close(dropped[kept], views[0][kept] / 0.75)  # scaled as nn.Dropout


def test_feature_dropout_out_of_range_names_the_key(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = write_config(str(tmp_path), 'selflabel', base='folder_pretrained', folder=str(tmp_path),
                       feature_dropout=1.0)
    with pytest.raises(ConfigError, match='feature_dropout'):
        load_config(env, exp)


def test_shipped_pretrained_configs_embed_each_image_once_and_learn(tmp_path, monkeypatch):
    folder = tmp_path / 'pictures'
    truth = write_pictures(str(folder), PER_KIND)
    weights = write_weights(tmp_path / 'vit.safetensors', 0)
    embedded = []
    real_embed = feature_cache.embed_backbone_features

    def counting(backbone, dataset, *args, **kwargs):
        embedded.append(len(dataset))
        return real_embed(backbone, dataset, *args, **kwargs)
    monkeypatch.setattr(feature_cache, 'embed_backbone_features', counting)
    env = write_env(str(tmp_path), tmp_path / 'out')
    results = {}
    for step, module in (('pretext', simclr), ('scan', scan), ('selflabel', selflabel)):
        opts = [f'folder={folder}', *MODEL, *STEP_OPTS[step]]
        opts += [f'pretrained_weights={weights}'] if step == 'pretext' else []
        run_step(module, env, CONFIGS[step], *opts)
        if step != 'pretext':
            results[step] = run_eval(env, CONFIGS[step], '--opts', *opts)['acc']
    assert embedded == [len(truth)]  # step 1 only; steps 2, 3 and eval read the cache
    pretext = os.path.join(folder_outputs(tmp_path / 'out', folder,
                                          backbone='timm/vit_tiny_patch16_224'), 'pretext')
    assert not os.path.exists(os.path.join(pretext, 'features-train-views.npy'))
    assert np.load(os.path.join(pretext, 'features-train.npy')).shape == (len(truth), 192)
    assert results['scan'] >= 0.95 and results['selflabel'] >= 0.95, results
