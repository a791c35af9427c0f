"""A folder of generated photo-sized images for timing the folder pipelines: the five shapes of
tests/shapes.py, drawn at 16 pixels, tinted, scaled up to 256 x 192 with noise, saved as JPEG
in one sub-folder per shape (a labelled tree).

    python benchmarks/photo_folder.py /tmp/photos --per_class 1000     # 5,000 images
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.shapes import SHAPES, draw  # noqa: E402

SIZE = (256, 192)  # width, height


def photo(shape, rng):
    grey = Image.fromarray(draw(shape, rng)).resize(SIZE, Image.BICUBIC)
    tint = rng.uniform(0.4, 1.0, 3)
    rgb = np.asarray(grey, np.float64)[..., None] * tint + rng.normal(0, 12, (*SIZE[::-1], 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder')
    parser.add_argument('--per_class', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for shape in SHAPES:
        os.makedirs(os.path.join(args.folder, shape), exist_ok=True)
        for i in range(args.per_class):
            photo(shape, rng).save(os.path.join(args.folder, shape, f'{shape}_{i:04d}.jpg'),
                                   quality=90)
    print(f"{len(SHAPES) * args.per_class} images in {args.folder}")


if __name__ == '__main__':
    main()
