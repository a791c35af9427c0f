"""Configuration: validation errors name the key and the file; paths are derived."""
import glob
import hashlib
import os

import pytest
import yaml

from utils.config import ConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS_PRETEXT = os.path.join(ROOT, 'configs', 'pretext', 'simclr_digits.yml')


def write_yaml(path, content):
    path.write_text(yaml.safe_dump(content) if not isinstance(content, str) else content)
    return str(path)


@pytest.fixture
def env(tmp_path):
    return write_yaml(tmp_path / 'env.yml', {'root_dir': 'out', 'data_dir': 'data'})


def digits_exp(tmp_path, **changes):
    content = yaml.safe_load(open(DIGITS_PRETEXT))
    content.update(changes)
    return write_yaml(tmp_path / 'exp.yml', content)


@pytest.mark.parametrize('config', sorted(glob.glob(os.path.join(ROOT, 'configs', '*', '*.yml'))))
def test_every_shipped_config_is_valid(config, tmp_path):
    opts = [f'folder={tmp_path}'] if '_folder' in os.path.basename(config) else []
    cfg = load_config(os.path.join(ROOT, 'configs', 'env.yml'), config, opts)
    # <dataset>/, or <dataset>-<timm model>/ for a pretrained backbone (kept apart)
    suffix = '-' + cfg.backbone.removeprefix('timm/') if cfg.backbone.startswith('timm/') else ''
    assert cfg.paths.pretext_dir.endswith(os.path.join(cfg.train_db_name + suffix, 'pretext')) \
        or cfg.train_db_name == 'folder'


def test_paths_are_derived_from_env_folder(env, tmp_path):
    cfg = load_config(env, digits_exp(tmp_path))
    assert cfg.root_dir == str(tmp_path / 'out')
    assert cfg.paths.pretext_model == str(tmp_path / 'out' / 'digits' / 'pretext' / 'model.pth.tar')
    assert cfg.paths.topk_neighbors_train_path == str(
        tmp_path / 'out' / 'digits' / 'pretext' / 'topk-train-neighbors.npy')
    assert cfg.paths.scan_model == str(tmp_path / 'out' / 'digits' / 'scan' / 'model.pth.tar')
    assert cfg.paths.selflabel_checkpoint == str(
        tmp_path / 'out' / 'digits' / 'selflabel' / 'checkpoint.pth.tar')


def test_defaults_are_filled(env, tmp_path):
    cfg = load_config(env, digits_exp(tmp_path))
    assert cfg.device == 'auto' and cfg.seed == 0
    assert cfg.augmentation_kwargs.cutout_kwargs.n_holes == 1


def test_unknown_key_names_key_file_and_suggestion(env, tmp_path):
    exp = digits_exp(tmp_path, epoch=3)
    with pytest.raises(ConfigError) as e:
        load_config(env, exp)
    assert exp in str(e.value) and "unknown key 'epoch'" in str(e.value)
    assert "did you mean 'epochs'" in str(e.value)


def test_unknown_nested_key(env, tmp_path):
    exp = digits_exp(tmp_path, optimizer_kwargs={'lr': 0.1, 'momentun': 0.9})
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer_kwargs.momentun' "
                                          r"\(did you mean 'momentum'\?\)"):
        load_config(env, exp)


def test_wrong_type(env, tmp_path):
    exp = digits_exp(tmp_path, batch_size='big')
    with pytest.raises(ConfigError, match=r"key 'batch_size' must be int, got str \('big'\)"):
        load_config(env, exp)


def test_bool_is_not_an_int(env, tmp_path):
    with pytest.raises(ConfigError, match="key 'epochs' must be int, got bool"):
        load_config(env, digits_exp(tmp_path, epochs=True))


def test_choice_outside_options(env, tmp_path):
    with pytest.raises(ConfigError, match="key 'train_db_name' must be one of"):
        load_config(env, digits_exp(tmp_path, train_db_name='cifar10'))


def test_missing_required_key(env, tmp_path):
    content = yaml.safe_load(open(DIGITS_PRETEXT))
    del content['num_classes']
    exp = write_yaml(tmp_path / 'exp.yml', content)
    with pytest.raises(ConfigError, match=f"{exp}: required key 'num_classes' is missing"):
        load_config(env, exp)


def test_missing_file(env, tmp_path):
    missing = str(tmp_path / 'nope.yml')
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_config(env, missing)


def test_invalid_yaml(env, tmp_path):
    exp = write_yaml(tmp_path / 'bad.yml', 'epochs: [1, 2\n')
    with pytest.raises(ConfigError, match='not valid YAML'):
        load_config(env, exp)


def test_env_unknown_key(tmp_path):
    env = write_yaml(tmp_path / 'env.yml', {'root_dir': 'o', 'data_dir': 'd', 'gpu': 1})
    with pytest.raises(ConfigError, match=f"{env}: unknown key 'gpu'"):
        load_config(env, DIGITS_PRETEXT)


def test_opts_override_typed_and_nested(env, tmp_path):
    cfg = load_config(env, digits_exp(tmp_path),
                      ['epochs=3', 'optimizer_kwargs.lr=0.5', 'device=cpu',
                       'augmentation_kwargs.random_resized_crop.scale=[0.3, 1.0]'])
    assert cfg.epochs == 3 and cfg.optimizer_kwargs.lr == 0.5 and cfg.device == 'cpu'
    assert cfg.augmentation_kwargs.random_resized_crop.scale == [0.3, 1.0]


def test_opts_unknown_key(env, tmp_path):
    with pytest.raises(ConfigError, match=r"--opts: unknown key 'optimizer_kwargs.lrr' "
                                          r"\(did you mean 'lr'\?\)"):
        load_config(env, digits_exp(tmp_path), ['optimizer_kwargs.lrr=0.1'])


def test_opts_wrong_type_is_reported(env, tmp_path):
    with pytest.raises(ConfigError, match=r"\(with --opts\): key 'epochs' must be int"):
        load_config(env, digits_exp(tmp_path), ['epochs=many'])


def test_opts_without_equals(env, tmp_path):
    with pytest.raises(ConfigError, match="--opts: expected key=value, got 'epochs'"):
        load_config(env, digits_exp(tmp_path), ['epochs'])


def test_folder_dataset_needs_folder(env, tmp_path):
    exp = digits_exp(tmp_path, train_db_name='folder', val_db_name='folder')
    with pytest.raises(ConfigError, match="key 'folder' must name the image folder"):
        load_config(env, exp)
    cfg = load_config(env, exp, [f'folder={tmp_path}/my photos'])
    digest = hashlib.sha256(os.fsencode(tmp_path / 'my photos')).hexdigest()[:8]
    assert cfg.paths.pretext_dir == str(tmp_path / 'out' / f'folder-my_photos-{digest}' / 'pretext')


def test_step_specific_keys_are_checked_per_step(env, tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'num_heads'"):
        load_config(env, digits_exp(tmp_path, num_heads=3))   # a SCAN key in a pretext config


def test_env_with_only_root_dir_puts_datasets_under_it(tmp_path):
    env = write_yaml(tmp_path / 'env.yml', {'root_dir': 'out'})  # the original's env.yml
    cfg = load_config(env, digits_exp(tmp_path))
    assert cfg.data_dir == str(tmp_path / 'out' / 'datasets')
    assert cfg.imagenet_dir == str(tmp_path / 'out' / 'datasets' / 'imagenet')


@pytest.mark.parametrize('dataset,variant', [('cifar-10', 'resnet18_cifar'),
                                             ('cifar-20', 'resnet18_cifar'),
                                             ('stl-10', 'resnet18_stl')])
def test_resnet18_is_the_dataset_variant(env, tmp_path, dataset, variant):
    cfg = load_config(env, digits_exp(tmp_path, backbone='resnet18', train_db_name=dataset,
                                      val_db_name=dataset))
    assert cfg.backbone == variant


def test_selflabel_trains_one_head(env, tmp_path):
    content = yaml.safe_load(open(os.path.join(ROOT, 'configs', 'selflabel',
                                               'selflabel_digits.yml')))
    with pytest.raises(ConfigError, match=r"key 'num_heads' must be one of \[1\], got 2"):
        load_config(env, write_yaml(tmp_path / 'exp.yml', {**content, 'num_heads': 2}))


def test_moco_file_needs_no_training_keys(env, tmp_path):
    exp = write_yaml(tmp_path / 'moco.yml', {
        'setup': 'moco', 'backbone': 'resnet50', 'train_db_name': 'imagenet_50',
        'val_db_name': 'imagenet_50', 'num_classes': 50, 'temperature': 0.07, 'batch_size': 256,
        'transformation_kwargs': {'crop_size': 224}})
    cfg = load_config(env, exp)
    assert cfg.step == 'pretext' and cfg.epochs == 0 and cfg.num_neighbors == 50
    assert cfg.pretrained_weights.endswith(os.path.join('pretrained',
                                                        'moco_v2_800ep_pretrain.pth.tar'))


def test_a_file_without_training_keys_is_only_for_evaluation(env, tmp_path):
    content = yaml.safe_load(open(os.path.join(ROOT, 'configs', 'scan', 'scan_digits.yml')))
    for key in ('epochs', 'batch_size', 'optimizer', 'optimizer_kwargs'):
        del content[key]
    exp = write_yaml(tmp_path / 'eval.yml', content)
    with pytest.raises(ConfigError, match="required key 'epochs' is missing"):
        load_config(env, exp)
    assert load_config(env, exp, evaluation=True).batch_size == 256


def test_moco_without_weights_is_an_error(env, tmp_path):
    exp = write_yaml(tmp_path / 'moco.yml', {
        'setup': 'moco', 'backbone': 'resnet50', 'train_db_name': 'imagenet_50',
        'val_db_name': 'imagenet_50', 'num_classes': 50, 'batch_size': 256,
        'pretrained_weights': None, 'transformation_kwargs': {'crop_size': 224}})
    with pytest.raises(ConfigError, match="'pretrained_weights' must name the weights file"):
        load_config(env, exp)


@pytest.mark.parametrize('name', [os.fsdecode(b'ph\xffotos'), 'a: b', 'x #1 [y]', 'new\nline'])
def test_opts_take_a_path_as_typed(env, tmp_path, name):
    """A folder given with --opts is the path itself, not YAML: bytes that are not UTF-8, ': ',
    '#', brackets and newlines all reach the dataset unchanged."""
    folder = os.path.join(str(tmp_path), name)
    cfg = load_config(env, os.path.join(ROOT, 'configs', 'pretext', 'simclr_folder.yml'),
                      [f'folder={folder}', f'root_dir={tmp_path}/out'])
    assert cfg.folder == folder
    assert cfg.root_dir == f'{tmp_path}/out'
