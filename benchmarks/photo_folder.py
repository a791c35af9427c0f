"""A folder of generated photo-sized images for timing the folder pipelines: the five shapes of
tests/shapes.py, drawn at 16 pixels, tinted, scaled up to `--size` (256 x 192 by default) with
noise, saved as JPEG in one sub-folder per shape (a labelled tree).

    python benchmarks/photo_folder.py /tmp/photos --per_class 1000     # 5,000 images
    python benchmarks/photo_folder.py /tmp/phone --per_class 40 --size 4032x3024  # 12 MP, ~3 MB each

Halves of one tree can be made side by side (one core each): `--seed 1 --first 0` and
`--seed 2 --first 500`, both with `--per_class 500`.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageChops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.shapes import SHAPES, draw  # noqa: E402

SIZE = (256, 192)  # width, height
NOISE_TILE = 512  # noise drawn once per photo at this size and tiled: 12 MP in a fraction of 1s


def photo(shape, rng, size=SIZE):
    """All in PIL's C code (uint8), so that 12-megapixel photos are quick to make."""
    grey = Image.fromarray((draw(shape, rng) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
    rgb = Image.merge('RGB', [grey.point(lambda v, t=t: v * t) for t in rng.uniform(0.4, 1, 3)])
    tile = Image.fromarray(np.clip(rng.normal(128, 12, (NOISE_TILE, NOISE_TILE, 3)), 0, 255)
                           .astype(np.uint8))
    noise = Image.new('RGB', size)
    for top in range(0, size[1], NOISE_TILE):
        for left in range(0, size[0], NOISE_TILE):
            noise.paste(tile, (left, top))
    return ImageChops.add(rgb, noise, offset=-128)  # rgb + noise - 128, clipped to 0..255


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, e.g. 4032x3024, got "
                                         f"{text!r}") from None
    if min(width, height) < 16:
        raise argparse.ArgumentTypeError(f"--size {text}: at least 16 pixels a side")
    return width, height


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder')
    parser.add_argument('--per_class', type=int, default=1000)
    parser.add_argument('--size', type=parse_size, default=SIZE,
                        help='WIDTHxHEIGHT of each photo (default 256x192; a phone: 4032x3024)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--first', type=int, default=0, help='number of the first photo per class')
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for shape in SHAPES:
        os.makedirs(os.path.join(args.folder, shape), exist_ok=True)
        for i in range(args.first, args.first + args.per_class):
            photo(shape, rng, args.size).save(
                os.path.join(args.folder, shape, f'{shape}_{i:04d}.jpg'), quality=90)
    print(f"{len(SHAPES) * args.per_class} images of {args.size[0]} x {args.size[1]} pixels in "
          f"{args.folder}")


if __name__ == '__main__':
    main()
