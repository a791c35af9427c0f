"""Where this code may write: only into folders it has checked, never through a link.

Every folder written (a step folder, eval/, an export, the feature cache's) goes through
check_output_folder: resolved (links followed), it must not lie inside a folder of the user's
images (the config's `folder`, eval's `--predict`), which protect() registers at the start of a
run. Files are then created new (a temporary file renamed over the old name, or O_NOFOLLOW), so
that a link found where an output goes is replaced or refused, never written through.
"""
import os
import stat

from utils.errors import UserError

_protected = {}  # real path -> what it is (for the message), e.g. 'the image folder'


class UnsafeOutput(UserError, RuntimeError):
    """An output that would be written inside the user's images or through a link."""


def protect(folder, what='the image folder'):
    """Nothing is written inside `folder` (links resolved) until reset_protected()."""
    _protected[os.path.realpath(folder)] = what


def reset_protected():
    _protected.clear()


def _inside(real, folder):
    return os.path.commonpath([real, folder]) == folder


def check_output_folder(folder):
    """The real path of `folder`, refused (UnsafeOutput) where it lies inside a protected
    folder: through a link of its own or of any folder above it."""
    real = os.path.realpath(folder)
    for protected, what in _protected.items():
        if _inside(real, protected):
            via = '' if real == os.path.abspath(folder) else f" (it resolves to {real})"
            raise UnsafeOutput(f"outputs would be written into {folder}{via}, inside {what} "
                               f"{protected}, where nothing is written: remove the link, or "
                               f"set root_dir (or the output folder) to a folder outside it")
    return real


def open_no_follow(path, flags, mode=0o666):
    """os.open with O_NOFOLLOW (and O_NONBLOCK: a FIFO never hangs it) in a checked folder; a
    link or anything but a regular file at `path` is an UnsafeOutput naming it."""
    check_output_folder(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as error:
        if os.path.islink(path):
            raise UnsafeOutput(f"{path} is a link (to {os.readlink(path)}): this code never "
                               f"writes through a link; delete the link and rerun") from error
        raise
    if not _is_regular(fd):
        os.close(fd)
        raise UnsafeOutput(f"{path} is not a regular file: this code writes only its own "
                           f"files; move it away and rerun")
    os.set_blocking(fd, True)
    return fd


def _is_regular(fd):
    return stat.S_ISREG(os.fstat(fd).st_mode)


def append_text(path, text):
    """Append to a file of ours (created if missing), never through a link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, 'a', encoding='utf-8') as f:
        f.write(text)
