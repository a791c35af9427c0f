"""Backbone features computed once and kept on disk, for heads trained on a frozen backbone.

A cache file `features-<name>.npy` (float32, N x D, or V x N x D for views) has a
`features-<name>.json` beside it with its key: a fingerprint of the images, of the backbone
(name and every weight) and of the preprocessing. A file whose key differs in any part is not
used; the part that changed is named. Batches over cached features come from the same batch
sampler and batch builders as the on-device image path (data/device_loader.py), with "pick a
view of each row" in place of an image augmentation.
"""
import functools
import hashlib
import json
import os
import time

import numpy as np
import torch

from data import build_dataset
from data.augment import build_augmentation, build_val_transform
from data.device_loader import DeviceLoader, NeighborPairs, OneView, TwoViews
from data.fingerprint import dataset_fingerprint, fingerprint_digest
from data.loaders import batch_sampler, make_loader
from data.wrappers import NeighborsDataset
from utils.checkpoint import atomic_save_array, atomic_write_text
from utils.config import ConfigError
from utils.errors import UserError
from utils.lock import is_held, lock_output_folder, release_output_lock
from utils.distributed import barrier, is_main_process
from utils.inference import compute_features
from utils.runtime import log
from utils.training import plain, seed_everything

KEY_PARTS = ('images', 'backbone', 'preprocessing')


class NonFiniteFeatures(UserError, ValueError):
    pass


def backbone_fingerprint(name, backbone):
    """The backbone's name and a hash of every tensor of its state dict."""
    digest = hashlib.sha256(name.encode())
    for key, value in sorted(backbone.state_dict().items()):
        digest.update(key.encode())
        digest.update(memoryview(value.detach().cpu().contiguous().view(-1).view(torch.uint8)
                                 .numpy()))
    return digest.hexdigest()


def settings_fingerprint(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def cache_key(dataset, backbone_key, preprocessing):
    return {'images': fingerprint_digest(dataset_fingerprint(dataset)), 'backbone': backbone_key,
            'preprocessing': settings_fingerprint(preprocessing)}


def _meta_path(path):
    return os.path.splitext(path)[0] + '.json'


def _saved_key(path):
    """The key `path` was saved with; None: no such file; ValueError: a damaged key file."""
    if not (os.path.isfile(path) and os.path.isfile(_meta_path(path))):
        return None
    with open(_meta_path(path), encoding='utf-8') as f:
        saved = json.load(f)
    if not isinstance(saved, dict) or not isinstance(saved.get('key', {}), dict):
        raise ValueError('not a key file of ours')
    return saved.get('key', {})


def changed_parts(path, key):
    """The parts of `key` that differ from the key `path` was saved with; None: no such file."""
    try:
        saved = _saved_key(path)
    except (OSError, ValueError):
        return list(KEY_PARTS)
    return None if saved is None else [part for part in KEY_PARTS if saved.get(part) != key[part]]


def read_cached(path, key, rows=None):
    """(array, None) when `path` holds features with this key (and `rows` rows), else
    (None, why not): a damaged file of ours is not used (and is replaced when recomputed)."""
    try:
        saved = _saved_key(path)
    except (OSError, ValueError) as error:
        return None, f"its key file {_meta_path(path)} is damaged ({type(error).__name__})"
    if saved is None:
        return None, 'not computed yet'
    changed = [part for part in KEY_PARTS if saved.get(part) != key[part]]
    if changed:
        return None, f"the {' and the '.join(changed)} changed since it was computed"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        return None, f"{path} is damaged ({type(error).__name__}: {str(error)[:200]})"
    if array.dtype != np.float32 or array.ndim not in (2, 3) \
            or (rows is not None and array.shape[-2] != rows):
        return None, f"{path} holds {array.dtype} {array.shape}, not features of these images"
    if not np.isfinite(array).all():
        return None, f"{path} holds values that are not finite (NaN or infinite)"
    return array, None


def write_cached(path, array, key, **info):
    """Save atomically (temporary name, then rename), the key file last: a file with a key
    beside it is always whole. The pretext folder is locked meanwhile (by step 1 already, or
    here), which removes the temporaries of a writer killed or stopped by a full disk."""
    folder = os.path.dirname(path)
    held = is_held(folder)
    lock_output_folder(folder)
    try:
        if os.path.lexists(_meta_path(path)):
            os.remove(_meta_path(path))
        atomic_save_array(path, array)
        atomic_write_text(_meta_path(path), json.dumps(
            {'key': key, 'shape': list(array.shape), **info}, indent=1))
    finally:
        if not held:
            release_output_lock(folder)


def check_finite(features, source):
    """Features that are not finite would crash the next step: say where they came from."""
    bad = int((~torch.isfinite(features)).any(dim=-1).sum())
    if bad:
        raise NonFiniteFeatures(f"the backbone gave features that are not finite (NaN or "
                                f"infinite) for {bad} of {features.shape[-2]} images: check "
                                f"its weights ({source})")
    return features


def embed_backbone_features(backbone, dataset, transform, cfg, device, desc='embed'):
    """Backbone features (float32 N x D on the device) and targets of a whole dataset, in
    order, with `transform` applied per image in the loader's workers."""
    dataset.transform = transform
    loader = make_loader(dataset, cfg, device, shuffle=False, drop_last=False, distributed=False)
    backbone.eval()
    return compute_features(backbone, loader, device, desc)


class CachedFeatures:
    """Cached features on the device as the batch builders' `data`: indexing gives every view
    of those rows (V x B x D); `targets` on the CPU as the loaders give them."""

    def __init__(self, views, targets, device):
        views = torch.as_tensor(views)
        self.views = (views if views.dim() == 3 else views[None]).to(device)
        self.targets = torch.as_tensor(targets, dtype=torch.int64)

    def __len__(self):
        return self.views.shape[1]

    def __getitem__(self, index):
        return self.views[:, index.to(self.views.device)]


def first_view(views):
    """The val-transform feature (view 0) of each row."""
    return views[0]


def _draw_view(views, low, dropout):
    count, rows = views.shape[:2]
    pick = torch.randint(min(low, count - 1), count, (rows,), device=views.device)
    drawn = views[pick, torch.arange(rows, device=views.device)]
    return torch.nn.functional.dropout(drawn, dropout) if dropout else drawn


def any_view(views, dropout=0.0):
    """Each row's feature from one of its views drawn at random: the val-transform one or an
    augmented one (SCAN pairs), with `dropout` (feature_dropout) applied."""
    return _draw_view(views, 0, dropout)


def augmented_view(views, dropout=0.0):
    """Each row's feature from one of its augmented views (1..V-1) drawn at random (the strong
    input of self-labeling), with `dropout` applied; without augmented views (cached_views 0)
    the val-transform one."""
    return _draw_view(views, 1, dropout)


class OneThreadLoader:
    """A loader over cached features during whose iteration (the training steps run in between)
    torch uses one CPU thread: the heads' small products gain nothing from more, and threads
    waiting on each other cost milliseconds per op on a busy CPU."""

    def __init__(self, loader):
        self.loader = loader
        self.batch_sampler = loader.batch_sampler  # data.loaders.set_loader_epoch reads it

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from self.loader
        finally:
            torch.set_num_threads(threads)


def _check_batch(cfg, n):
    if n < cfg.batch_size:  # the last partial batch is dropped: nothing would train
        raise ConfigError(f"{cfg.config_files['exp']}: {n} training images is fewer than one "
                          f"batch (batch_size={cfg.batch_size}); lower batch_size")


def cached_scan_loader(cfg, features, neighbors):
    """SCAN batches from cached features: anchor and one of its mined neighbours, each as one
    of its views drawn at random (only the val-transform feature without cached views)."""
    _check_batch(cfg, len(features))
    candidates = NeighborsDataset(features, neighbors, cfg.num_neighbors).indices
    pick = functools.partial(any_view, dropout=cfg.feature_dropout)
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=True, drop_last=True),
                                        NeighborPairs(features, candidates, pick)))


def cached_selflabel_loader(cfg, features):
    """Self-label batches: weak = the val-transform feature, strong = a random augmented view
    (the val-transform one without cached views), with feature_dropout."""
    _check_batch(cfg, len(features))
    strong = functools.partial(augmented_view, dropout=cfg.feature_dropout)
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=True, drop_last=True),
                                        TwoViews(features, first_view, strong)))


def cached_eval_loader(cfg, features):
    """Every row's val-transform feature, in order, on this rank alone."""
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=False, drop_last=False,
                                                      distributed=False),
                                        OneView(features, first_view)))


# ----------------------------------------------------------------------------- filling the cache

def val_preprocessing(cfg):
    """What the features of the validation transform depend on, besides images and weights."""
    t = cfg.transformation_kwargs
    return {'crop_size': t.crop_size, 'resize': t.resize, 'interpolation': t.interpolation,
            'normalize': plain(t.normalize)}


def views_preprocessing(cfg):
    return {'strategy': cfg.augmentation_strategy, 'augmentation': plain(cfg.augmentation_kwargs),
            'views': cfg.cached_views, 'seed': cfg.seed}


def split_features(cfg, backbone, backbone_key, split, device, dataset=None):
    """(features N x D tensor, targets, what happened) of one split under the validation
    transform: from the cache when its key fits, else embedded now and cached. A folder's val
    images are its train images: val then reuses the train file (the keys are equal)."""
    dataset = dataset if dataset is not None else build_dataset(cfg, split)
    key = cache_key(dataset, backbone_key, val_preprocessing(cfg))
    own = cfg.paths[f'features_{split}']
    reasons = []
    for path in (own, cfg.paths.features_train) if split == 'val' else (own,):
        array, why = read_cached(path, key, len(dataset))
        if array is not None:
            log(f"{split} features: cached in {path}")
            return torch.from_numpy(array), torch.as_tensor(dataset.targets), 'cached'
        reasons.append(why)
    started = time.time()
    features, _ = embed_backbone_features(backbone, dataset, build_val_transform(cfg), cfg,
                                          device, desc=f"embed {split}")
    check_finite(features, cfg.get('pretrained_weights') or cfg.backbone)
    write_cached(own, features.cpu().numpy(), key, backbone=cfg.backbone, split=split)
    log(f"{split} features: {len(dataset)} images embedded in {time.time() - started:.1f}s "
        f"({reasons[0]}); saved {own}")
    return features.cpu(), torch.as_tensor(dataset.targets), f"embedded ({reasons[0]})"


def augmented_views(cfg, backbone, backbone_key, dataset, device):
    """`cached_views` passes of the step's augmentation through the backbone (V x N x D), each
    seeded, computed once and cached; None for 0 views."""
    if cfg.cached_views == 0:
        return None
    path = cfg.paths.features_train_views
    key = cache_key(dataset, backbone_key, views_preprocessing(cfg))
    array, why = read_cached(path, key, len(dataset))
    if array is not None:
        log(f"{cfg.cached_views} augmented views per image: cached in {path}")
        return torch.from_numpy(array)
    started, views = time.time(), []
    for view in range(cfg.cached_views):
        seed_everything(cfg.seed * 1_000 + view)
        features, _ = embed_backbone_features(backbone, dataset, build_augmentation(cfg), cfg,
                                              device, desc=f"view {view + 1}/{cfg.cached_views}")
        views.append(features.cpu())
    array = check_finite(torch.stack(views), cfg.get('pretrained_weights') or cfg.backbone)
    write_cached(path, array.numpy(), key, backbone=cfg.backbone, views=cfg.cached_views)
    log(f"{cfg.cached_views} augmented views of {len(dataset)} images embedded in "
        f"{time.time() - started:.1f}s ({why}); saved {path}")
    return array


def train_features(cfg, backbone, backbone_key, device):
    """Train split: its val-transform features (step 1's, unless only the preprocessing or the
    file changed) and `cached_views` augmented views, as a V x N x D array."""
    dataset = build_dataset(cfg, 'train')
    base, targets, _ = split_features(cfg, backbone, backbone_key, 'train', device, dataset)
    views = augmented_views(cfg, backbone, backbone_key, dataset, device)
    stacked = base[None] if views is None else torch.cat([base[None], views])
    return stacked, targets


def cached_features(cfg, backbone, device):
    """(train, val) CachedFeatures of steps 2 and 3 on a frozen backbone. Rank 0 fills the
    cache; the other ranks then read it."""
    backbone_key = backbone_fingerprint(cfg.backbone, backbone)

    def features():
        train, train_targets = train_features(cfg, backbone, backbone_key, device)
        val, val_targets, _ = split_features(cfg, backbone, backbone_key, 'val', device)
        return CachedFeatures(train, train_targets, device), CachedFeatures(val, val_targets,
                                                                           device)

    if is_main_process():
        found = features()
    barrier()
    return found if is_main_process() else features()


def cached_val_features(cfg, backbone, dataset, device):
    """eval: the cached val-transform features of `dataset` when they are `backbone`'s on the
    current images (CachedFeatures); None otherwise (then eval embeds)."""
    paths = [p for p in (cfg.paths.features_val, cfg.paths.features_train) if os.path.isfile(p)]
    if not paths:
        return None
    key = cache_key(dataset, backbone_fingerprint(cfg.backbone, backbone), val_preprocessing(cfg))
    for path in paths:
        array, _ = read_cached(path, key, len(dataset))
        if array is not None:
            log(f"eval on the cached val features in {path}")
            return CachedFeatures(array, dataset.targets, device)
    return None
