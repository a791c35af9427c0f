"""scikit-learn's bundled handwritten digits: the offline default dataset.

1,797 grayscale 8x8 images with 17 grey levels. A fixed stratified split gives 1,437 train and
360 test images; images are upsampled (bilinear) so that crops and a small CNN have room to work,
and stored as RGB like every other dataset.
"""
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from data.base import ImageDataset

DIGITS_SIZE = 16
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def digits_arrays(split, size=DIGITS_SIZE):
    """uint8 images N x size x size x 3 and int targets of one split ('train' or 'test')."""
    bunch = load_digits()
    index = np.arange(len(bunch.target))
    train_idx, test_idx = train_test_split(index, test_size=TEST_FRACTION,
                                           stratify=bunch.target, random_state=SPLIT_SEED)
    chosen = np.sort(train_idx if split == 'train' else test_idx)
    grey = (bunch.images[chosen] * (255.0 / 16.0)).round().astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(g).resize((size, size), Image.BILINEAR))
                       for g in grey])
    return np.repeat(images[..., None], 3, axis=3), bunch.target[chosen].astype(np.int64)


class Digits(ImageDataset):
    classes = [str(d) for d in range(10)]

    def __init__(self, split='train', transform=None, size=DIGITS_SIZE):
        super().__init__(transform)
        if split not in ('train', 'test'):
            raise ValueError(f"digits has splits 'train' and 'test', not '{split}'")
        self.data, self.targets = digits_arrays(split, size)
