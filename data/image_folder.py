"""A user's own folder of images: a labelled ImageFolder-style tree or any unlabeled tree.

Every file is opened and decoded once, up front, so that a corrupt or truncated image is reported
by name before training rather than crashing a worker hours in. Step 1 records each file's
result (write_check_record); later steps decode only the files changed since. Extensions are not trusted either
way. Nothing in the folder is ever written, moved or deleted.

Hostile input: an image's size is read from its header before any decoding, and images over
MAX_PIXELS pixels or more elongated than MAX_ASPECT:1 are skipped with the reason (a few KB of
PNG can decode into gigabytes). Links are followed, to files and folders, inside the folder or
out of it; each real file is used once (a second link or hard link to it is listed as skipped),
broken links are skipped. File and class-folder names are kept whatever their bytes;
`printable_path` gives the text to show or write for them.

With `resize`, images come out with their shorter side scaled to it as the transforms'
`Resize(resize)` does (which then has nothing left to do), and are kept in memory at that size
when they fit in WORKING_COPY_BUDGET bytes: a photo is decoded once per process, not once per
epoch and view, and the check of the folder makes these working copies in the same decode. A
JPEG is decoded at a reduced DCT scale (PIL's draft, never below twice the target size) before
the resize: a 12-megapixel photo for a 224-pixel copy decodes at 1/4 scale, 16x fewer pixels.
"""
import contextlib
import functools
import json
import os
import re
import stat
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.base import ImageDataset
from utils.checkpoint import atomic_write_text
from utils.errors import UserError
from utils.progress import progress
from utils.text import path_from_printable, printable_path, printable_relpath  # noqa: F401

SHOWN_SKIPPED = 20
SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I')
WHITE = (255, 255, 255, 255)
WORKING_COPY_BUDGET = 2 * 1024 ** 3  # bytes of resized images kept in memory per folder and size
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # 89,478,485 (PIL's decompression-bomb level): ~340 MB RGBA
MAX_ASPECT = 100  # longer side / shorter side: resizing the shorter side multiplies the longer
LARGE_PIXELS = 4096 * 4096  # images over this are decoded one at a time, not one per thread
LARGE_DECODE = threading.Lock()


class FolderError(UserError, ValueError):
    """The image folder is missing, not a folder, or holds no readable image."""


class ImageRejected(UserError, ValueError):
    """A file that is not used as an image; the message is the reason."""


# ----------------------------------------------------------------------------- decoding

def size_problem(width, height):
    """Why an image of this size is not used (too many pixels, too elongated); None if it is."""
    if min(width, height) < 1:
        return f"no pixels ({width:,} x {height:,})"
    if width * height > MAX_PIXELS:
        return (f"{width:,} x {height:,} = {width * height:,} pixels, over the limit of "
                f"{MAX_PIXELS:,}")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT:
        return f"{width:,} x {height:,} pixels: aspect ratio 1:{ratio:,.0f}, over 1:{MAX_ASPECT}"
    return None


def bomb_reason(error):
    """The reason for PIL's DecompressionBombError (raised by Image.open over 2 x MAX_PIXELS)."""
    found = re.search(r'\((\d+) pixels\)', str(error))
    pixels = f"{int(found[1]):,} pixels" if found else "more than twice as many pixels"
    return f"{pixels}, over the limit of {MAX_PIXELS:,}"


def not_a_file_reason(path):
    """Why path is not a regular file that can be opened; None when it is one."""
    try:
        mode = os.stat(path).st_mode  # follows links
    except FileNotFoundError:
        if os.path.islink(path):
            return f"broken link (to {printable_path(os.readlink(path))})"
        return "no longer exists"
    except OSError as error:  # a link loop, a permission problem on the way
        return f"cannot be read: {error.strerror}"
    if stat.S_ISREG(mode):
        return None
    kind = ('a folder' if stat.S_ISDIR(mode) else 'a pipe' if stat.S_ISFIFO(mode)
            else 'a socket' if stat.S_ISSOCK(mode) else 'a device')
    return f"not a regular file ({kind})"  # never opened: reading a pipe could block forever


@contextlib.contextmanager
def open_image(path):
    """The PIL image of a file, with only its header read, when its size is within the limits;
    else ImageRejected with the reason. Large images are decoded one at a time."""
    reason = not_a_file_reason(path)
    if reason:
        raise ImageRejected(reason)
    try:
        with warnings.catch_warnings(action='ignore', category=Image.DecompressionBombWarning):
            # PIL's warning over MAX_PIXELS would only repeat the reason given below. (The filter
            # is process-wide: at worst, with threads, it outlives this call, which is harmless.)
            image = Image.open(path)
        with image:
            reason = size_problem(*image.size)
            if reason:
                raise ImageRejected(reason)
            large = image.width * image.height > LARGE_PIXELS
            with LARGE_DECODE if large else contextlib.nullcontext():
                yield image
    except Image.DecompressionBombError as error:
        raise ImageRejected(bomb_reason(error)) from error


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
    """The image (its first frame) at full size as RGB; ImageRejected when it is not usable."""
    with open_image(path) as image:
        return to_rgb(image)


def load_thumbnail(path, max_side):
    """The image as RGB with its longer side at most max_side (never enlarged), for thumbnails
    and grids: JPEGs are decoded at a reduced scale (PIL's draft), other formats reduced right
    after decoding. ImageRejected with the reason when the file is not a usable image."""
    with open_image(path) as image:
        image.draft(None, (2 * max_side, 2 * max_side))  # JPEG: DCT scaling, >= 2x the target
        image = to_rgb(image)
    image.thumbnail((max_side, max_side), reducing_gap=2.0)
    return image


# ----------------------------------------------------------------------------- listing

def walk(top, onerror):
    """os.walk(top, followlinks=True) top-down, without recursion: Python 3.11's os.walk
    recurses once per level (a RecursionError in a folder 1,000 levels deep)."""
    stack = [top]
    while stack:
        root = stack.pop()
        try:
            with os.scandir(root) as entries:
                entries = list(entries)
        except OSError as error:
            onerror(error)
            continue
        dirs, files = [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links, as followlinks=True
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield root, dirs, files
        stack.extend(os.path.join(root, d) for d in reversed(dirs))


def list_files(folder):
    """(files, skipped) under folder, recursively, hidden names left out, links to files and
    folders followed: each folder is walked once (a link loop, or a second link to a folder
    already walked, is listed in skipped with the reason), as is one it cannot list."""
    found, skipped, walked = [], [], {}

    def unlistable(error):
        skipped.append((error.filename, f"folder cannot be listed: {error.strerror}"))

    for root, dirs, files in walk(folder, onerror=unlistable):
        real = os.path.realpath(root)
        if real in walked:
            already = printable_relpath(walked[real], folder)
            skipped.append((root, f"link to a folder already included ({already})"))
            dirs[:] = []
            continue
        walked[real] = root
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        found.extend(os.path.join(root, f) for f in files if not f.startswith('.'))
    return sorted(found), skipped


def regular_files(folder, files):
    """(files, skipped): the regular files among `files`, each real file once; a second path to
    the same file (a link or hard link) is skipped, keeping a path that is not a link."""
    kept, skipped = {}, []
    for path in sorted(files, key=lambda p: (os.path.islink(p), p)):
        reason = not_a_file_reason(path)
        if reason:
            skipped.append((path, reason))
            continue
        info = os.stat(path)
        key = (info.st_dev, info.st_ino)
        if key in kept:
            same = printable_relpath(kept[key], folder)
            skipped.append((path, f"the same file as {same} (a link or hard link to it)"))
            continue
        kept[key] = path
    return sorted(kept.values()), skipped


def why_unreadable(path, error):
    if isinstance(error, ImageRejected):
        return str(error)
    if isinstance(error, PermissionError):
        return 'cannot be read: permission denied'
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == 0:
            return 'empty file (0 bytes)'
    if isinstance(error, UnidentifiedImageError):
        return 'not an image (PIL cannot identify the format)'
    return printable_path(f'{type(error).__name__}: {error}')  # PIL may quote the file's bytes


def check_image(path):
    """(width, height), None for an image within the limits that PIL fully decodes and converts;
    (None, reason) for anything else."""
    size, _, reason = check_and_copy(path, None)
    return size, reason


def decode_working_copy(image, size):
    """The opened image resized to `size` (shorter side) as the transforms' Resize(size) would:
    a JPEG is decoded at a reduced DCT scale first, never below twice the target (PIL's draft)."""
    height, width = resized_shape(*image.size, size)
    image.draft(None, (2 * width, 2 * height))
    image = to_rgb(image)  # decodes every byte of the file: a truncated one fails here
    # torchvision here, not at the top: listing and checking a folder need no torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    # the target shape from the full size: a drafted size may round differently
    return np.asarray(TF.resize(image, [height, width], interpolation=InterpolationMode.BILINEAR,
                                antialias=True))


def check_and_copy(path, size):
    """(width, height), working copy, None for a usable image: the copy at `size` (shorter side)
    made in the same decode as the check (None without a size); (None, None, reason) else."""
    try:
        with open_image(path) as image:
            dims = image.size
            if size is not None:
                return dims, decode_working_copy(image, size), None
            image.draft(None, (1, 1))  # JPEG: decode at 1/8 scale, still reading every byte
            image.load()  # decode the pixels: a header alone does not reveal truncation
            to_rgb(image.crop((0, 0, 1, 1)))  # a mode PIL cannot convert fails here, not later
            return dims, None, None
    except Exception as error:  # PIL raises many types on bad data (OSError, SyntaxError, ...)
        return None, None, why_unreadable(path, error)


class CopyBudget:
    """Bytes of working copies made so far, across threads; once over WORKING_COPY_BUDGET no
    more are made (memory stays bounded) and the folder is read from disk instead."""

    def __init__(self):
        self.used, self.lock = 0, threading.Lock()

    def take(self, nbytes):
        with self.lock:
            self.used += nbytes
            return self.used <= WORKING_COPY_BUDGET

    @property
    def exceeded(self):
        return self.used > WORKING_COPY_BUDGET


def check_all(folder, files, size=None):
    """check_and_copy over files in threads (PIL releases the GIL while decoding): a list of
    ((width, height) or None, reason or None) and, with `size`, the working copies (None when
    they do not all fit in WORKING_COPY_BUDGET)."""
    budget = CopyBudget()

    def one(path):
        dims, copy, reason = check_and_copy(path, size if not budget.exceeded else None)
        if copy is not None and not budget.take(copy.nbytes):
            copy = None
        return dims, copy, reason

    desc = f'Checking images in {printable_path(folder)}' + (f' (size {size})' if size else '')
    with ThreadPoolExecutor() as pool:
        results = list(progress(pool.map(one, files), total=len(files), unit='file', desc=desc))
    copies = None if size is None or budget.exceeded else [c for _, c, _ in results
                                                           if c is not None]
    return [(dims, reason) for dims, _, reason in results], copies


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
    # the names are only shown and written: as text, whatever the bytes of the folder's name
    return [printable_path(c) for c in classes], np.asarray([index[o] for o in owners],
                                                               dtype=np.int64)


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
    checked: tuple = ()  # (path, stat key, (width, height) or None, reason or None) per decode


def scan_summary(scan):
    lines = [f"Scanned {scan.n_files:,} files in {printable_path(scan.folder)}: "
             f"{len(scan.paths):,} images, {len(scan.skipped):,} skipped"
             + (':' if scan.skipped else '.')]
    lines += [f"  {printable_relpath(path, scan.folder)}: {reason}"
              for path, reason in scan.skipped[:SHOWN_SKIPPED]]
    if len(scan.skipped) > SHOWN_SKIPPED:
        lines.append(f"  ... and {len(scan.skipped) - SHOWN_SKIPPED:,} more")
    if scan.classes is not None:
        lines.append(f"Labelled tree: {len(scan.classes)} classes ({', '.join(scan.classes)})")
    return '\n'.join(lines)


_SCANS = {}  # folder -> its FolderScan: the factory builds one folder for several splits
_FIRST_COPIES = {}  # (folder, size) -> the working copies made by the folder's check
RECORD_VERSION = 1


def scan_folder(folder, size=None, record=None):
    """Check every file under the absolute path `folder` once per process; print and return a
    FolderScan. With `size`, that check also makes each image's working copy at that size (one
    decode per file), which working_copies(folder, size) then returns. `record`: a file of our
    outputs (write_check_record) whose results are reused for the files unchanged since."""
    if folder not in _SCANS:
        _SCANS[folder], copies = check_folder(folder, size, record)
        if copies is not None:
            _FIRST_COPIES[(folder, size)] = copies
    return _SCANS[folder]


def forget_scans():
    """Drop every scan and working copy: what a new process sees (tests)."""
    _SCANS.clear()
    _FIRST_COPIES.clear()
    working_copies.cache_clear()


scan_folder.cache_clear = forget_scans  # as a functools.cache would offer


def stat_key(path):
    """What says a file is unchanged without reading it: size, modification time, inode (None
    when it is gone: its check then says so)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def read_check_record(record, folder):
    """{path: [stat key..., width, height, reason]} from a record of this folder; {} if none."""
    try:
        with open(record) as f:
            saved = json.load(f)
        if saved['version'] != RECORD_VERSION or saved['folder'] != folder:
            return {}
        return {os.path.join(folder, name): entry for name, entry in saved['files'].items()}
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not ours to trust
        return {}


def write_check_record(folder, record):
    """Keep the check results of a scanned folder in `record` (a file of the run's outputs,
    written atomically), so that the next steps' processes need not decode its files again."""
    scan = _SCANS[folder]
    files = {os.path.relpath(path, folder): [*key, *(dims or (None, None)), reason]
             for path, key, dims, reason in scan.checked}
    atomic_write_text(record, json.dumps({'version': RECORD_VERSION, 'folder': folder,
                                          'files': files}))  # never through a link


def check_files(folder, files, size, record):
    """check_all over the files that the record does not hold unchanged; (results, copies),
    copies only when every file was decoded now."""
    known = read_check_record(record, folder) if record else {}
    keys = {path: stat_key(path) for path in files}
    reused = {path: known[path] for path in files
              if keys[path] is not None and path in known and known[path][:3] == keys[path]}
    decoded, copies = check_all(folder, [p for p in files if p not in reused], size)
    decoded = iter(decoded)
    results = [(tuple(reused[p][3:5]) if reused[p][3] is not None else None, reused[p][5])
               if p in reused else next(decoded) for p in files]
    if reused:
        print(f"{len(reused):,} files unchanged since checked ({printable_path(record)})")
    checked = tuple((p, keys[p], dims, reason) for p, (dims, reason) in zip(files, results))
    return results, (None if reused else copies), checked


def check_folder(folder, size, record=None):
    """(FolderScan, working copies at `size` or None): see scan_folder."""
    if not os.path.exists(folder):
        raise FolderError(f"image folder {printable_path(folder)} does not exist")
    if not os.path.isdir(folder):
        raise FolderError(f"image folder {printable_path(folder)} is not a folder")
    listed, unlisted = list_files(folder)
    files, not_files = regular_files(folder, listed)
    results, copies, checked = check_files(folder, files, size, record)
    paths = [f for f, (dims, _) in zip(files, results) if dims is not None]
    sizes = [dims for dims, _ in results if dims is not None]
    skipped = sorted(unlisted + not_files + [(f, reason) for f, (_, reason) in zip(files, results)
                                             if reason is not None])
    classes, targets = find_labels(folder, paths)
    median = tuple(int(round(v)) for v in np.median(sizes, axis=0)) if sizes else None
    n_files = len(listed) + len(unlisted)
    scan = FolderScan(folder, paths, targets, classes, skipped, median, n_files, tuple(sizes),
                      checked)
    print(scan_summary(scan))
    if not paths:
        found = f"all {n_files:,} files were skipped" if n_files else "it holds no file"
        raise FolderError(f"no readable image in {printable_path(folder)}: {found}")
    return scan, copies


def resized_shape(width, height, size):
    """(height, width) after the transforms' Resize(size) (torchvision's rounding), without
    decoding."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def load_resized(path, size):
    """A file's working copy at `size`, read from disk (see decode_working_copy)."""
    with open_image(path) as image:
        return decode_working_copy(image, size)


def centre_square(image, size):
    """The size x size centre of an H x W x 3 array, as the transforms' CenterCrop(size)."""
    top, left = int(round((image.shape[0] - size) / 2)), int(round((image.shape[1] - size) / 2))
    return image[top:top + size, left:left + size]


@functools.cache  # every dataset of the folder in a process shares one read-only set
def working_copies(folder, size, square=False):
    """The images of a folder resized to `size` (and with `square`, cropped to their centre
    size x size): one uint8 N x H x W x 3 array when they all come out one size, else a list of
    H x W x 3 arrays; None when over the memory budget."""
    scan = scan_folder(folder, size)
    images = _FIRST_COPIES.pop((folder, size), None)
    if images is None:
        shapes = [resized_shape(w, h, size) for w, h in scan.sizes]
        needed = sum(h * w * 3 for h, w in shapes)
        if needed > WORKING_COPY_BUDGET:
            print(f"{len(scan.paths):,} images at size {size} need {needed / 2 ** 30:.1f} GiB, "
                  f"over the {WORKING_COPY_BUDGET / 2 ** 30:.0f} GiB kept in memory: read from "
                  f"disk instead")
            return None
        with ThreadPoolExecutor() as pool:
            images = list(progress(pool.map(load_resized, scan.paths, [size] * len(scan.paths)),
                                   total=len(scan.paths), unit='image', leave=False,
                                   desc=f"Loading images at size {size}"))
    if square:
        images = [centre_square(image, size) for image in images]
    if len({image.shape for image in images}) == 1:
        images = np.stack(images)
        images.flags.writeable = False
    else:
        for image in images:
            image.flags.writeable = False
    return images


class ImageFolderDataset(ImageDataset):
    """Images of a user's folder; `skipped` lists the (path, reason) of files not used.

    `paths` (and the paths in `skipped`) are real paths, as os.listdir gives them (a name that is
    not UTF-8 holds surrogate escapes): open files with them, and write them as text with
    printable_path (`printable_paths`). `classes` and the reasons are printable text already.
    `resize` (shorter side, as the transforms' Resize) serves every image at that size, from
    memory when it fits; `data` is then the N x H x W x 3 array when all come out one size.
    `square` (with `resize`) crops each to its centre resize x resize once, so that they are all
    one size: what the fast data path needs (fast_augmentation)."""

    def __init__(self, folder, transform=None, resize=None, square=False, record=None):
        super().__init__(transform)
        scan = scan_folder(os.path.abspath(os.path.expanduser(folder)), resize, record)
        self.folder = scan.folder
        self.paths = list(scan.paths)
        self.targets = scan.targets.copy()
        self.classes = None if scan.classes is None else list(scan.classes)
        self.skipped = list(scan.skipped)
        self.median_size = scan.median_size
        self.resize = resize
        self.square = square and bool(resize)
        self.copies_made = False

    def working_copies(self):
        """Made when first needed (steps that read only cached features never decode)."""
        if not self.resize:
            return None
        self.copies_made = True
        return working_copies(self.folder, self.resize, self.square)

    @property
    def data(self):
        """The N x H x W x 3 array when all images come out one size, else None."""
        copies = self.working_copies()
        return copies if isinstance(copies, np.ndarray) else None

    @property
    def images(self):
        """The images as a list in memory when they are of several sizes, else None."""
        copies = self.working_copies()
        return copies if isinstance(copies, list) else None

    def __getitem__(self, index):
        self.working_copies()  # a loader goes over every image: all of them in memory first
        return super().__getitem__(index)

    @property
    def printable_paths(self):
        return [printable_path(p) for p in self.paths]

    @property
    def is_labelled(self):
        return self.classes is not None

    def load_image(self, index):
        """The image at `resize`: from memory once the copies are made (or were, by the check);
        else from its file alone (a few images for a figure), the same pixels."""
        if self.copies_made or (self.folder, self.resize) in _FIRST_COPIES:
            copies = self.working_copies()
            if copies is not None:
                return Image.fromarray(copies[index])
        if self.resize:
            image = load_resized(self.paths[index], self.resize)
            return Image.fromarray(centre_square(image, self.resize) if self.square else image)
        return load_rgb(self.paths[index])
