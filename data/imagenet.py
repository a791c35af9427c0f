"""ImageNet and its 50/100/200-class subsets, read from an ImageFolder tree root/<split>/<wnid>/.

As in the original, every image is first resized to 256 pixels (shorter side) inside the
dataset, before any transform (train and val alike; the val transform then center-crops 224).

ImageNet cannot be downloaded automatically (it needs a licence), so a missing tree is an error
that shows the layout to build. Subset class lists live in data/imagenet_subsets/.
"""
import os

import numpy as np
import torchvision.transforms as T
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import pil_loader

from data.base import ImageDataset
from data.download import DatasetUnavailable

SUBSETS = ('imagenet', 'imagenet_50', 'imagenet_100', 'imagenet_200')
SUBSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imagenet_subsets')
SHOWN_MISSING = 5
RESIZE = 256


def read_class_list(subset):
    """WordNet ids and names of a subset file: one 'wnid name with spaces' per line."""
    with open(os.path.join(SUBSET_DIR, f'{subset}.txt')) as f:
        pairs = [line.strip().split(' ', 1) for line in f if line.strip()]
    return [p[0] for p in pairs], [p[1] if len(p) > 1 else p[0] for p in pairs]


def layout_help(root):
    return (f"ImageNet cannot be downloaded automatically: get ILSVRC2012 from "
            f"https://image-net.org and arrange it as one folder per WordNet id in each split:\n"
            f"  {os.path.join(root, 'train', 'n01440764', 'n01440764_10026.JPEG')}\n"
            f"  {os.path.join(root, 'val', 'n01440764', 'ILSVRC2012_val_00000293.JPEG')}\n"
            f"(the official val archive is flat: sort it into class folders too), then set "
            f"imagenet_dir in configs/env.yml to the folder holding train/ and val/ "
            f"(now {root}).")


class ClassListFolder(ImageFolder):
    """torchvision's ImageFolder over a given list of class folders, indexed in list order."""

    def __init__(self, root, wnids, list_name):
        self.wnids, self.list_name = wnids, list_name  # find_classes runs in ImageFolder.__init__
        super().__init__(root)

    def find_classes(self, directory):
        missing = [w for w in self.wnids if not os.path.isdir(os.path.join(directory, w))]
        if missing:
            shown = ', '.join(missing[:SHOWN_MISSING]) + (', ...' if len(missing) > SHOWN_MISSING
                                                          else '')
            raise DatasetUnavailable(f"{len(missing)} of the {len(self.wnids)} class folders of "
                                     f"{self.list_name} are missing in {directory}: {shown}")
        return list(self.wnids), {w: i for i, w in enumerate(self.wnids)}


class ImageNetSubset(ImageDataset):
    def __init__(self, root, subset, split='train', transform=None):
        super().__init__(transform)
        if subset not in SUBSETS:
            raise ValueError(f"ImageNet subset must be one of {SUBSETS}, not '{subset}'")
        root = os.path.abspath(os.path.expanduser(root))
        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            raise DatasetUnavailable(f"ImageNet not found: no folder {split_dir}.\n"
                                     + layout_help(root))
        if subset == 'imagenet':
            tree = ImageFolder(split_dir)  # every class folder found, sorted wnids
            self.wnids = self.classes = list(tree.classes)
        else:
            self.wnids, self.classes = read_class_list(subset)
            tree = ClassListFolder(split_dir, self.wnids, subset)
        self.paths = [path for path, _ in tree.samples]
        self.targets = np.asarray(tree.targets, dtype=np.int64)
        self.resize = T.Resize(RESIZE)  # PIL bilinear, as the original's

    def load_image(self, index):
        return self.resize(pil_loader(self.paths[index]))
