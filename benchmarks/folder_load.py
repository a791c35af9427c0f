"""Seconds to check a folder and make its working copies: today's recipe (a check pass, then a
full-size decode and resize of every file) against the one pass of data/image_folder.py (check
and working copy in one decode, JPEGs at a reduced DCT scale), side by side in one process.

    python benchmarks/photo_folder.py /tmp/phone --per_class 20 --size 4032x3024
    python benchmarks/folder_load.py /tmp/phone --size 224
"""
import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import image_folder  # noqa: E402


def two_passes(folder, size, threads):
    """Before: check every file (decoded at 1/8 scale), then decode each at full size and
    resize it (what working_copies did)."""
    files, _ = image_folder.regular_files(folder, image_folder.list_files(folder)[0])
    with ThreadPoolExecutor(threads) as pool:
        checked = list(pool.map(image_folder.check_image, files))
        good = [f for f, (dims, _) in zip(files, checked) if dims is not None]

        def full(path):
            return np.asarray(TF.resize(image_folder.load_rgb(path), size,
                                        interpolation=InterpolationMode.BILINEAR, antialias=True))
        return list(pool.map(full, good))


def one_pass(folder, size, threads):
    files, _ = image_folder.regular_files(folder, image_folder.list_files(folder)[0])
    with ThreadPoolExecutor(threads) as pool:
        return [c for _, c, _ in pool.map(image_folder.check_and_copy, files, [size] * len(files))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder')
    parser.add_argument('--size', type=int, default=224, help='shorter side of the copies')
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--repeats', type=int, default=1)
    args = parser.parse_args()
    folder = os.path.abspath(args.folder)
    results = {}
    for _ in range(args.repeats):  # alternated, so that a busy moment hits both alike
        for name, recipe in (('before: check + full decode', two_passes),
                             ('after: one pass, draft', one_pass)):
            started = time.perf_counter()
            copies = recipe(folder, args.size, args.threads)
            results.setdefault(name, []).append(time.perf_counter() - started)
    n = len(copies)
    print(f"{n} images in {folder}, copies at size {args.size}, {args.threads} threads "
          f"(best of {args.repeats}):")
    base = min(results['before: check + full decode'])
    for name, times in results.items():
        best = min(times)
        print(f"  {name:30s} {best:7.2f} s = {1000 * best / n:6.1f} s per 1,000 photos "
              f"({base / best:.1f}x)")


if __name__ == '__main__':
    main()
