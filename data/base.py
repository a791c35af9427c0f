"""The sample format shared by every dataset of the project."""
import numpy as np
from PIL import Image


class ImageDataset:
    """Base class: a sample is a dict with `image`, `target` (-1 when unknown), `index`, and
    `path` where the image comes from a file. A map-style dataset for torch's DataLoader (which
    needs only __len__ and __getitem__), with no torch base class: listing a folder then needs
    no torch (eval.py's re-export from saved predictions).

    Subclasses set `targets` (int array), `classes` (list of names, or None when unlabeled),
    `paths` (list, or None) and implement `load_image(i)` returning an RGB PIL image. Datasets
    whose images are all one size also set `data`, a uint8 array N x H x W x 3, which the fast
    (batched) augmentation path uploads to the device once.
    """
    classes = None
    paths = None
    data = None

    def __init__(self, transform=None):
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def load_image(self, index):
        return Image.fromarray(self.data[index])

    def __getitem__(self, index):
        image = self.load_image(index)
        sample = {'image': self.transform(image) if self.transform is not None else image,
                  'target': int(self.targets[index]), 'index': index}
        if self.paths is not None:
            sample['path'] = self.paths[index]
        return sample

    @property
    def has_labels(self):
        return bool(np.any(np.asarray(self.targets) >= 0))
