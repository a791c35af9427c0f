"""One run at a time in an output folder: a lock file that names its holder.

The lock is a POSIX record lock (lockf) on `<folder>/.lock`, which the kernel drops when the
holder dies however it dies (SIGKILL included), so a killed run never blocks the next one; unlike
flock it is not shared with forked children (DataLoader workers), which may outlive a killed run
by seconds. (It is also dropped when this process closes any descriptor of the file: only this
module opens it.) The file holds the holder's
pid, host, process start and command, for the message a second run gets. A lock file that names
a live process of this host is respected even without the lock (another tool, an older
version); one whose process is gone is stale and taken over.
"""
import atexit
import datetime
import errno
import fcntl
import json
import os
import socket
import sys

from utils.checkpoint import remove_temporaries
from utils.errors import UserError
from utils.outputs import check_output_folder, open_no_follow
from utils.text import plural

LOCK_NAME = '.lock'
_held = {}  # real folder path -> the open lock file (the lock lives as long as it is open)


class FolderLocked(UserError, RuntimeError):
    """Another run holds the output folder."""


class OutputNotWritable(UserError, RuntimeError):
    """The output folder cannot be created or written."""


def process_start(pid):
    """The start time of process `pid` in clock ticks since boot (Linux), or None: with the
    pid, it tells a live holder from a new process that reuses a dead holder's pid."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return int(f.read().rsplit(')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no pid at all (10**20)
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def this_process():
    return {'pid': os.getpid(), 'host': socket.gethostname(), 'start': process_start(os.getpid()),
            'since': datetime.datetime.now().isoformat(timespec='seconds'),
            'command': ' '.join([os.path.basename(sys.executable)] + sys.argv)}


def read_holder(f):
    f.seek(0)
    try:
        holder = json.loads(f.read(1 << 16) or 'null')  # bounded: ours are short
    except ValueError:
        return None
    if not (isinstance(holder, dict) and isinstance(holder.get('pid'), int)
            and not isinstance(holder['pid'], bool) and 0 < holder['pid'] < 2 ** 31):
        return None  # not a lock file of ours (or a damaged one): no holder to respect
    return holder


def holder_running(holder):
    """Whether a lock file's holder, on this host, is still the process that wrote it."""
    if holder is None or holder.get('host') != socket.gethostname():
        return False  # another host's process cannot be checked here: the lock decides
    if holder['pid'] == os.getpid() or not pid_alive(holder['pid']):
        return False
    recorded, now = holder.get('start'), process_start(holder['pid'])
    return recorded is None or now is None or recorded == now


def describe(holder):
    if holder is None:
        return 'a process that left no details'
    return (f"pid {holder['pid']} on {holder.get('host', '?')}, running since "
            f"{holder.get('since', '?')}: {holder.get('command', '?')}")


def locked(folder, holder):
    return FolderLocked(f"another run is writing {folder} ({describe(holder)}). Wait for it to "
                        f"end or stop it; if no such run is going on, delete "
                        f"{os.path.join(folder, LOCK_NAME)}")


def make_folder(folder, hint):
    """Create `folder` and open its lock file (never through a link, never a FIFO)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = open_no_follow(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT)
    except OSError as error:
        raise OutputNotWritable(f"cannot write outputs into {folder}: {error.strerror}. "
                                f"{hint}".rstrip()) from error
    return os.fdopen(fd, 'r+', encoding='utf-8', errors='replace')


def is_lock_file(path):
    """Whether `path` is a lock file as this module writes them (a regular file, not a link,
    naming its holder): one left by a killed run may be taken over; any other file is not ours."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, encoding='utf-8', errors='replace') as f:
        return read_holder(f) is not None


def lock_output_folder(folder, hint='', clean=True):
    """Hold `folder`'s lock until release_output_locks() or exit (a second call in the same
    process is a no-op), then (with `clean`) remove the temporary files that killed runs left
    there. Another live holder: FolderLocked naming it. `hint` says how to choose another
    folder."""
    real = check_output_folder(folder)
    if real in _held:
        return
    path = os.path.join(real, LOCK_NAME)
    while True:
        f = make_folder(real, hint)
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):  # no locks on this file system
                print(f"cannot lock {real} ({error.strerror}): only the pid in {path} guards "
                      f"against a second run", flush=True)
                break
            holder = read_holder(f)
            f.close()
            raise locked(real, holder)
        # a releasing holder may have unlinked the file between our open and our lock
        if os.path.exists(path) and os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
            break
        f.close()
    previous = read_holder(f)
    if holder_running(previous):
        f.close()
        raise locked(real, previous)
    if previous is not None and previous.get('pid') != os.getpid():
        print(f"taking over the lock of {real} from a run that is no longer running "
              f"({describe(previous)})", flush=True)
    f.seek(0)
    f.truncate()
    f.write(json.dumps(this_process()))
    f.flush()
    _held[real] = f
    removed = remove_temporaries(real) if clean else []
    if removed:
        print(f"removed {plural(len(removed), 'temporary file')} left by a killed run in {real}: "
              f"{', '.join(removed)}", flush=True)


def is_held(folder):
    """Whether this process holds `folder`'s lock."""
    return os.path.realpath(folder) in _held


def release_output_lock(folder):
    """Give up `folder`'s lock if this process holds it (the file is removed)."""
    real = os.path.realpath(folder)
    f = _held.pop(real, None)
    if f is None:
        return
    try:
        os.remove(os.path.join(real, LOCK_NAME))  # before the lock goes: see lock_output_folder
    except FileNotFoundError:
        pass
    f.close()


def release_output_locks():
    """Give up every lock this process holds (the files are removed)."""
    for real in list(_held):
        release_output_lock(real)


atexit.register(release_output_locks)
