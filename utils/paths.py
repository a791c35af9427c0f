"""Path questions shared by every layer."""
import os


def is_inside(path, folder):
    """Whether `path` is `folder` or lies under it (links resolved): where nothing is written."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder
