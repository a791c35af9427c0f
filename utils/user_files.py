"""Files the user names (configs, --names, --corrections): read once, bounded, and only what is a
file or a pipe. A process substitution (`<(cat names.yml)`) is a pipe that can be read only
once, so its bytes are kept for the rest of the run; a named pipe nobody writes to, a folder or
a device is a message saying what it is, never a hang or a traceback."""
import os
import stat

from utils.errors import UserError

LIMIT = 64 << 20  # bytes: far more than any config, names or corrections file
_pipes = {}       # (path, inode) of a pipe already read -> its bytes


def _kind(mode):
    for test, name in ((stat.S_ISDIR, 'a folder'), (stat.S_ISCHR, 'a device'),
                       (stat.S_ISBLK, 'a device'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'not a regular file'


def read_user_file(path, what, error=UserError, limit=LIMIT):
    """The bytes of the user's file `path` (a `what`, e.g. 'names file'); `error` (a UserError
    class) names the problem otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    if stat.S_ISFIFO(st.st_mode) and (path, st.st_ino) in _pipes:
        return _pipes[path, st.st_ino]
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise error(f"{what} {path} is {_kind(st.st_mode)}, not a file: name the file itself")
    try:
        # O_NONBLOCK: opening a named pipe that nobody writes to returns at once (then EOF)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    try:
        os.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {path} is larger than {limit >> 20} MiB: not a {what} of ours")
    data = b''.join(chunks)
    if stat.S_ISFIFO(st.st_mode):
        if not data:
            raise error(f"{what} {path} is a pipe that nothing was written to: name a file")
        _pipes[path, st.st_ino] = data
    return data
