"""Exact and near-duplicate images: groups of the same picture, copied, resized, re-encoded,
slightly cropped or brightened.

Exact copies share the SHA-256 of their file (of their pixels where the image is not a file).
Near copies have perceptual codes within `max_distance` bits of each other: a code is three
imagehash hashes of 64 bits side by side (pHash: low DCT frequencies, dHash: horizontal
gradients, wHash: Haar wavelets), so the distance is the sum of the three; each alone confused
distinct pictures that the sum tells apart (benchmarks/duplicates_quality.py, docs/map.md). The
pairs come from faiss's binary range search: 100,000 images cost seconds, not 10^10 Python
comparisons. Pairs are joined into groups (connected components). Pictures under MIN_SIDE
pixels a side (8 x 8 digits, icons) have too little detail for a perceptual code to tell them
apart (every digit would be a near copy of dozens): they are matched by content only.
"""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.paths import file_digest
from utils.progress import progress

HASH_SIDE = 64  # pixels the image is decoded to before hashing (pHash itself works at 32)
MIN_SIDE = 32   # pixels: smaller pictures get no perceptual code (exact copies only)
CODE_BYTES = 3 * 8
THREADS = min(4, os.cpu_count() or 1)  # PIL decodes without the GIL


def perceptual_code(image):
    """pHash, dHash and wHash of a PIL image as one 192-bit code (24 uint8)."""
    import imagehash  # here and below: groups restored from a cache need none of these

    hashes = (imagehash.phash, imagehash.dhash, imagehash.whash)
    return np.packbits(np.concatenate([hash_(image).hash.ravel() for hash_ in hashes]))


def hashed_image(images, index, keep=False):
    """The image at HASH_SIDE, shrunk from the gallery's thumbnail, which `keep` holds for the
    gallery (annotation.images): each photo of an export is decoded once for both."""
    image = images.gallery_thumbnail(index, keep=keep)
    image.thumbnail((HASH_SIDE, HASH_SIDE))
    return image


def image_fingerprints(images):
    """(content digests, perceptual codes as N x CODE_BYTES uint8, whether each has a code) of
    an ImageSet (annotation.images); an image that cannot be read now gets digest None and no
    code: it is in no group. Files are hashed only where another has their size: a file of
    a size of its own has no exact copy (phone photos: hardly any file is read twice)."""
    paths = images.dataset.paths
    shared_size = sizes_held_twice(paths) if paths is not None else None

    def content_digest(index):
        if paths is None:
            return hashlib.sha256(images.dataset.load_image(index).tobytes()).hexdigest()
        size = os.stat(paths[index]).st_size
        return file_digest(paths[index]) if size in shared_size else f"size {size}"

    def fingerprint(index):
        try:
            image = hashed_image(images, index, keep=True)
            digest = content_digest(index)
        except Exception:  # PIL raises many types on bad data; the export lists such files
            return None, np.zeros(CODE_BYTES, np.uint8), False
        if min(image.size) < MIN_SIDE:
            return digest, np.zeros(CODE_BYTES, np.uint8), False
        return digest, perceptual_code(image), True

    with ThreadPoolExecutor(THREADS) as pool:
        found = list(progress(pool.map(fingerprint, range(len(images))), total=len(images),
                              unit='image', desc='Duplicates', leave=False))
    codes = np.stack([c for _, c, _ in found]) if found else np.zeros((0, CODE_BYTES), np.uint8)
    return [d for d, _, _ in found], codes, np.array([h for _, _, h in found], bool)


def sizes_held_twice(paths):
    """The byte sizes that more than one of the files has (a file that cannot be stat'ed is
    left to the fingerprint, which reports it)."""
    seen, twice = set(), set()
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        (twice if size in seen else seen).add(size)
    return twice


def similar_pairs(hashes, max_distance):
    """(i, j) with i < j of the codes (N x bytes, uint8) at most `max_distance` bits apart."""
    if len(hashes) < 2:
        return np.zeros((0, 2), np.int64)
    import faiss

    index = faiss.IndexBinaryFlat(hashes.shape[1] * 8)
    index.add(hashes)
    lims, _, found = index.range_search(hashes, max_distance + 1)  # faiss: distance < radius
    rows = np.repeat(np.arange(len(hashes)), np.diff(lims).astype(np.int64))
    pairs = np.stack([rows, found.astype(np.int64)], axis=1)
    return pairs[pairs[:, 0] < pairs[:, 1]]


def exact_pairs(digests):
    """(i, j) pairs of images with the same content digest (each to the first of its kind)."""
    first, pairs = {}, []
    for i, digest in enumerate(digests):
        if digest is None:
            continue
        if digest in first:
            pairs.append((first[digest], i))
        else:
            first[digest] = i
    return np.array(pairs, np.int64).reshape(-1, 2)


def group_pairs(pairs, n):
    """Per image, its group id (0, 1, ... by first member; -1 when it is in no pair)."""
    groups = np.full(n, -1, np.int64)
    if len(pairs) == 0:
        return groups
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    paired = np.zeros(n, bool)
    paired[pairs.ravel()] = True
    renumber = {}
    for i in np.flatnonzero(paired):
        groups[i] = renumber.setdefault(component[i], len(renumber))
    return groups


class Duplicates:
    """Groups of duplicates of an export: `groups` (per image, -1 or its group id), `exact`
    (per image, True where another image has the very same content)."""

    def __init__(self, digests, codes, max_distance, coded=None):
        n = len(digests)
        coded = np.array([d is not None for d in digests], bool) if coded is None else coded
        near = similar_pairs(codes, max_distance)
        near = near[coded[near[:, 0]] & coded[near[:, 1]]]
        same = exact_pairs(digests)
        self.groups = group_pairs(np.concatenate([near, same]), n)
        self.exact = np.zeros(n, bool)
        self.exact[same.ravel()] = True
        self.pairs = len(near) + len(same)

    @classmethod
    def restored(cls, groups, exact, pairs):
        """Groups saved by annotation/derived_cache.py."""
        duplicates = cls.__new__(cls)
        duplicates.groups, duplicates.exact, duplicates.pairs = groups, exact, pairs
        return duplicates

    @classmethod
    def of_images(cls, images, max_distance):
        digests, codes, coded = image_fingerprints(images)
        return cls(digests, codes, max_distance, coded)

    def members(self):
        """The groups as lists of image ids, in group order."""
        order = np.argsort(self.groups, kind='stable')
        order = order[self.groups[order] >= 0]
        return [ids.tolist() for ids in
                np.split(order, np.flatnonzero(np.diff(self.groups[order])) + 1)] \
            if len(order) else []

    def summary(self):
        members = self.members()
        return {'groups': len(members), 'images_in_groups': int(sum(map(len, members))),
                'extra_copies': int(sum(len(m) - 1 for m in members)),
                'images_with_an_exact_copy': int(self.exact.sum())}
