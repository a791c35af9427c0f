"""Path questions shared by every layer."""
import hashlib
import os


def is_inside(path, folder):
    """Whether `path` is `folder` or lies under it (links resolved): where nothing is written."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def file_digest(path):
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()
