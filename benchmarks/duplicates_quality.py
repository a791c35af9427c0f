"""How well annotation/duplicates.py finds planted copies, and how long it takes.

Builds a folder from real pictures (the 1,797 scikit-learn digits, upsampled to 96 x 96) or
generated photos (benchmarks/photo_folder.py), plants copies of 5% of the images, each resized
to 70-90%, re-encoded as JPEG quality 60-85, and cropped by up to 5% or brightened by up to
10%, plus exact byte copies of another 2%, then reports the precision and recall of the pairs
found (two images are a true pair when they come from the same picture) for several hashes and
distances, and the time of the export's duplicate search.

    python benchmarks/duplicates_quality.py /tmp/dups-digits --source digits
    python benchmarks/duplicates_quality.py /tmp/dups-photos --source photos --images 2000
    python benchmarks/duplicates_quality.py /tmp/dups-10k --source photos --images 10000 --time_only
"""
import argparse
import os
import shutil
import sys
import time

import imagehash
import numpy as np
from PIL import Image, ImageEnhance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from annotation.duplicates import (Duplicates, hashed_image, image_fingerprints,  # noqa: E402
                                   perceptual_code)  # noqa: E402
from annotation.images import image_set  # noqa: E402
from benchmarks.photo_folder import photo  # noqa: E402
from data.image_folder import ImageFolderDataset  # noqa: E402
from tests.shapes import SHAPES  # noqa: E402

# one imagehash hash at a time (64 bits) against the export's code: the three side by side
HASHES = {'phash': imagehash.phash, 'dhash': imagehash.dhash, 'whash': imagehash.whash,
          'average_hash': imagehash.average_hash}
SINGLE_DISTANCES, CODE_DISTANCES = (2, 4, 6, 8, 10), (12, 16, 20, 24, 28, 32)


def originals(source, count, rng):
    if source == 'digits':
        from sklearn.datasets import load_digits
        pixels = load_digits().images  # 8 x 8 in 0..16
        for i, image in enumerate(pixels[:count]):
            grey = Image.fromarray((255 - image * 255 / 16).astype(np.uint8))
            yield f'digit_{i:05d}.png', grey.resize((96, 96), Image.BICUBIC).convert('RGB')
    else:
        for i in range(count):
            yield f'photo_{i:05d}.jpg', photo(SHAPES[i % len(SHAPES)], rng)


def altered(image, rng):
    """Resized to 70-90%, then cropped by up to 5% or brightened by up to 10% (JPEG on save)."""
    scale = rng.uniform(0.7, 0.9)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.BICUBIC)
    if rng.random() < 0.5:
        w, h = image.size
        cut = rng.uniform(0, 0.05)
        left, top = rng.uniform(0, cut) * w, rng.uniform(0, cut) * h
        return image.crop((round(left), round(top), round(left + (1 - cut) * w),
                           round(top + (1 - cut) * h)))
    return ImageEnhance.Brightness(image).enhance(1 + rng.uniform(0, 0.1))


MARKER = '.duplicates-benchmark'  # in a folder this script built (hidden: not an image)


def build_folder(folder, source, count, seed):
    """A new folder of pictures and planted copies (never one that holds anything else)."""
    if os.path.exists(folder) and os.listdir(folder):
        sys.exit(f"{folder} exists and is not empty: give a new folder (or --reuse one this "
                 f"script built)")
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, MARKER), 'w').close()
    names = []
    for name, image in originals(source, count, rng):
        path = os.path.join(folder, name)
        image.save(path, quality=90) if name.endswith('.jpg') else image.save(path)
        names.append(path)
    names.sort()
    near = rng.choice(len(names), round(0.05 * len(names)), replace=False)
    exact = rng.choice(np.setdiff1d(np.arange(len(names)), near), round(0.02 * len(names)),
                       replace=False)
    for i in near:
        copy = os.path.join(folder, f'near_copy_{i:05d}.jpg')
        altered(Image.open(names[i]).convert('RGB'), rng).save(copy,
                                                               quality=int(rng.integers(60, 86)))
    for i in exact:
        shutil.copyfile(names[i], os.path.join(folder, 'exact_copy_' + os.path.basename(names[i])))


def source_pictures(paths):
    """Per image, the number of the original picture it shows (from the names given above)."""
    originals_ = sorted(p for p in paths if not os.path.basename(p).startswith(('near_copy_',
                                                                              'exact_copy_')))
    number = {p: i for i, p in enumerate(originals_)}
    found = []
    for path in paths:
        name = os.path.basename(path)
        if name.startswith('near_copy_'):
            found.append(int(name[len('near_copy_'):-len('.jpg')]))
        elif name.startswith('exact_copy_'):
            found.append(number[os.path.join(os.path.dirname(path), name[len('exact_copy_'):])])
        else:
            found.append(number[path])
    return np.array(found)


def pairs_in(labels):
    """How many pairs of images share a label (-1: none), counted from the label sizes."""
    counts = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0)
    return int((counts * (counts - 1) // 2).sum())


def scores(groups, source):
    """Precision and recall of the pairs within the groups against the pairs of one source."""
    grouped = groups >= 0  # a pair is found when both are in one group, true when one source
    both = np.stack([groups[grouped], source[grouped]], axis=1)
    hits = pairs_in(np.unique(both, axis=0, return_inverse=True)[1].ravel()) if len(both) else 0
    found = pairs_in(groups)
    return hits / max(1, found), hits / max(1, pairs_in(source))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', help='a new folder, made for the benchmark')
    parser.add_argument('--reuse', action='store_true', help='the folder of an earlier run')
    parser.add_argument('--time_only', action='store_true',
                        help="only the export's search (no table of single hashes)")
    parser.add_argument('--source', choices=('digits', 'photos'), default='digits')
    parser.add_argument('--images', type=int, default=1797, help='originals before the copies')
    parser.add_argument('--max_distance', type=int, default=20,
                        help="the export's threshold, timed (default: the config's default)")
    parser.add_argument('--also', type=int, nargs='*', default=(),
                        help='other distances to score (the fingerprints once more)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    if not (args.reuse and os.path.isfile(os.path.join(args.folder, MARKER))):
        build_folder(args.folder, args.source, args.images, args.seed)
    dataset = ImageFolderDataset(args.folder)
    images = image_set(dataset, args.folder)
    source_of = source_pictures(dataset.paths)
    names = [os.path.basename(p) for p in dataset.paths]
    print(f"{len(images):,} images: {sum(n.startswith('near_copy_') for n in names)} near "
          f"copies, {sum(n.startswith('exact_copy_') for n in names)} exact copies, "
          f"{pairs_in(source_of)} true pairs; the machine may be shared: times are indicative")
    if not args.time_only:
        hash_table(images, source_of)
    time_export(images, source_of, args.max_distance, args.also)


def hash_table(images, source_of):
    """Precision / recall of each imagehash hash alone and of the export's code, by distance."""
    thumbs = [hashed_image(images, i) for i in range(len(images))]
    content, _, _ = image_fingerprints(images)
    rows = [(name, np.stack([np.packbits(function(t).hash.ravel()) for t in thumbs]),
             SINGLE_DISTANCES) for name, function in HASHES.items()]
    rows.append(('p+d+w code', np.stack([perceptual_code(t) for t in thumbs]), CODE_DISTANCES))
    print("pairs found within groups: precision / recall at a distance of at most d bits")
    for name, hashes, distances in rows:
        cells = []
        for d in distances:
            p, r = scores(Duplicates(content, hashes, d).groups, source_of)
            cells.append(f"  d<={d:<2} {p:.3f} / {r:.3f}")
        print(f"{name:<13}" + ''.join(cells))


def time_export(images, source_of, max_distance, also=()):
    """The export's search, timed; then its precision / recall at the other distances."""
    start = time.perf_counter()
    found = Duplicates.of_images(images, max_distance)
    seconds = time.perf_counter() - start
    p, r = scores(found.groups, source_of)
    print(f"export (code, distance {max_distance}): {seconds:.2f} s for {len(images):,} "
          f"images ({1000 * seconds / len(images):.2f} ms each); P {p:.3f} R {r:.3f}; "
          f"{found.summary()}")
    if also:
        digests, codes, coded = image_fingerprints(images)
        for d in also:
            p, r = scores(Duplicates(digests, codes, d, coded).groups, source_of)
            print(f"  distance {d}: P {p:.3f} R {r:.3f}")


if __name__ == '__main__':
    main()
