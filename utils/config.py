"""Load, validate and complete the configuration of a run.

A run is described by two YAML files: the environment (where outputs and datasets live, which
device) and the experiment (everything about the method). Both are read with `yaml.safe_load`,
checked against the schema below (unknown keys, wrong types and missing required keys are errors
that name the key and the file), overridden by `--opts key=value`, and completed with every output
path, so that the three steps find each other's files without any path editing.
"""
import difflib
import hashlib
import math
import os
import re

import yaml
from easydict import EasyDict

from utils.errors import UserError
from utils.text import excerpt
from utils.user_files import read_user_file


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
# `backbone: timm/<model name>`: a pretrained timm model, used frozen as a feature extractor.
TIMM_PREFIX = 'timm/'
NUMBER = (int, float)
OPTIONAL_LIST = (list, type(None))
# ImageNet statistics: the published value for STL-10/ImageNet, and a sensible one for photos;
# null: the pretrained timm backbone's own statistics.
NORMALIZE = {'mean': Key(OPTIONAL_LIST, [0.485, 0.456, 0.406]),
             'std': Key(OPTIONAL_LIST, [0.229, 0.224, 0.225])}
INTERPOLATIONS = (None, 'bilinear', 'bicubic', 'nearest')

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
    'num_classes': Key((int, str)),  # or 'auto': step 2 chooses it (utils/k_selection.py)
    'num_classes_range': Key(list, [2, 50]),  # [min, max] K tried with num_classes=auto
    'backbone': Key(str),  # one of BACKBONES or timm/<model name>, checked in load_config
    'model_kwargs': {'head': Key(str, 'mlp', choices=('mlp', 'linear')),
                     'features_dim': Key(int, 128)},
    'seed': Key(int, 0),
    'epochs': Key(int),
    'batch_size': Key(int),
    'num_workers': Key(int, 2),
    'optimizer': Key(str, choices=('sgd', 'adam')),
    'optimizer_kwargs': {'lr': Key(NUMBER), 'weight_decay': Key(NUMBER, 0.0),
                         'momentum': Key(NUMBER, 0.9), 'nesterov': Key(bool, False)},
    'scheduler': Key(str, 'constant', choices=('constant', 'cosine', 'step')),
    # step: lr * lr_decay_rate ** (number of lr_decay_epochs the 0-based epoch is above)
    'scheduler_kwargs': {'lr_decay_rate': Key(NUMBER, 0.1), 'lr_decay_epochs': Key(list, [])},
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
                              # null: the timm backbone's own, else bilinear
                              'interpolation': Key((str, type(None)), None,
                                                   choices=INTERPOLATIONS),
                              'normalize': NORMALIZE},
    'fast_augmentation': Key(bool, False),
    'sync_bn': Key(bool, True),
    # fp32 as the original; bf16: autocast in training, mining and evaluation, and TF32
    # matrix products on CUDA; auto: bf16 where the device computes it natively, else fp32
    'precision': Key(str, 'fp32', choices=('fp32', 'bf16', 'auto')),
    # eval.py --annotate: the map, near-duplicates and outliers (annotation/, docs/map.md)
    'overview_kwargs': {'map_method': Key(str, 'auto', choices=('auto', 'umap', 'tsne', 'pca')),
                        'map_neighbors': Key(int, 15), 'map_min_dist': Key(NUMBER, 0.1),
                        'duplicate_distance': Key(int, 20), 'outlier_neighbors': Key(int, 10)},
}

SIMCLR_SCHEMA = {
    'num_neighbors': Key(int, 20),
    'num_neighbors_val': Key(int, 5),
    'knn_every': Key(int, 25),
    # the kNN monitor's neighbours (the original's memory bank: 100); a small folder wants fewer
    'knn_k': Key(int, 100),
    # a MoCo v2 file (resnet50), or for timm/ backbones: 'hub' or a weights file
    'pretrained_weights': Key((str, type(None)), None),
    'mining_index': Key(str, 'exact', choices=('exact', 'ivf')),
    'mining_ivf_kwargs': {'nlist': Key((int, type(None)), None), 'nprobe': Key(int, 16)},
}

# Heads on a frozen backbone trained from its cached features (data/feature_cache.py): the
# val-transform features, plus `cached_views` augmented views per image computed once;
# `feature_dropout` zeroes that share of a feature's values (scaled) in each augmented draw: a
# cheap stand-in for views, which then need not be embedded (0: none).
FEATURE_CACHE_KEYS = {'feature_cache': Key(bool, False), 'cached_views': Key(int, 0),
                      'feature_dropout': Key(NUMBER, 0.0)}

STEP_SCHEMAS = {
    'simclr': SIMCLR_SCHEMA,
    # Step 1 from imported MoCo v2 weights (ImageNet): nothing is trained, neighbours are mined
    # on the backbone's features. `temperature` is MoCo's own, kept for the original's files.
    'moco': {**SIMCLR_SCHEMA, 'temperature': Key(NUMBER, 0.07)},
    'scan': {
        'num_neighbors': Key(int, 20),
        'num_heads': Key(int, 1),
        'update_cluster_head_only': Key(bool, False),
        **FEATURE_CACHE_KEYS,
        # opt-in: anchors and neighbours in one forward pass (BatchNorm statistics over both);
        # the original makes two
        'concat_forward': Key(bool, False),
    },
    'selflabel': {
        'update_cluster_head_only': Key(bool, False),
        **FEATURE_CACHE_KEYS,
        'confidence_threshold': Key(NUMBER, 0.99),
        'use_ema': Key(bool, False),
        'ema_alpha': Key(NUMBER, 0.999),
        # original: the shadow is loaded into the model after every step (utils/ema.py);
        # averaged (opt-in): torch's AveragedModel beside a model trained at the full lr
        'ema_method': Key(str, 'original', choices=('original', 'averaged')),
        'num_heads': Key(int, 1, choices=(1,)),  # the best SCAN head, as the original's files say
        # selflabel.py --corrections (refine.py): epochs, learning rate (null: optimizer_kwargs.lr)
        # and the weight of the user's labels beside the confident pseudo-labels
        'refine_epochs': Key(int, 10),
        'refine_lr': Key((int, float, type(None)), None),
        'correction_weight': Key(NUMBER, 1.0),
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


class Allowed:
    """The values a key accepts beyond its type, as text for the error and as a test."""

    def __init__(self, text, test):
        self.text, self.test = text, test


def at_least(low):
    return Allowed(f">= {low}", lambda v: v >= low)


def between(low, high, low_open=False, high_open=False):
    text = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return Allowed(text, lambda v: (low < v if low_open else low <= v)
                   and (v < high if high_open else v <= high))


POSITIVE = Allowed("> 0", lambda v: v > 0)
COUNT, NON_NEGATIVE, PROBABILITY = at_least(1), at_least(0), between(0, 1)
IMAGE_SIZE = between(1, 4096)  # pixels a side: beyond, one image fills a GPU (and any memory)
SEED = between(0, 2 ** 32 - 1)  # what numpy and torch both take, epoch offsets included
CHANNEL_MEANS = Allowed("a list of 1 or 3 numbers",
                        lambda v: len(v) in (1, 3) and all(_is_number(x) for x in v))
CHANNEL_STDS = Allowed("a list of 1 or 3 numbers > 0",
                       lambda v: CHANNEL_MEANS.test(v) and all(x > 0 for x in v))
SCALE_RANGE = Allowed("a list [low, high] with 0 < low <= high <= 1",
                      lambda v: len(v) == 2 and all(_is_number(x) for x in v)
                      and 0 < v[0] <= v[1] <= 1)
DEVICE = Allowed("auto, cpu, cuda or cuda:N",
                 lambda v: re.fullmatch(r'auto|cpu|cuda(:[0-9]+)?', v) is not None)
EPOCH_LIST = Allowed("a list of whole numbers >= 0",
                     lambda v: all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                   for x in v))
NORMALIZE_RANGES = {'normalize.mean': CHANNEL_MEANS, 'normalize.std': CHANNEL_STDS}

# What each numeric or list key accepts (dotted keys; null passes where the schema allows it).
# epochs depends on another key: see check_epochs.
RANGES = {
    'num_classes': between(1, 100_000), 'model_kwargs.features_dim': between(1, 65_536),
    'seed': SEED,
    'batch_size': COUNT, 'num_workers': NON_NEGATIVE,
    'optimizer_kwargs.lr': POSITIVE, 'optimizer_kwargs.weight_decay': NON_NEGATIVE,
    'optimizer_kwargs.momentum': between(0, 1, high_open=True),
    'scheduler_kwargs.lr_decay_rate': between(0, 1, low_open=True),
    'scheduler_kwargs.lr_decay_epochs': EPOCH_LIST,
    'criterion_kwargs.temperature': POSITIVE, 'criterion_kwargs.entropy_weight': NON_NEGATIVE,
    'temperature': POSITIVE,  # MoCo's, in the original's MoCo files (unused: nothing is trained)
    'augmentation_kwargs.crop_size': IMAGE_SIZE, 'augmentation_kwargs.resize': IMAGE_SIZE,
    'augmentation_kwargs.random_resized_crop.size': IMAGE_SIZE,
    'augmentation_kwargs.random_resized_crop.scale': SCALE_RANGE,
    'augmentation_kwargs.color_jitter_random_apply.p': PROBABILITY,
    'augmentation_kwargs.color_jitter.brightness': NON_NEGATIVE,
    'augmentation_kwargs.color_jitter.contrast': NON_NEGATIVE,
    'augmentation_kwargs.color_jitter.saturation': NON_NEGATIVE,
    'augmentation_kwargs.color_jitter.hue': between(0, 0.5),
    'augmentation_kwargs.random_grayscale.p': PROBABILITY,
    'augmentation_kwargs.num_strong_augs': NON_NEGATIVE,
    'augmentation_kwargs.cutout_kwargs.n_holes': NON_NEGATIVE,
    'augmentation_kwargs.cutout_kwargs.length': IMAGE_SIZE,
    **{f'augmentation_kwargs.{k}': v for k, v in NORMALIZE_RANGES.items()},
    'transformation_kwargs.crop_size': IMAGE_SIZE, 'transformation_kwargs.resize': IMAGE_SIZE,
    **{f'transformation_kwargs.{k}': v for k, v in NORMALIZE_RANGES.items()},
    'num_neighbors': COUNT, 'num_neighbors_val': COUNT, 'knn_every': COUNT, 'knn_k': COUNT,
    'mining_ivf_kwargs.nlist': COUNT, 'mining_ivf_kwargs.nprobe': COUNT,
    'num_heads': COUNT, 'cached_views': NON_NEGATIVE,
    'feature_dropout': between(0, 1, high_open=True),
    # 0 takes every prediction as a pseudo-label (the benchmark does); 1 would take none
    'confidence_threshold': between(0, 1, high_open=True),
    'ema_alpha': between(0, 1, low_open=True, high_open=True),
    'refine_epochs': COUNT, 'refine_lr': POSITIVE, 'correction_weight': POSITIVE,
    'overview_kwargs.map_neighbors': between(2, 200),
    'overview_kwargs.map_min_dist': between(0, 1),
    # bits of the 192-bit perceptual code (annotation/duplicates.py); 0: identical codes only
    'overview_kwargs.duplicate_distance': between(0, 96),
    'overview_kwargs.outlier_neighbors': between(1, 100),
}
ENV_RANGES = {'device': DEVICE}
UNBOUNDED = set()  # numeric keys any value of which works


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def dotted_items(values, prefix=''):
    """{dotted key: value} of a nested mapping (`a.b` for values['a']['b'])."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(dotted_items(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _lookup(values, dotted):
    for part in dotted.split('.'):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def check_k_range(k_range, num_images, where):
    """num_classes=auto: the largest K tried must not exceed the number of images."""
    if k_range[1] > num_images:
        raise ConfigError(f"{where}: key 'num_classes_range' is {list(k_range)}, but there are "
                          f"only {num_images} images: lower its maximum to {num_images} or less")


def check_ranges(values, ranges, where, overridden=()):
    """Every key of `ranges` present in `values` holds an allowed value; the error names the
    key, where it was set and what is allowed."""
    for key, allowed in ranges.items():
        value = _lookup(values, key)
        if value is not None and not allowed.test(value):
            source = f"{where} (set by --opts)" if key in overridden else where
            raise ConfigError(f"{source}: key '{key}' must be {allowed.text}, got "
                              f"{excerpt(value)}")


def check_num_classes(cfg, where, overridden=()):
    """num_classes: a count or 'auto'; num_classes_range: [min, max] with 2 <= min <= max (the
    number of images is checked where it is known: data/settings.py, scan.py)."""
    def source(key):
        return f"{where} (set by --opts)" if key in overridden else where
    if isinstance(cfg['num_classes'], str) and cfg['num_classes'] != 'auto':
        raise ConfigError(f"{source('num_classes')}: key 'num_classes' must be a count >= 1 or "
                          f"'auto' (chosen from the data in scan.py), got {excerpt(cfg['num_classes'])}")
    k_range = cfg['num_classes_range']
    if not (len(k_range) == 2 and all(isinstance(k, int) and not isinstance(k, bool)
                                      for k in k_range)):
        raise ConfigError(f"{source('num_classes_range')}: key 'num_classes_range' must be a "
                          f"list [min, max] of two whole numbers, got {excerpt(k_range)}")
    if k_range[0] < 2 or k_range[0] > k_range[1]:
        raise ConfigError(f"{source('num_classes_range')}: key 'num_classes_range' must be "
                          f"[min, max] with 2 <= min <= max, got {k_range!r}")


def check_epochs(cfg, where, overridden=()):
    """epochs >= 1, or 0 where step 1 trains nothing (pretrained weights are imported)."""
    if cfg['epochs'] >= 1 or (cfg['epochs'] == 0 and cfg.get('pretrained_weights')):
        return
    source = f"{where} (set by --opts)" if 'epochs' in overridden else where
    raise ConfigError(f"{source}: key 'epochs' must be >= 1 (0 only with pretrained_weights, "
                      f"where step 1 trains nothing), got {cfg['epochs']}")


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
                          f"{type(value).__name__} ({excerpt(value)})")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: key '{key}' must be one of {list(spec.choices)}, "
                          f"got {excerpt(value)}")
    if not _finite(value):
        raise ConfigError(f"{where}: key '{key}' must be a finite number, got {excerpt(value)}")
    return value


def _finite(value):
    """No infinite or NaN number, alone or in a list (no key accepts one)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):  # lists of numbers are flat: nothing nested is walked
        return all(not isinstance(v, float) or math.isfinite(v) for v in value)
    return True


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


class _SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose integers of thousands of digits (which int() refuses, with a
    ValueError that is no YAMLError) are an error with their line and column."""


def _bounded_int(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(node.value):,} digits is too long",
            node.start_mark) from None


_SafeLoader.add_constructor('tag:yaml.org,2002:int', _bounded_int)


def parse_yaml(data, path, error, kind='a config is a YAML text file'):
    """yaml.safe_load of a user's file's bytes; anything PyYAML or Python refuses in it (deep
    nesting, integers of thousands of digits) is `error` naming the file."""
    try:
        return yaml.load(data.decode('utf-8-sig'), Loader=_SafeLoader)  # noqa: S506 (safe)
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a text file (byte {e.object[e.start]:#04x} at offset "
                    f"{e.start} is not UTF-8 text): {kind}") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {' '.join(str(e).split())[:300]}") from None
    except RecursionError:
        raise error(f"{path}: its YAML is nested too deep to read") from None
    except (ValueError, OverflowError) as e:  # e.g. int() of a number of over 4,300 digits
        raise error(f"{path}: holds a value that cannot be read ({excerpt(str(e))})") from None


def read_yaml(path):
    content = parse_yaml(read_user_file(path, 'config file', ConfigError), path, ConfigError)
    if content is not None and not isinstance(content, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    return content or {}


# Keys that name a file or folder: their --opts value is the path as typed, not read as YAML
# (which would fold a newline, read 'a: b' as a mapping and refuse bytes that are not UTF-8).
PATH_KEYS = {'folder', 'pretrained_weights', 'root_dir', 'data_dir', 'imagenet_dir'}


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
        if dotted in PATH_KEYS:  # a path is taken as written: any bytes, ':', '#', newlines
            node[parts[-1]] = None if text in ('', 'null', '~') else text
            continue
        try:
            node[parts[-1]] = yaml.safe_load(text) if text != '' else None
        except (RecursionError, ValueError, OverflowError) as e:
            raise ConfigError(f"--opts: the value of '{dotted}' cannot be read "
                              f"({excerpt(str(e))})") from None
        except yaml.YAMLError as e:
            problem = getattr(e, 'problem', None) or str(e).splitlines()[0]
            raise ConfigError(f"--opts: the value of '{dotted}' is not valid YAML ({problem}): "
                              f"{text!r}; quote text that holds :, #, [ or {{") from e
    return raw


def output_name(cfg):
    """Name of the output folder of a run: the dataset, or for an image folder its own name and
    a hash of its real path, so that two folders of one name never share outputs; then what
    keeps experiments apart: a pretrained timm backbone's name and a seed other than 0 (the
    published configs, seed 0 and no timm backbone, keep the original's `<dataset>/`)."""
    if cfg['train_db_name'] != 'folder':
        name = cfg['train_db_name']
    else:
        real = os.path.realpath(cfg['folder'])
        slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', os.path.basename(real))
        digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:8]
        name = f"folder-{slug}-{digest}"
    backbone = cfg.get('backbone') or ''
    if is_timm_backbone(backbone):
        name += '-' + re.sub(r'[^A-Za-z0-9_.-]+', '_', backbone.removeprefix(TIMM_PREFIX))
    if cfg.get('seed', 0) != 0:
        name += f"-seed{cfg['seed']}"
    return name


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
    refined = os.path.join(base, 'refined')  # selflabel.py --corrections (refine.py)
    paths.update(refined_dir=refined, refined_log=os.path.join(refined, 'log.jsonl'),
                 refined_checkpoint=os.path.join(refined, 'checkpoint.pth.tar'),
                 refined_model=os.path.join(refined, 'model.pth.tar'))
    paths['topk_neighbors_train_path'] = os.path.join(base, 'pretext', 'topk-train-neighbors.npy')
    paths['topk_neighbors_val_path'] = os.path.join(base, 'pretext', 'topk-val-neighbors.npy')
    # backbone features cached by the frozen-backbone path (each with a .json key beside it)
    for name in ('train', 'val', 'train-views'):
        paths[f'features_{name.replace("-", "_")}'] = os.path.join(base, 'pretext',
                                                                   f'features-{name}.npy')
    return paths


def is_timm_backbone(name):
    return name.startswith(TIMM_PREFIX)


def timm_model_name(backbone):
    """'timm/vit_small_patch14_dinov2.lvd142m' -> 'vit_small_patch14_dinov2.lvd142m', known to
    timm (imported here only: loading a config should not pay for importing timm)."""
    import timm
    name = backbone.removeprefix(TIMM_PREFIX)
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(pretrained=True), n=3)
        hint = f" (did you mean {', '.join(TIMM_PREFIX + c for c in close)}?)" if close else ''
        raise ConfigError(f"backbone {backbone}: timm has no model '{name}'{hint}; "
                          f"`timm.list_models(pretrained=True)` lists them")
    return name


def check_backbone_keys(cfg, where):
    """The backbone name, and the keys that only make sense with a pretrained or frozen one."""
    backbone = cfg['backbone']
    if backbone not in BACKBONES and not (is_timm_backbone(backbone) and
                                          len(backbone) > len(TIMM_PREFIX)):
        raise ConfigError(f"{where}: key 'backbone' must be one of {list(BACKBONES)} or "
                          f"'timm/<model name>' (e.g. timm/vit_small_patch14_dinov2.lvd142m), "
                          f"got {backbone!r}")
    weights = cfg.get('pretrained_weights')
    if is_timm_backbone(backbone) and cfg['setup'] == 'simclr' and not weights:
        raise ConfigError(f"{where}: backbone {backbone} is used pretrained: set "
                          f"pretrained_weights to 'hub' (download) or to a weights file")
    if weights == 'hub' and not is_timm_backbone(backbone):
        raise ConfigError(f"{where}: pretrained_weights 'hub' needs a timm/<model name> "
                          f"backbone, not {backbone!r}")
    if not is_timm_backbone(backbone):
        for key in ('transformation_kwargs', 'augmentation_kwargs'):
            if None in cfg[key]['normalize'].values():
                raise ConfigError(f"{where}: key '{key}.normalize' may be null (the backbone's "
                                  f"own statistics) only with a timm/ backbone")
    if cfg.get('feature_cache'):
        if not cfg['update_cluster_head_only']:
            raise ConfigError(f"{where}: feature_cache needs update_cluster_head_only: true "
                              f"(the features of a backbone that trains change every step)")
    if cfg.get('cached_views', 0) < 0:
        raise ConfigError(f"{where}: key 'cached_views' must be at least 0")


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
                          f"got {excerpt(setup)}")
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
    overridden = {o.split('=', 1)[0] for o in opts or []}
    check_ranges(env, ENV_RANGES, config_env, overridden)
    # with nothing to train (epochs 0: imported weights), the optimizer's settings are unused
    ranges = {k: v for k, v in RANGES.items() if exp['epochs'] or not k.startswith('optimizer_')}
    check_num_classes(exp, config_exp, overridden)
    if exp['num_classes'] == 'auto':
        ranges.pop('num_classes')
    check_ranges(exp, ranges, config_exp, overridden)

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
    if cfg.get('pretrained_weights') and cfg['pretrained_weights'] != 'hub':
        cfg['pretrained_weights'] = os.path.abspath(os.path.expanduser(cfg['pretrained_weights']))
    check_backbone_keys(cfg, config_exp)
    if not evaluation:  # an evaluated file trains nothing
        check_epochs(exp, config_exp, overridden)
    cfg['step'] = STEP_OF_SETUP[setup]
    cfg['config_files'] = {'env': os.path.abspath(config_env),
                           'exp': os.path.abspath(config_exp)}
    cfg['paths'] = derive_paths(cfg)
    return EasyDict(cfg)
