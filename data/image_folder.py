"""A user's own folder of images: a labelled ImageFolder-style tree or any unlabeled tree.

Every file is opened and fully decoded once, up front, so that a corrupt or truncated image is
reported by name before training rather than crashing a worker hours in. Extensions are not
trusted either way. Nothing in the folder is ever written, moved or deleted.

With `resize`, images come out with their shorter side scaled to it exactly as the transforms'
`Resize(resize)` does (which then has nothing left to do), and are kept in memory at that size
when they fit in WORKING_COPY_BUDGET bytes: a photo is decoded once per process, not once per
epoch and view.
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import InterpolationMode

from data.base import ImageDataset
from utils.errors import UserError
from utils.progress import progress

SHOWN_SKIPPED = 20
SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
WHITE = (255, 255, 255, 255)
WORKING_COPY_BUDGET = 2 * 1024 ** 3  # bytes of resized images kept in memory per folder and size


class FolderError(UserError, ValueError):
    """The image folder is missing, not a folder, or holds no readable image."""


def to_rgb(image):
    """Any PIL mode as RGB: transparency composited onto white, 16-bit and float greys scaled."""
    if image.mode in SIXTEEN_BIT_MODES:
        # PIL's convert clips 16-bit values at 255 instead of scaling 0..65535 to 0..255
        grey = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        return Image.fromarray(grey.round().astype(np.uint8)).convert('RGB')
    if image.mode == 'F':
        # float images hold either 0..1 (most writers) or 0..255; PIL's convert assumes 0..255
        values = np.asarray(image, dtype=np.float64)
        if values.size and values.min() >= 0 and values.max() <= 1:
            values = values * 255
        return Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8)).convert('RGB')
    if image.has_transparency_data:  # alpha band, or a palette / grey with a transparent colour
        rgba = image.convert('RGBA')
        return Image.alpha_composite(Image.new('RGBA', image.size, WHITE), rgba).convert('RGB')
    return image.convert('RGB')


def load_rgb(path):
    with Image.open(path) as image:
        return to_rgb(image)


def list_files(folder):
    """Every non-hidden file under folder, recursively (symlinked folders followed once)."""
    found, seen = [], set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a symlink loop, or a second link to a folder already walked
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        found.extend(os.path.join(root, f) for f in files if not f.startswith('.'))
    return sorted(found)


def why_unreadable(path, error):
    if os.path.getsize(path) == 0:
        return 'empty file (0 bytes)'
    if isinstance(error, UnidentifiedImageError):
        return 'not an image (PIL cannot identify the format)'
    return f'{type(error).__name__}: {error}'


def check_image(path):
    """(width, height), None for an image PIL fully decodes; (None, reason) for anything else."""
    if not os.path.isfile(path):  # never open a pipe or device, it could block forever
        return None, 'not a regular file (broken link, pipe or device)'
    try:
        with Image.open(path) as image:
            image.load()  # decode the pixels: a header alone does not reveal truncation
            return image.size, None
    except Exception as error:  # PIL raises many types on bad data (OSError, SyntaxError, ...)
        return None, why_unreadable(path, error)


def check_all(folder, files):
    """check_image over files in threads (PIL releases the GIL while decoding)."""
    with ThreadPoolExecutor() as pool:
        return list(progress(pool.map(check_image, files), total=len(files), unit='file',
                             desc=f'Checking images in {folder}'))


def class_folder(folder, path):
    """The first-level folder holding path, or None for a file directly in folder."""
    parts = os.path.relpath(path, folder).split(os.sep)
    return parts[0] if len(parts) > 1 else None


def find_labels(folder, paths):
    """(classes, targets) for a labelled tree: no image directly in folder and images in at
    least 2 first-level folders; else (None, all -1)."""
    owners = [class_folder(folder, p) for p in paths]
    classes = sorted(set(owners) - {None})
    if None in owners or len(classes) < 2:
        return None, np.full(len(paths), -1, dtype=np.int64)
    index = {name: i for i, name in enumerate(classes)}
    return classes, np.asarray([index[o] for o in owners], dtype=np.int64)


@dataclass(frozen=True)
class FolderScan:
    folder: str
    paths: list
    targets: np.ndarray
    classes: list
    skipped: list
    median_size: tuple
    n_files: int
    sizes: tuple = ()  # (width, height) of each image in `paths`


def scan_summary(scan):
    lines = [f"Scanned {scan.n_files:,} files in {scan.folder}: {len(scan.paths):,} images, "
             f"{len(scan.skipped):,} skipped" + (':' if scan.skipped else '.')]
    lines += [f"  {os.path.relpath(path, scan.folder)}: {reason}"
              for path, reason in scan.skipped[:SHOWN_SKIPPED]]
    if len(scan.skipped) > SHOWN_SKIPPED:
        lines.append(f"  ... and {len(scan.skipped) - SHOWN_SKIPPED:,} more")
    if scan.classes is not None:
        lines.append(f"Labelled tree: {len(scan.classes)} classes ({', '.join(scan.classes)})")
    return '\n'.join(lines)


@functools.cache  # the factory builds the same folder for several splits: scan once per process
def scan_folder(folder):
    """Check every file under the absolute path `folder`; print and return a FolderScan."""
    if not os.path.exists(folder):
        raise FolderError(f"image folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise FolderError(f"image folder {folder} is not a folder")
    files = list_files(folder)
    results = check_all(folder, files)
    paths = [f for f, (size, _) in zip(files, results) if size is not None]
    sizes = [size for size, _ in results if size is not None]
    skipped = [(f, reason) for f, (_, reason) in zip(files, results) if reason is not None]
    classes, targets = find_labels(folder, paths)
    median = tuple(int(round(v)) for v in np.median(sizes, axis=0)) if sizes else None
    scan = FolderScan(folder, paths, targets, classes, skipped, median, len(files), tuple(sizes))
    print(scan_summary(scan))
    if not paths:
        found = f"all {len(files):,} files were skipped" if files else "it holds no file"
        raise FolderError(f"no readable image in {folder}: {found}")
    return scan


def resize_shorter_side(image, size):
    """What the transforms' `Resize(size)` does (bilinear, antialiased); same size: no-op."""
    return TF.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)


def resized_shape(width, height, size):
    """(height, width) after resize_shorter_side (torchvision's rounding), without decoding."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def load_resized(path, size):
    return np.asarray(resize_shorter_side(load_rgb(path), size))


@functools.cache  # every dataset of the folder in a process shares one read-only set
def working_copies(folder, size):
    """The images of a folder resized to `size`: one uint8 N x H x W x 3 array when they all come
    out one size, else a list of H x W x 3 arrays; None when over the memory budget."""
    scan = scan_folder(folder)
    shapes = [resized_shape(w, h, size) for w, h in scan.sizes]
    needed = sum(h * w * 3 for h, w in shapes)
    if needed > WORKING_COPY_BUDGET:
        print(f"{len(scan.paths):,} images at size {size} need {needed / 2 ** 30:.1f} GiB, over "
              f"the {WORKING_COPY_BUDGET / 2 ** 30:.0f} GiB kept in memory: read from disk instead")
        return None
    with ThreadPoolExecutor() as pool:
        images = list(progress(pool.map(load_resized, scan.paths, [size] * len(scan.paths)),
                               total=len(scan.paths), unit='image', leave=False,
                               desc=f"Loading images at size {size}"))
    if len({image.shape for image in images}) == 1:
        images = np.stack(images)
        images.flags.writeable = False
    else:
        for image in images:
            image.flags.writeable = False
    return images


class ImageFolderDataset(ImageDataset):
    """Images of a user's folder; `skipped` lists the (path, reason) of files not used.

    `resize` (shorter side, as the transforms' Resize) serves every image at that size, from
    memory when it fits; `data` is then the N x H x W x 3 array when all come out one size."""

    def __init__(self, folder, transform=None, resize=None):
        super().__init__(transform)
        scan = scan_folder(os.path.abspath(os.path.expanduser(folder)))
        self.folder = scan.folder
        self.paths = list(scan.paths)
        self.targets = scan.targets.copy()
        self.classes = None if scan.classes is None else list(scan.classes)
        self.skipped = list(scan.skipped)
        self.median_size = scan.median_size
        self.resize = resize
        copies = working_copies(scan.folder, resize) if resize else None
        # `data` only when all images are one size; else a list in memory, or read from disk
        self.data = copies if isinstance(copies, np.ndarray) else None
        self.images = copies if isinstance(copies, list) else None

    @property
    def is_labelled(self):
        return self.classes is not None

    def load_image(self, index):
        if self.data is not None:
            return Image.fromarray(self.data[index])
        if self.images is not None:
            return Image.fromarray(self.images[index])
        image = load_rgb(self.paths[index])
        return resize_shorter_side(image, self.resize) if self.resize else image
