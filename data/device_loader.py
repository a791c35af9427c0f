"""The data path of each step, faithful or fast: `make_train_loader` and `make_eval_loader`.

Faithful (the default): a DataLoader over the dataset wrapped as the scripts always did, with the
PIL transforms of data/augment.py applied per image in CPU workers.

Fast (`fast_augmentation: true`, datasets whose images are one `data` array): the images are
uploaded once to the device as uint8, each batch is gathered there and augmented as a batch
(data/batched_augment.py), and the iterable yields the same dict batches as the DataLoader
path: images normalised float32 on the device, `target`, `index` (and `possible_neighbors`) as
CPU tensors as the DataLoader collates them. Batches come from torch's own samplers
through data.loaders.batch_sampler, as the DataLoader path, so shuffling, sharding, drop_last,
len() and `set_loader_epoch` behave exactly alike.
"""
import contextlib

import numpy as np
import torch

from data.augment import build_augmentation, build_val_transform
from data.batched_augment import build_batched_augmentation, build_batched_val_transform
from data.loaders import batch_sampler, make_loader
from data.wrappers import AugmentedDataset, NeighborsDataset
from utils.config import ConfigError
from utils.runtime import log

KINDS = ('pretext', 'scan', 'selflabel')


class DeviceImages:
    """A dataset's uint8 images (N x 3 x H x W) on the device, its targets on the CPU."""

    def __init__(self, dataset, device):
        if getattr(dataset, 'data', None) is None:
            raise ValueError(f"{type(dataset).__name__} has no `data` array (images of several "
                             f"sizes, read from files): the fast data path needs one")
        # a folder's working copies are read-only: copied once here rather than shared unwritable
        data = np.require(dataset.data, requirements='W')
        self.images = torch.from_numpy(data).to(device).permute(0, 3, 1, 2).contiguous()
        self.targets = torch.as_tensor(dataset.targets, dtype=torch.int64)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.images[index.to(self.images.device, non_blocking=True)]


class DeviceLoader:
    """Loader-like: for each list of indices from `batch_sampler`, `make_batch(indices)`."""

    def __init__(self, batch_sampler, make_batch):
        self.batch_sampler, self.make_batch = batch_sampler, make_batch

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        for indices in self.batch_sampler:
            with one_cpu_thread():
                batch = self.make_batch(torch.as_tensor(indices, dtype=torch.int64))
            yield batch  # the training step runs with all the threads


@contextlib.contextmanager
def one_cpu_thread():
    """A batch is many small ops (and, on CUDA, only parameter draws on the CPU): more CPU
    threads cost more than they give, and stall badly when the CPU is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TwoViews:
    """Pretext and self-label batches: `image` = first(x), `image_augmented` = second(x)."""

    def __init__(self, data, first, second):
        self.data, self.first, self.second = data, first, second

    def __call__(self, index):
        images = self.data[index]
        if self.first is self.second:  # one call: both views drawn independently per image
            image, augmented = self.first(torch.cat([images, images])).chunk(2)
        else:
            image, augmented = self.first(images), self.second(images)
        return {'image': image, 'image_augmented': augmented,
                'target': self.data.targets[index], 'index': index}


class NeighborPairs:
    """SCAN batches: each anchor with one of its candidate neighbours, drawn uniformly."""

    def __init__(self, data, candidates, augment):
        self.data, self.augment = data, augment
        self.candidates = torch.as_tensor(candidates, dtype=torch.int64)

    def __call__(self, index):
        possible = self.candidates[index]
        column = torch.randint(possible.shape[1], (len(index),))
        neighbor = possible[torch.arange(len(index)), column]
        anchor_view, neighbor_view = self.augment(self.data[torch.cat([index, neighbor])]).chunk(2)
        return {'anchor': anchor_view, 'neighbor': neighbor_view, 'possible_neighbors': possible,
                'target': self.data.targets[index], 'index': index}


class OneView:
    """Evaluation batches: `image` = transform(x), in dataset order."""

    def __init__(self, data, transform):
        self.data, self.transform = data, transform

    def __call__(self, index):
        return {'image': self.transform(self.data[index]), 'target': self.data.targets[index],
                'index': index}


def use_fast_path(cfg, dataset):
    if not cfg.fast_augmentation:
        return False
    if getattr(dataset, 'data', None) is None:
        log(f"fast_augmentation: {type(dataset).__name__} has images of several sizes (no `data` "
            f"array); using the per-image DataLoader path", 'yellow')
        return False
    return True


def make_train_loader(cfg, dataset, kind, device, neighbors=None):
    """The training loader of a step: kind 'pretext' (two augmented views), 'scan' (anchor and
    a mined neighbour; `neighbors` is the N x (k+1) index array) or 'selflabel' (weak = val
    transform, strong = augmentation). Shuffled, last partial batch dropped."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got '{kind}'")
    if len(dataset) < cfg.batch_size:  # the last partial batch is dropped: nothing would train
        raise ConfigError(f"{cfg.config_files['exp']}: {len(dataset)} training images is fewer "
                          f"than one batch (batch_size={cfg.batch_size}); lower batch_size")
    if not use_fast_path(cfg, dataset):
        return make_loader(_faithful_dataset(cfg, dataset, kind, neighbors), cfg, device,
                           shuffle=True, drop_last=True)
    data = DeviceImages(dataset, device)
    augment = build_batched_augmentation(cfg)
    if kind == 'pretext':
        make_batch = TwoViews(data, augment, augment)
    elif kind == 'scan':
        # NeighborsDataset checks the array against the dataset and keeps the candidates.
        candidates = NeighborsDataset(dataset, neighbors, cfg.num_neighbors).indices
        make_batch = NeighborPairs(data, candidates, augment)
    else:
        make_batch = TwoViews(data, build_batched_val_transform(cfg), augment)
    return DeviceLoader(batch_sampler(dataset, cfg, shuffle=True, drop_last=True), make_batch)


def _faithful_dataset(cfg, dataset, kind, neighbors):
    if kind == 'pretext':
        augmentation = build_augmentation(cfg)
        return AugmentedDataset(dataset, augmentation, augmentation)
    if kind == 'scan':
        dataset.transform = build_augmentation(cfg)
        return NeighborsDataset(dataset, neighbors, cfg.num_neighbors)
    return AugmentedDataset(dataset, build_val_transform(cfg), build_augmentation(cfg))


def make_eval_loader(cfg, dataset, device):
    """A full pass over `dataset` in order with the validation transform, on this rank alone."""
    if not use_fast_path(cfg, dataset):
        dataset.transform = build_val_transform(cfg)
        return make_loader(dataset, cfg, device, shuffle=False, drop_last=False, distributed=False)
    sampler = batch_sampler(dataset, cfg, shuffle=False, drop_last=False, distributed=False)
    return DeviceLoader(sampler, OneView(DeviceImages(dataset, device),
                                         build_batched_val_transform(cfg)))
