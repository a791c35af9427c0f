"""Datasets: `build_dataset(cfg, split)` returns the dataset of a run for one split.

Splits: 'pretext' (what the contrastive step trains on: STL-10 adds its unlabeled images),
'train' (what neighbours are mined on and SCAN/self-labeling train on) and 'val' (the test split
where the dataset has one; for a folder of images, the same images as 'train').
"""
import os

SPLITS = ('pretext', 'train', 'val')


def folder_check_record(cfg):
    """Where step 1 keeps the check of a folder's files (None before paths are derived)."""
    paths = cfg.get('paths')
    return os.path.join(paths.pretext_dir, 'folder-check.json') if paths else None


def val_is_train(cfg):
    """True where the 'val' split holds the very images of 'train', in the same order."""
    return cfg.train_db_name == cfg.val_db_name == 'folder'


def build_dataset(cfg, split, transform=None):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    name = cfg.val_db_name if split == 'val' else cfg.train_db_name
    training = split != 'val'
    if name == 'digits':
        from data.digits import Digits
        return Digits('train' if training else 'test', transform=transform)
    if name == 'cifar-10':
        from data.cifar import CIFAR10
        return CIFAR10(os.path.join(cfg.data_dir, 'cifar-10'), train=training, transform=transform)
    if name == 'cifar-20':
        from data.cifar import CIFAR20
        return CIFAR20(os.path.join(cfg.data_dir, 'cifar-100'), train=training, transform=transform)
    if name == 'stl-10':
        from data.stl import STL10
        stl_split = {'pretext': 'train+unlabeled', 'train': 'train', 'val': 'test'}[split]
        return STL10(os.path.join(cfg.data_dir, 'stl-10'), split=stl_split, transform=transform)
    if name.startswith('imagenet'):
        from data.imagenet import ImageNetSubset
        return ImageNetSubset(cfg.imagenet_dir, subset=name, split='train' if training else 'val',
                              transform=transform)
    if name == 'folder':
        from data.image_folder import ImageFolderDataset
        # resized once (and kept in memory) to the transforms' size: photos are not decoded
        # again every epoch; fast_augmentation: cropped square once, so that they are one array;
        # step 1 records the check of each file for the later steps (fingerprint.py)
        return ImageFolderDataset(cfg.folder, transform=transform,
                                  resize=cfg.transformation_kwargs.resize,
                                  square=cfg.get('fast_augmentation', False),
                                  record=folder_check_record(cfg))
    raise ValueError(f"unknown dataset '{name}'")
