"""CIFAR-10 and CIFAR-100-20 (the 20 coarse super-classes of CIFAR-100), via torchvision.

torchvision reads the pickles and owns the URLs and md5s; data/download.py turns its download
failures into clear errors. torchvision keeps only the fine labels of CIFAR-100, so the coarse
ones are read from the same pickles here.
"""
import os
import pickle

import numpy as np
from torchvision import datasets

from data.base import ImageDataset
from data.download import open_torchvision_dataset


def torchvision_files(tv_class):
    """(path relative to root, md5) of every file a torchvision CIFAR class checks."""
    names = tv_class.train_list + tv_class.test_list + [[tv_class.meta['filename'],
                                                         tv_class.meta['md5']]]
    return [(os.path.join(tv_class.base_folder, name), md5) for name, md5 in names]


def load_torchvision_cifar(tv_class, name, root, train, download):
    root = os.path.expanduser(root)
    return open_torchvision_dataset(tv_class, name, root, torchvision_files(tv_class), download,
                                    train=train)


def read_pickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='latin1')  # the files are Python 2 pickles


class CIFAR10(ImageDataset):
    def __init__(self, root, train=True, transform=None, download=True):
        super().__init__(transform)
        cifar = load_torchvision_cifar(datasets.CIFAR10, 'CIFAR-10', root, train, download)
        self.data = np.ascontiguousarray(cifar.data)  # torchvision's is an NHWC view of NCHW
        self.targets = np.asarray(cifar.targets, dtype=np.int64)
        self.classes = list(cifar.classes)


class CIFAR20(ImageDataset):
    """CIFAR-100 images with the 20 coarse labels and names stored in its files."""

    def __init__(self, root, train=True, transform=None, download=True):
        super().__init__(transform)
        tv_class = datasets.CIFAR100
        cifar = load_torchvision_cifar(tv_class, 'CIFAR-100', root, train, download)
        folder = os.path.join(cifar.root, tv_class.base_folder)
        batches = tv_class.train_list if train else tv_class.test_list
        coarse = [read_pickle(os.path.join(folder, name))['coarse_labels'] for name, _ in batches]
        self.data = np.ascontiguousarray(cifar.data)
        self.targets = np.concatenate(coarse).astype(np.int64)
        self.classes = list(read_pickle(os.path.join(folder, tv_class.meta['filename']))
                            ['coarse_label_names'])
