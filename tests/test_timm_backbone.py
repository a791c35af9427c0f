"""Pretrained timm backbones without a download: a small timm model saved to a file loads
strictly into `backbone: timm/<name>` and gives the same features; a file that does not fit
lists the keys; `hub` without network stops at once and names the file to fetch; the
validation transform is timm's own eval transform."""
import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.data import create_transform

import models.timm_backbone as timm_backbone
from data.augment import build_val_transform
from data.settings import complete_image_settings
from data.timm_preprocessing import timm_data_config
from models import build_backbone
from tests.pipeline_run import write_config, write_env
from utils.checkpoint import WeightsMismatch
from utils.config import ConfigError, load_config

NAME = 'vit_tiny_patch16_224'
BACKBONE = 'timm/' + NAME
HUB_REPO = 'timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k'  # the default tag's repository


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def source():
    return source_model()


def source_model(seed=0, **kwargs):
    """A timm model with random weights and its classifier (as a downloaded file has it)."""
    torch.manual_seed(seed)
    return timm.create_model(NAME, **kwargs).eval()


def save(state, path):
    if str(path).endswith('.safetensors'):
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return str(path)


FORMATS = {
    'safetensors': ('model.safetensors', lambda s: s),
    'torch': ('model.pth', lambda s: s),
    'torch, wrapped in state_dict': ('ckpt.pth.tar', lambda s: {'state_dict': s}),
    'our pretext model (backbone.*)': ('model.pth.tar',
                                       lambda s: {'model': {f'backbone.{k}': v
                                                            for k, v in s.items()}}),
}


@pytest.mark.parametrize('form', list(FORMATS))
def test_weights_file_gives_the_features_of_the_model_it_came_from(tmp_path, form, source):
    filename, wrap = FORMATS[form]
    path = save(wrap(source.state_dict()), tmp_path / filename)
    loaded = timm_backbone.pretrained_timm_backbone(BACKBONE, path)
    net = loaded['backbone'].eval()
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(images), pre_logits=True)
        torch.testing.assert_close(net(images), expected)
    assert loaded['dim'] == expected.shape[1] == 192


def test_features_at_another_crop_size_match_timm_dynamic_size_model(tmp_path):
    """ViTs are built with dynamic_img_size: a 32-pixel crop runs on the 224 weights."""
    source = source_model(dynamic_img_size=True, num_classes=0)
    path = save(source.state_dict(), tmp_path / 'model.safetensors')
    net = timm_backbone.pretrained_timm_backbone(BACKBONE, path)['backbone'].eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(images), source(images))


def test_mismatched_file_lists_the_keys(tmp_path, source):
    state = dict(source.state_dict())
    state.pop('blocks.0.norm1.weight')
    state['blocks.0.extra.weight'] = torch.zeros(3)
    state['pos_embed'] = torch.zeros(1, 5, 7)
    path = save(state, tmp_path / 'bad.safetensors')
    with pytest.raises(WeightsMismatch) as error:
        timm_backbone.pretrained_timm_backbone(BACKBONE, path)
    message = str(error.value)
    assert 'missing keys (1): blocks.0.norm1.weight' in message
    assert 'unexpected keys (1): blocks.0.extra.weight' in message
    assert 'pos_embed: file (1, 5, 7) vs model (1, 197, 192)' in message
    assert path in message


def test_unreadable_weights_file_is_named(tmp_path):
    path = tmp_path / 'model.safetensors'
    path.write_bytes(b'<html>not the file</html>')  # what a failed download often saves
    with pytest.raises(timm_backbone.WeightsUnavailable, match='cannot read the weights file'):
        timm_backbone.pretrained_timm_backbone(BACKBONE, str(path))


def test_weights_of_another_model_do_not_load(tmp_path):
    torch.manual_seed(0)
    other = timm.create_model('resnet10t', num_classes=0)
    path = save(other.state_dict(), tmp_path / 'resnet.safetensors')
    with pytest.raises(WeightsMismatch, match=r'missing keys \(\d+\): '):
        timm_backbone.pretrained_timm_backbone(BACKBONE, path)


def test_hub_without_network_fails_at_once_with_the_file_to_fetch(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # no connection is even tried
    monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache', lambda *a, **k: None)
    with pytest.raises(timm_backbone.WeightsUnavailable) as error:
        timm_backbone.pretrained_timm_backbone(BACKBONE, 'hub')
    message = str(error.value)
    url = f'https://huggingface.co/{HUB_REPO}/resolve/main/model.safetensors'
    for expected in (HUB_REPO, 'model.safetensors', url,
                     '--opts pretrained_weights=/path/to/model.safetensors'):
        assert expected in message


def test_hub_uses_the_huggingface_cache_without_network(tmp_path, monkeypatch, source):
    cached = save(source.state_dict(), tmp_path / 'model.safetensors')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub, 'try_to_load_from_cache',
                        lambda repo, filename: cached if (repo, filename) == (
                            HUB_REPO, 'model.safetensors') else None)
    net = timm_backbone.pretrained_timm_backbone(BACKBONE, 'hub')['backbone'].eval()
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = source.forward_head(source.forward_features(images), pre_logits=True)
        torch.testing.assert_close(net(images), expected)


def test_unreachable_endpoint_answers_quickly_false(monkeypatch):
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', 'https://127.0.0.1:9')
    assert timm_backbone.hub_reachable(timeout=1) is False


def pretext_cfg(tmp_path, backbone, **changes):
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = write_config(str(tmp_path), 'pretext', base='folder_pretrained', backbone=backbone,
                       train_db_name='cifar-10', val_db_name='cifar-10', **changes)
    return load_config(env, exp, ['transformation_kwargs.crop_size=null'])


@pytest.mark.parametrize('model', ['vit_small_patch14_dinov2.lvd142m', 'resnet50.a1_in1k',
                                   'vit_base_patch16_clip_224.openai'])
def test_val_transform_is_timms_eval_transform(tmp_path, model):
    cfg = complete_image_settings(pretext_cfg(tmp_path, 'timm/' + model))
    data = timm_data_config('timm/' + model)
    assert cfg.transformation_kwargs.crop_size == data['input_size'][-1]
    assert cfg.augmentation_kwargs.normalize.mean == list(data['mean'])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 260, 3), np.uint8))
    ours = build_val_transform(cfg)(image)
    torch.testing.assert_close(ours, create_transform(**data, is_training=False)(image))


def test_config_overrides_the_pretrained_preprocessing(tmp_path):
    cfg = pretext_cfg(tmp_path, 'timm/vit_small_patch14_dinov2.lvd142m')
    cfg.transformation_kwargs.crop_size = 224
    cfg.transformation_kwargs.normalize.mean = [0.5, 0.5, 0.5]
    t = complete_image_settings(cfg).transformation_kwargs
    assert (t.crop_size, t.resize, t.interpolation) == (224, 224, 'bicubic')
    assert t.normalize.mean == [0.5, 0.5, 0.5] and t.normalize.std == [0.229, 0.224, 0.225]


@pytest.mark.parametrize('step, changes, message', [
    ('pretext', {'backbone': 'resnet50', 'pretrained_weights': 'hub'}, "needs a timm/<model"),
    ('pretext', {'pretrained_weights': None}, "set pretrained_weights to 'hub'"),
    ('pretext', {'backbone': 'timm/vit_smal_patch14_dinov2'}, "did you mean"),
    ('scan', {'update_cluster_head_only': False}, 'feature_cache needs update_cluster_head'),
    ('selflabel', {'feature_dropout': 1.0}, 'feature_dropout'),
    ('scan', {'backbone': 'resnet18_cifar', 'feature_cache': False}, "may be null"),
])
def test_config_errors_name_the_problem(tmp_path, step, changes, message):
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = write_config(str(tmp_path), step, base='folder_pretrained', folder=str(tmp_path),
                       **changes)
    with pytest.raises(ConfigError, match=message):
        cfg = load_config(env, exp)
        build_backbone(cfg.backbone)


def test_published_resnet50_backbone_is_unchanged():
    built = build_backbone('resnet50')
    assert built['dim'] == 2048 and type(built['backbone']).__module__.startswith('torchvision')
