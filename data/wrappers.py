"""Dataset wrappers: two augmented views per image, and (anchor, neighbour) pairs."""
import numpy as np
from torch.utils.data import Dataset


class AugmentedDataset(Dataset):
    """Gives `image` = transform(x) and `image_augmented` = augmentation(x) of the same image."""

    def __init__(self, dataset, transform, augmentation):
        self.dataset = dataset
        self.dataset.transform = None
        self.transform, self.augmentation = transform, augmentation

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        image = sample.pop('image')
        sample['image'] = self.transform(image)
        sample['image_augmented'] = self.augmentation(image)
        return sample


class NeighborsDataset(Dataset):
    """Each anchor is paired with one of its mined neighbours, drawn at random every time.

    `indices` is N x (k+1) from mining (column 0 is normally the anchor itself); the first
    `num_neighbors` + 1 columns are candidates, as in the published code.
    """

    def __init__(self, dataset, indices, num_neighbors=None):
        if len(indices) != len(dataset):
            raise ValueError(f"{len(indices)} rows of neighbours for a dataset of {len(dataset)} "
                             f"images: the neighbours were mined on another dataset")
        if num_neighbors is not None:
            if num_neighbors + 1 > indices.shape[1]:
                raise ValueError(f"num_neighbors={num_neighbors} but only {indices.shape[1] - 1} "
                                 f"neighbours were mined per image")
            indices = indices[:, :num_neighbors + 1]
        self.dataset, self.indices = dataset, indices

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        anchor = self.dataset[index]
        neighbor_index = int(np.random.choice(self.indices[index]))
        neighbor = self.dataset[neighbor_index]
        return {'anchor': anchor['image'], 'neighbor': neighbor['image'],
                'possible_neighbors': self.indices[index].astype(np.int64),
                'target': anchor['target'], 'index': index}
