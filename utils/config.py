"""Load, validate and complete the configuration of a run.

A run is described by two YAML files: the environment (where outputs and datasets live, which
device) and the experiment (everything about the method). Both are read with `yaml.safe_load`,
checked against the schema below (unknown keys, wrong types and missing required keys are errors
that name the key and the file), overridden by `--opts key=value`, and completed with every output
path, so that the three steps find each other's files without any path editing.
"""
import difflib
import os
import re

import yaml
from easydict import EasyDict

from utils.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration problem; the message names the file and the key."""


REQUIRED = object()


class Key:
    """One schema entry: accepted types, default (or REQUIRED), optional set of choices."""

    def __init__(self, types, default=REQUIRED, choices=None):
        self.types = types if isinstance(types, tuple) else (types,)
        self.default = default
        self.choices = choices


DATASETS = ('digits', 'cifar-10', 'cifar-20', 'stl-10', 'imagenet', 'imagenet_50',
            'imagenet_100', 'imagenet_200', 'folder')
# 'resnet18', as the original's files say, is the dataset's variant (STL stem for STL-10).
BACKBONES = ('auto', 'small', 'resnet18', 'resnet18_cifar', 'resnet18_stl', 'resnet50')
NUMBER = (int, float)
# ImageNet statistics: the published value for STL-10/ImageNet, and a sensible one for photos.
NORMALIZE = {'mean': Key(list, [0.485, 0.456, 0.406]), 'std': Key(list, [0.229, 0.224, 0.225])}

ENV_SCHEMA = {
    'root_dir': Key(str),
    'data_dir': Key((str, type(None)), None),  # null: <root_dir>/datasets
    'imagenet_dir': Key((str, type(None)), None),
    'device': Key(str, 'auto'),
}

COMMON_SCHEMA = {
    'setup': Key(str, choices=('simclr', 'moco', 'scan', 'selflabel')),
    'train_db_name': Key(str, choices=DATASETS),
    'val_db_name': Key(str, choices=DATASETS),
    'folder': Key((str, type(None)), None),
    'num_classes': Key(int),
    'backbone': Key(str, choices=BACKBONES),
    'model_kwargs': {'head': Key(str, 'mlp', choices=('mlp', 'linear')),
                     'features_dim': Key(int, 128)},
    'seed': Key(int, 0),
    'epochs': Key(int),
    'batch_size': Key(int),
    'num_workers': Key(int, 2),
    'optimizer': Key(str, choices=('sgd', 'adam')),
    'optimizer_kwargs': {'lr': Key(NUMBER), 'weight_decay': Key(NUMBER, 0.0),
                         'momentum': Key(NUMBER, 0.9), 'nesterov': Key(bool, False)},
    'scheduler': Key(str, 'constant', choices=('constant', 'cosine')),
    'scheduler_kwargs': {'lr_decay_rate': Key(NUMBER, 0.1)},
    'criterion': Key(str, choices=('simclr', 'scan', 'confidence-cross-entropy')),
    'criterion_kwargs': {'temperature': Key(NUMBER, 0.1), 'entropy_weight': Key(NUMBER, 5.0),
                         'apply_class_balancing': Key(bool, True),
                         'symmetric': Key(bool, False)},  # opt-in: both SimCLR views anchor
    'augmentation_strategy': Key(str, choices=('standard', 'simclr', 'ours')),
    'augmentation_kwargs': {
        'crop_size': Key((int, type(None)), None),
        'resize': Key((int, type(None)), None),
        'horizontal_flip': Key(bool, True),
        'random_resized_crop': {'size': Key((int, type(None)), None),
                                'scale': Key(list, [0.2, 1.0])},
        'color_jitter_random_apply': {'p': Key(NUMBER, 0.8)},
        'color_jitter': {'brightness': Key(NUMBER, 0.4), 'contrast': Key(NUMBER, 0.4),
                         'saturation': Key(NUMBER, 0.4), 'hue': Key(NUMBER, 0.1)},
        'random_grayscale': {'p': Key(NUMBER, 0.2)},
        'num_strong_augs': Key(int, 4),
        # the side is drawn from 1..length on every call whatever `random` says, as the
        # original does (its files set random: true)
        'cutout_kwargs': {'n_holes': Key(int, 1), 'length': Key(int, 16),
                          'random': Key(bool, True)},
        'normalize': NORMALIZE,
    },
    'transformation_kwargs': {'crop_size': Key((int, type(None)), None),
                              'resize': Key((int, type(None)), None),
                              'normalize': NORMALIZE},
    'fast_augmentation': Key(bool, False),
    'sync_bn': Key(bool, True),
    # fp32 as the original; bf16: autocast in training, mining and evaluation, and TF32
    # matrix products on CUDA
    'precision': Key(str, 'fp32', choices=('fp32', 'bf16')),
}

SIMCLR_SCHEMA = {
    'num_neighbors': Key(int, 20),
    'num_neighbors_val': Key(int, 5),
    'knn_every': Key(int, 25),
    'pretrained_weights': Key((str, type(None)), None),
    'mining_index': Key(str, 'exact', choices=('exact', 'ivf')),
    'mining_ivf_kwargs': {'nlist': Key((int, type(None)), None), 'nprobe': Key(int, 16)},
}

STEP_SCHEMAS = {
    'simclr': SIMCLR_SCHEMA,
    # Step 1 from imported MoCo v2 weights (ImageNet): nothing is trained, neighbours are mined
    # on the backbone's features. `temperature` is MoCo's own, kept for the original's files.
    'moco': {**SIMCLR_SCHEMA, 'temperature': Key(NUMBER, 0.07)},
    'scan': {
        'num_neighbors': Key(int, 20),
        'num_heads': Key(int, 1),
        'update_cluster_head_only': Key(bool, False),
        # opt-in: anchors and neighbours in one forward pass (BatchNorm statistics over both);
        # the original makes two
        'concat_forward': Key(bool, False),
    },
    'selflabel': {
        'confidence_threshold': Key(NUMBER, 0.99),
        'use_ema': Key(bool, False),
        'ema_alpha': Key(NUMBER, 0.999),
        'num_heads': Key(int, 1, choices=(1,)),  # the best SCAN head, as the original's files say
    },
}

# What a file may leave out because nothing reads it: a MoCo file trains nothing (the original's
# hold none of these keys), and a file only evaluated (the original's imagenet_eval.yml) trains
# nothing either. Filled in under the file's own values.
MOCO_FILL = {'epochs': 0, 'optimizer': 'sgd', 'optimizer_kwargs': {'lr': 0.0},
             'criterion': 'simclr', 'augmentation_strategy': 'simclr', 'num_neighbors': 50,
             'pretrained_weights': 'pretrained/moco_v2_800ep_pretrain.pth.tar'}
EVAL_FILL = {'epochs': 0, 'batch_size': 256, 'optimizer': 'sgd', 'optimizer_kwargs': {'lr': 0.0},
             'augmentation_strategy': 'simclr'}
CRITERION_OF_SETUP = {'simclr': 'simclr', 'moco': 'simclr', 'scan': 'scan',
                      'selflabel': 'confidence-cross-entropy'}


def _closest(name, options):
    match = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ''


def _check_value(value, key, spec, where):
    if value is REQUIRED:
        raise ConfigError(f"{where}: required key '{key}' is missing")
    # bool is an int subclass in Python: never let True pass as a number or False as an int.
    ok = any(isinstance(value, t) and not (isinstance(value, bool) and t is not bool)
             for t in spec.types)
    if not ok:
        names = ' or '.join('null' if t is type(None) else t.__name__ for t in spec.types)
        raise ConfigError(f"{where}: key '{key}' must be {names}, got "
                          f"{type(value).__name__} ({value!r})")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: key '{key}' must be one of {list(spec.choices)}, "
                          f"got {value!r}")
    return value


def validate(values, schema, where, prefix=''):
    """Check `values` against `schema`, fill defaults, return a plain nested dict."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: key '{prefix.rstrip('.') or '<top>'}' must be a mapping, "
                          f"got {type(values).__name__}")
    for key in values:
        if key not in schema:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{_closest(key, schema)}")
    out = {}
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out[key] = validate(values.get(key), spec, where, prefix + key + '.')
        else:
            out[key] = _check_value(values.get(key, spec.default), prefix + key, spec, where)
    return out


def read_yaml(path):
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            content = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    return content or {}


def apply_overrides(raw, opts, schema):
    """Apply `key=value` strings (dotted keys for nested entries) to the raw experiment dict."""
    for opt in opts or []:
        if '=' not in opt:
            raise ConfigError(f"--opts: expected key=value, got '{opt}'")
        dotted, text = opt.split('=', 1)
        node, spec = raw, schema
        parts = dotted.split('.')
        for i, part in enumerate(parts):
            if not isinstance(spec, dict) or part not in spec:
                options = spec if isinstance(spec, dict) else {}
                raise ConfigError(f"--opts: unknown key '{dotted}'{_closest(part, options)}")
            spec = spec[part]
            if i < len(parts) - 1:
                node = node.setdefault(part, {})
                if node is None:
                    node = {}
        node[parts[-1]] = yaml.safe_load(text) if text != '' else None
    return raw


def output_name(cfg):
    """Name of the output folder of a run: the dataset, or the image folder's own name."""
    if cfg['train_db_name'] != 'folder':
        return cfg['train_db_name']
    slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', os.path.basename(os.path.normpath(cfg['folder'])))
    return f"folder-{slug}"


def derive_paths(cfg):
    base = os.path.join(cfg['root_dir'], output_name(cfg))
    paths = {}
    for step in ('pretext', 'scan', 'selflabel'):
        step_dir = os.path.join(base, step)
        paths[f'{step}_dir'] = step_dir
        paths[f'{step}_checkpoint'] = os.path.join(step_dir, 'checkpoint.pth.tar')
        paths[f'{step}_model'] = os.path.join(step_dir, 'model.pth.tar')
        paths[f'{step}_log'] = os.path.join(step_dir, 'log.jsonl')
        paths[f'{step}_eval_dir'] = os.path.join(step_dir, 'eval')
    paths['topk_neighbors_train_path'] = os.path.join(base, 'pretext', 'topk-train-neighbors.npy')
    paths['topk_neighbors_val_path'] = os.path.join(base, 'pretext', 'topk-val-neighbors.npy')
    return paths


STEP_OF_SETUP = {'simclr': 'pretext', 'moco': 'pretext', 'scan': 'scan', 'selflabel': 'selflabel'}


def fill_under(values, fill):
    """`values` with the entries of `fill` that it lacks (nested dicts merged)."""
    out = dict(fill)
    for key, value in values.items():
        out[key] = (fill_under(value, fill[key]) if isinstance(value, dict)
                    and isinstance(fill.get(key), dict) else value)
    return out


def dataset_resnet18(train_db_name):
    return 'resnet18_stl' if train_db_name == 'stl-10' else 'resnet18_cifar'


def load_config(config_env, config_exp, opts=None, evaluation=False):
    """Read, validate and complete both files; returns an EasyDict with `paths` derived.

    `evaluation`: the file is only evaluated, so the keys only training reads may be missing."""
    env_raw = read_yaml(config_env)
    env = validate(env_raw, ENV_SCHEMA, config_env)
    env_dir = os.path.dirname(os.path.abspath(config_env))
    for key in ('root_dir', 'data_dir', 'imagenet_dir'):
        if env[key] is not None:
            env[key] = os.path.normpath(os.path.join(env_dir, os.path.expanduser(env[key])))
    if env['data_dir'] is None:
        env['data_dir'] = os.path.join(env['root_dir'], 'datasets')
    if env['imagenet_dir'] is None:
        env['imagenet_dir'] = os.path.join(env['data_dir'], 'imagenet')

    exp_raw = read_yaml(config_exp)
    setup = exp_raw.get('setup')
    if setup not in STEP_SCHEMAS:
        raise ConfigError(f"{config_exp}: key 'setup' must be one of {list(STEP_SCHEMAS)}, "
                          f"got {setup!r}")
    schema = {**COMMON_SCHEMA, **STEP_SCHEMAS[setup]}
    if setup == 'moco':
        exp_raw = fill_under(exp_raw, MOCO_FILL)
    if evaluation:
        exp_raw = fill_under(exp_raw, {**EVAL_FILL, 'criterion': CRITERION_OF_SETUP[setup]})
    # Keys of the environment may be overridden from the command line too (e.g. device=cpu).
    env_opts = [o for o in opts or [] if o.split('=', 1)[0] in ENV_SCHEMA]
    exp_opts = [o for o in opts or [] if o.split('=', 1)[0] not in ENV_SCHEMA]
    if env_opts:
        env = validate(apply_overrides(dict(env), env_opts, ENV_SCHEMA), ENV_SCHEMA, '--opts')
    exp = validate(apply_overrides(exp_raw, exp_opts, schema), schema,
                   f"{config_exp} (with --opts)" if exp_opts else config_exp)

    cfg = {**env, **exp}
    if cfg['backbone'] == 'resnet18':
        cfg['backbone'] = dataset_resnet18(cfg['train_db_name'])
    if 'folder' in (cfg['train_db_name'], cfg['val_db_name']):
        if not cfg['folder']:
            raise ConfigError(f"{config_exp}: key 'folder' must name the image folder when the "
                              f"dataset is 'folder' (e.g. --opts folder=/path/to/images)")
        cfg['folder'] = os.path.abspath(os.path.expanduser(cfg['folder']))
    if setup == 'moco' and not cfg['pretrained_weights']:
        raise ConfigError(f"{config_exp}: setup 'moco' imports MoCo v2 weights and trains "
                          f"nothing: key 'pretrained_weights' must name the weights file")
    if cfg.get('pretrained_weights'):
        cfg['pretrained_weights'] = os.path.abspath(os.path.expanduser(cfg['pretrained_weights']))
    if cfg['num_classes'] < 1:
        raise ConfigError(f"{config_exp}: key 'num_classes' must be at least 1")
    cfg['step'] = STEP_OF_SETUP[setup]
    cfg['config_files'] = {'env': os.path.abspath(config_env),
                           'exp': os.path.abspath(config_exp)}
    cfg['paths'] = derive_paths(cfg)
    return EasyDict(cfg)
