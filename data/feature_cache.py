"""Backbone features computed once and kept on disk, for heads trained on a frozen backbone.

A cache file `features-<name>.npy` (float32, N x D, or V x N x D for views) has a
`features-<name>.json` beside it with its key: a fingerprint of the images, of the backbone
(name and every weight) and of the preprocessing. A file whose key differs in any part is not
used; the part that changed is named. Batches over cached features come from the same batch
sampler and batch builders as the on-device image path (data/device_loader.py), with "pick a
view of each row" in place of an image augmentation.
"""
import hashlib
import json
import os

import numpy as np
import torch

from data.device_loader import DeviceLoader, NeighborPairs, OneView, TwoViews
from data.loaders import batch_sampler, make_loader
from data.wrappers import NeighborsDataset
from utils.config import ConfigError
from utils.inference import compute_features

KEY_PARTS = ('images', 'backbone', 'preprocessing')


def images_fingerprint(dataset):
    """Our own cache key of a dataset's images, in order: each file's path, size and mtime for
    datasets read from files, else a hash of the pixel array. (data/fingerprint.py's
    dataset_fingerprint, written in parallel, will replace this one at merge.)"""
    digest = hashlib.sha256(f"{type(dataset).__name__}:{len(dataset)}".encode())
    if dataset.paths is not None:
        for path in dataset.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    elif dataset.data is not None:
        digest.update(memoryview(np.ascontiguousarray(dataset.data)).cast('B'))
    else:
        raise ValueError(f"{type(dataset).__name__} has neither files nor a pixel array to key "
                         f"a feature cache on")
    return digest.hexdigest()


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
    return {'images': images_fingerprint(dataset), 'backbone': backbone_key,
            'preprocessing': settings_fingerprint(preprocessing)}


def _meta_path(path):
    return os.path.splitext(path)[0] + '.json'


def changed_parts(path, key):
    """The parts of `key` that differ from the key `path` was saved with; None: no such file."""
    if not (os.path.isfile(path) and os.path.isfile(_meta_path(path))):
        return None
    with open(_meta_path(path)) as f:
        saved = json.load(f).get('key', {})
    return [part for part in KEY_PARTS if saved.get(part) != key[part]]


def read_cached(path, key):
    """(array, None) when `path` holds features with this key, else (None, why not)."""
    changed = changed_parts(path, key)
    if changed is None:
        return None, 'not computed yet'
    if changed:
        return None, f"the {' and the '.join(changed)} changed since it was computed"
    return np.load(path), None


def write_cached(path, array, key, **info):
    """Save atomically (temporary name, then rename), the key file last: a file with a key
    beside it is always whole."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(_meta_path(path)):
        os.remove(_meta_path(path))
    tmp = path + '.tmp.npy'
    np.save(tmp, array)
    os.replace(tmp, path)
    with open(_meta_path(path) + '.tmp', 'w') as f:
        json.dump({'key': key, 'shape': list(array.shape), **info}, f, indent=1)
    os.replace(_meta_path(path) + '.tmp', _meta_path(path))


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


def _draw_view(views, low):
    count, rows = views.shape[:2]
    pick = torch.randint(min(low, count - 1), count, (rows,), device=views.device)
    return views[pick, torch.arange(rows, device=views.device)]


def any_view(views):
    """Each row's feature from one of its views drawn at random: the val-transform one or an
    augmented one (SCAN pairs)."""
    return _draw_view(views, 0)


def augmented_view(views):
    """Each row's feature from one of its augmented views (1..V-1) drawn at random (the strong
    input of self-labeling)."""
    return _draw_view(views, 1)


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
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=True, drop_last=True),
                                        NeighborPairs(features, candidates, any_view)))


def cached_selflabel_loader(cfg, features):
    """Self-label batches: weak = the val-transform feature, strong = a random augmented view."""
    _check_batch(cfg, len(features))
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=True, drop_last=True),
                                        TwoViews(features, first_view, augmented_view)))


def cached_eval_loader(cfg, features):
    """Every row's val-transform feature, in order, on this rank alone."""
    return OneThreadLoader(DeviceLoader(batch_sampler(features, cfg, shuffle=False, drop_last=False,
                                                      distributed=False),
                                        OneView(features, first_view)))
