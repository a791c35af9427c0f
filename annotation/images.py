"""The images of an export as text every writer can encode: their paths for the CSV, their
relative paths for the gallery, links to the originals, their labels; and their pixels.

A dataset made of files (a user's folder) gives absolute paths; any other (a benchmark split)
gives '<source>[i]'. Paths are written with utils.text.printable_path (undecodable bytes and
controls as '\\xNN', lossless), the same way everywhere, so that a corrections file matches back
to the same image; links to the originals are built from the raw bytes, so they still open the
right file. Pixels are decoded reduced (data.image_folder.load_thumbnail): a huge photo never
costs its full size in memory.
"""
import os
import pathlib
import threading
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from annotation.gallery import THUMB_SIZE, thumbnail_png
from data.image_folder import load_thumbnail
from utils.text import printable_path, printable_relpath, visible_text

SHOWN_SIDE = 256  # longest side of an image decoded for the grids (cells of about 150 pixels)
# PNG thumbnails held between the duplicate search, which decodes every image, and the gallery,
# which would decode each again (about 40 ms for a 12-MP JPEG): 5,000 photos take about 80 MB
KEPT_THUMBNAILS_BYTES = 512 * 2**20


@dataclass
class ImageSet:
    dataset: object
    source: str        # the folder, or the name of the split
    paths: list        # per image, as annotations.csv writes it
    labels: list       # per image, the true class name ('' where unknown); None: no labels
    skipped: list      # (path relative to the folder, reason) of the files not read
    kept: dict = field(default_factory=dict, repr=False)  # {image: its gallery thumbnail, PNG}
    kept_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def folder(self):
        return getattr(self.dataset, 'folder', None)

    def __len__(self):
        return len(self.paths)

    def load(self, index):
        """The image for a grid cell (longer side at most SHOWN_SIDE)."""
        return self.load_thumbnail(index, SHOWN_SIDE)

    def load_thumbnail(self, index, size):
        """The image shrunk to at most size x size, decoded reduced where it is a file."""
        if self.dataset.paths is not None:
            return load_thumbnail(self.dataset.paths[index], size)
        image = self.dataset.load_image(index).copy()
        image.thumbnail((size, size))
        return image

    def gallery_thumbnail(self, index, keep=False):
        """The image shrunk to the gallery's thumbnail size; with `keep`, its PNG is also held
        (KEPT_THUMBNAILS_BYTES in all) until the gallery takes it (take_thumbnail_png)."""
        image = self.load_thumbnail(index, THUMB_SIZE)
        if keep:
            png = thumbnail_png(image)
            with self.lock:
                if self.kept_bytes + len(png) <= KEPT_THUMBNAILS_BYTES:
                    self.kept[index] = png
                    self.kept_bytes += len(png)
        return image

    def take_thumbnail_png(self, index):
        """The PNG held by gallery_thumbnail(index, keep=True), once; None where none is."""
        with self.lock:
            png = self.kept.pop(index, None)
            self.kept_bytes -= len(png) if png is not None else 0
        return png

    def hrefs(self, start):
        """Per image, a relative URL from the folder `start` to the original file ('' where the
        image is not a file)."""
        if self.dataset.paths is None:
            return [''] * len(self)
        return [relative_href(p, start) for p in self.dataset.paths]


def image_set(dataset, source):
    """What an export writes of each image of `dataset` (`source` names it)."""
    folder = getattr(dataset, 'folder', None)
    if dataset.paths is not None:
        paths = [printable_path(p) for p in dataset.paths]
    else:
        paths = [f"{source}[{i}]" for i in range(len(dataset))]
    skipped = [(printable_relpath(p, folder), visible_text(reason))
               for p, reason in getattr(dataset, 'skipped', [])] if folder else []
    return ImageSet(dataset, printable_path(folder) if folder else visible_text(source), paths,
                    label_names(dataset), skipped)


def relative_href(path, start):
    """A relative URL from the folder `start` to the file `path`, every byte of the name
    percent-encoded as it is on disk (not-UTF-8 names included)."""
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows): no relative path exists
        return pathlib.Path(os.path.abspath(path)).as_uri()
    return urllib.parse.quote(os.fsencode(relative.replace(os.sep, '/')))


def class_names(dataset):
    """The dataset's class names, or the class ids as text where it has none."""
    return [visible_text(c) for c in dataset.classes] if dataset.classes \
        else [str(c) for c in range(int(max(dataset.targets)) + 1)]


def label_names(dataset):
    """Per image: the name of its true class ('' where unknown); None for unlabeled data."""
    if not dataset.has_labels:
        return None
    classes = class_names(dataset)
    return [classes[t] if t >= 0 else '' for t in dataset.targets]


def match_names(dataset, probs):
    """({cluster: class name} by Hungarian matching, the metrics) where the images have labels;
    ({}, None) otherwise. A folder may hold more classes than the model has clusters: only the
    model's clusters are named."""
    if not dataset.has_labels:
        return {}, None
    from utils.metrics import cluster_metrics  # scikit-learn: only where labels are matched

    classes = class_names(dataset)
    metrics = cluster_metrics(probs.argmax(axis=1), dataset.targets, len(classes), probs=probs)
    mapping = metrics.pop('mapping')
    sizes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    return {k: classes[c] for k, c in mapping.items()  # an empty cluster keeps 'cluster K'
            if c >= 0 and k < probs.shape[1] and sizes[k]}, metrics
