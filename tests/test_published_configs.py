"""Every value of every experiment file the original SCAN repository publishes (its configs/pretext,
configs/scan and configs/selflabel; num_workers left out), written out here as a table:

- our config for the same dataset and step holds each of them (with the original's behaviour as
  the default for every key the original has no name for);
- the original's own file, written from the table, is accepted by our loader (with an env.yml
  holding only root_dir, as the original's) and gives the same run as ours.
"""
import os

import pytest
import yaml

from utils.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

C10 = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.201])
C20 = ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761])
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def normalize(prefix, stats):
    return {f'{prefix}.normalize.mean': stats[0], f'{prefix}.normalize.std': stats[1]}


def dataset(name, classes):
    return {'train_db_name': name, 'val_db_name': name, 'num_classes': classes}


def val_transform(crop, stats):
    return {'transformation_kwargs.crop_size': crop, **normalize('transformation_kwargs', stats)}


def simclr_augmentation(size, stats):
    return {'augmentation_strategy': 'simclr',
            'augmentation_kwargs.random_resized_crop.size': size,
            'augmentation_kwargs.random_resized_crop.scale': [0.2, 1.0],
            'augmentation_kwargs.color_jitter_random_apply.p': 0.8,
            'augmentation_kwargs.color_jitter.brightness': 0.4,
            'augmentation_kwargs.color_jitter.contrast': 0.4,
            'augmentation_kwargs.color_jitter.saturation': 0.4,
            'augmentation_kwargs.color_jitter.hue': 0.1,
            'augmentation_kwargs.random_grayscale.p': 0.2,
            **normalize('augmentation_kwargs', stats)}


def ours_augmentation(crop, cutout, stats):
    return {'augmentation_strategy': 'ours', 'augmentation_kwargs.crop_size': crop,
            'augmentation_kwargs.num_strong_augs': 4,
            'augmentation_kwargs.cutout_kwargs.n_holes': 1,
            'augmentation_kwargs.cutout_kwargs.length': cutout,
            'augmentation_kwargs.cutout_kwargs.random': True,
            **normalize('augmentation_kwargs', stats)}


def simclr_pretext(name, classes, size, stats):
    return {'setup': 'simclr', 'backbone': 'resnet18', 'model_kwargs.head': 'mlp',
            'model_kwargs.features_dim': 128, **dataset(name, classes), 'criterion': 'simclr',
            'criterion_kwargs.temperature': 0.1, 'epochs': 500, 'optimizer': 'sgd',
            'optimizer_kwargs.nesterov': False, 'optimizer_kwargs.weight_decay': 0.0001,
            'optimizer_kwargs.momentum': 0.9, 'optimizer_kwargs.lr': 0.4, 'scheduler': 'cosine',
            'scheduler_kwargs.lr_decay_rate': 0.1, 'batch_size': 512,
            **simclr_augmentation(size, stats), **val_transform(size, stats)}


def moco_pretext(name, classes):
    return {'setup': 'moco', 'backbone': 'resnet50', 'model_kwargs.head': 'mlp',
            'model_kwargs.features_dim': 128, **dataset(name, classes), 'temperature': 0.07,
            'batch_size': 256, **val_transform(224, IMAGENET)}


def scan_resnet18(name, classes, crop, cutout, stats, epochs, batch_size):
    return {'setup': 'scan', 'criterion': 'scan', 'criterion_kwargs.entropy_weight': 5.0,
            'update_cluster_head_only': False, 'num_heads': 1, 'backbone': 'resnet18',
            **dataset(name, classes), 'num_neighbors': 20,
            **ours_augmentation(crop, cutout, stats), **val_transform(crop, stats),
            'optimizer': 'adam', 'optimizer_kwargs.lr': 0.0001,
            'optimizer_kwargs.weight_decay': 0.0001, 'epochs': epochs, 'batch_size': batch_size,
            'scheduler': 'constant'}


def imagenet_eval():
    return {'setup': 'scan', 'criterion': 'scan', 'criterion_kwargs.entropy_weight': 5.0,
            'backbone': 'resnet50', 'num_heads': 10, **dataset('imagenet', 1000),
            'num_neighbors': 50, **simclr_augmentation(224, IMAGENET),
            **val_transform(224, IMAGENET)}


def scan_imagenet(name, classes, batch_size):
    return {**imagenet_eval(), **dataset(name, classes), 'update_cluster_head_only': True,
            'optimizer': 'sgd', 'optimizer_kwargs.lr': 5.0, 'optimizer_kwargs.weight_decay': 0.0,
            'optimizer_kwargs.nesterov': False, 'optimizer_kwargs.momentum': 0.9, 'epochs': 100,
            'batch_size': batch_size, 'scheduler': 'constant'}


def selflabel_resnet18(name, classes, crop, cutout, stats, epochs):
    return {'setup': 'selflabel', 'use_ema': False, 'confidence_threshold': 0.99,
            'criterion': 'confidence-cross-entropy',
            'criterion_kwargs.apply_class_balancing': True, 'backbone': 'resnet18',
            'num_heads': 1, **dataset(name, classes), **ours_augmentation(crop, cutout, stats),
            **val_transform(crop, stats), 'epochs': epochs, 'optimizer': 'adam',
            'optimizer_kwargs.lr': 0.0001, 'optimizer_kwargs.weight_decay': 0.0001,
            'batch_size': 1000, 'scheduler': 'constant'}


def selflabel_imagenet(name, classes):
    return {'setup': 'selflabel', 'confidence_threshold': 0.99, 'use_ema': True,
            'ema_alpha': 0.999, 'criterion': 'confidence-cross-entropy',
            'criterion_kwargs.apply_class_balancing': False, 'backbone': 'resnet50',
            'num_heads': 1, **dataset(name, classes), **ours_augmentation(224, 75, IMAGENET),
            **val_transform(224, IMAGENET), 'optimizer': 'sgd', 'optimizer_kwargs.lr': 0.03,
            'optimizer_kwargs.weight_decay': 0.0, 'optimizer_kwargs.nesterov': False,
            'optimizer_kwargs.momentum': 0.9, 'epochs': 25, 'batch_size': 512,
            'scheduler': 'constant'}


# original file -> (its values, our file for the same dataset and step)
PUBLISHED = {
    'pretext/simclr_cifar10.yml': (simclr_pretext('cifar-10', 10, 32, C10),
                                   'pretext/simclr_cifar10.yml'),
    'pretext/simclr_cifar20.yml': (simclr_pretext('cifar-20', 20, 32, C20),
                                   'pretext/simclr_cifar20.yml'),
    'pretext/simclr_stl10.yml': (simclr_pretext('stl-10', 10, 96, IMAGENET),
                                 'pretext/simclr_stl10.yml'),
    'pretext/moco_imagenet50.yml': (moco_pretext('imagenet_50', 50),
                                    'pretext/moco_imagenet_50.yml'),
    'pretext/moco_imagenet100.yml': (moco_pretext('imagenet_100', 100),
                                     'pretext/moco_imagenet_100.yml'),
    'pretext/moco_imagenet200.yml': (moco_pretext('imagenet_200', 200),
                                     'pretext/moco_imagenet_200.yml'),
    'scan/scan_cifar10.yml': (scan_resnet18('cifar-10', 10, 32, 16, C10, 50, 128),
                              'scan/scan_cifar10.yml'),
    'scan/scan_cifar20.yml': (scan_resnet18('cifar-20', 20, 32, 16, C20, 100, 512),
                              'scan/scan_cifar20.yml'),
    'scan/scan_stl10.yml': (scan_resnet18('stl-10', 10, 96, 32, IMAGENET, 100, 128),
                            'scan/scan_stl10.yml'),
    'scan/scan_imagenet_50.yml': (scan_imagenet('imagenet_50', 50, 512),
                                  'scan/scan_imagenet_50.yml'),
    'scan/scan_imagenet_100.yml': (scan_imagenet('imagenet_100', 100, 1024),
                                   'scan/scan_imagenet_100.yml'),
    'scan/scan_imagenet_200.yml': (scan_imagenet('imagenet_200', 200, 1024),
                                   'scan/scan_imagenet_200.yml'),
    'scan/imagenet_eval.yml': (imagenet_eval(), 'scan/scan_imagenet.yml'),
    'selflabel/selflabel_cifar10.yml': (selflabel_resnet18('cifar-10', 10, 32, 16, C10, 200),
                                        'selflabel/selflabel_cifar10.yml'),
    'selflabel/selflabel_cifar20.yml': (selflabel_resnet18('cifar-20', 20, 32, 16, C20, 200),
                                        'selflabel/selflabel_cifar20.yml'),
    'selflabel/selflabel_stl10.yml': (selflabel_resnet18('stl-10', 10, 96, 32, IMAGENET, 100),
                                      'selflabel/selflabel_stl10.yml'),
    'selflabel/selflabel_imagenet_50.yml': (selflabel_imagenet('imagenet_50', 50),
                                            'selflabel/selflabel_imagenet_50.yml'),
    'selflabel/selflabel_imagenet_100.yml': (selflabel_imagenet('imagenet_100', 100),
                                             'selflabel/selflabel_imagenet_100.yml'),
    'selflabel/selflabel_imagenet_200.yml': (selflabel_imagenet('imagenet_200', 200),
                                             'selflabel/selflabel_imagenet_200.yml'),
}
EVAL_ONLY = {'scan/imagenet_eval.yml'}  # holds no training keys: read as eval.py reads it
TRAINING_KEYS = {'epochs', 'batch_size', 'optimizer', 'optimizer_kwargs', 'scheduler',
                 'scheduler_kwargs', 'update_cluster_head_only'}
# Keys of ours for behaviour the original has no key for: its behaviour is their default.
FAITHFUL_DEFAULTS = {'precision': 'fp32', 'fast_augmentation': False,
                     'criterion_kwargs.symmetric': False}


def flatten(d, prefix=''):
    for key, value in d.items():
        if isinstance(value, dict):
            yield from flatten(value, prefix + key + '.')
        else:
            yield prefix + key, value


def nest(flat):
    out = {}
    for dotted, value in flat.items():
        node = out
        *parents, last = dotted.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@pytest.fixture
def env(tmp_path):
    """The original's env.yml: only root_dir."""
    path = tmp_path / 'env.yml'
    path.write_text(yaml.safe_dump({'root_dir': str(tmp_path / 'out')}))
    return str(path)


def load(env, path, original_name):
    return load_config(env, path, evaluation=original_name in EVAL_ONLY)


def expected_backbone(value, cfg):
    """'resnet18' in the original's files is the dataset's variant."""
    if value != 'resnet18':
        return value
    return 'resnet18_stl' if cfg.train_db_name == 'stl-10' else 'resnet18_cifar'


@pytest.mark.parametrize('original_name', sorted(PUBLISHED))
def test_our_config_holds_every_published_value(env, original_name):
    values, ours = PUBLISHED[original_name]
    cfg = load(env, os.path.join(ROOT, 'configs', ours), original_name)
    loaded = dict(flatten(cfg))
    for key, value in values.items():
        if key == 'backbone':
            value = expected_backbone(value, cfg)
        assert loaded[key] == pytest.approx(value) if isinstance(value, float) else \
            loaded[key] == value, f"{ours}: {key} = {loaded[key]!r}, published {value!r}"
    for key, value in FAITHFUL_DEFAULTS.items():
        assert loaded[key] == value, f"{ours}: {key}"
    if cfg.setup == 'scan':
        assert cfg.concat_forward is False


@pytest.mark.parametrize('original_name', sorted(PUBLISHED))
def test_the_original_file_gives_the_same_run_as_ours(env, tmp_path, original_name):
    values, ours = PUBLISHED[original_name]
    path = tmp_path / os.path.basename(original_name)
    path.write_text(yaml.safe_dump(nest(values)))
    theirs = load(env, str(path), original_name)
    mine = load(env, os.path.join(ROOT, 'configs', ours), original_name)
    skipped = {'config_files', 'num_workers'} | (TRAINING_KEYS if original_name in EVAL_ONLY
                                                  else set())
    differing = {k: (theirs[k], mine[k]) for k in set(theirs) | set(mine)
                 if k not in skipped and theirs.get(k) != mine.get(k)}
    assert differing == {}
