"""STL-10 (96x96): train (5k labelled), test (8k), unlabeled (100k), train+unlabeled, via
torchvision, which reads the column-major binaries into N x C x H x W."""
import os

import numpy as np
from torchvision import datasets

from data.base import ImageDataset
from data.download import open_torchvision_dataset

# what class_names.txt in the archive holds; used if that (unchecksummed) file is absent
STL10_CLASSES = ['airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey', 'ship',
                 'truck']


def load_torchvision_stl(root, split, download):
    tv_class = datasets.STL10
    files = [(os.path.join(tv_class.base_folder, name), md5)
             for name, md5 in tv_class.train_list + tv_class.test_list]
    return open_torchvision_dataset(tv_class, 'STL-10', root, files, download, split=split)


class STL10(ImageDataset):
    splits = ('train', 'test', 'unlabeled', 'train+unlabeled')

    def __init__(self, root, split='train', transform=None, download=True):
        super().__init__(transform)
        if split not in self.splits:
            raise ValueError(f"STL-10 has splits {self.splits}, not '{split}'")
        stl = load_torchvision_stl(os.path.expanduser(root), split, download)
        # NCHW -> NHWC; a contiguous copy, so the torchvision arrays can be freed
        self.data = np.ascontiguousarray(stl.data.transpose(0, 2, 3, 1))
        self.targets = stl.labels.astype(np.int64)  # torchvision already sets -1 for unlabeled
        self.classes = list(getattr(stl, 'classes', None) or STL10_CLASSES)
