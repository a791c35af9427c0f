"""Atomic writes that survive kills and full disks, checkpoints read with clear errors, and
strict weight loading. torch is imported where a checkpoint is read or written, not here: the
atomic writes serve a re-export from saved predictions, which loads no torch (eval.py)."""
import errno
import os
import pickle
import shutil
import tempfile
import zipfile

import numpy as np

from utils.errors import UserError
from utils.outputs import check_output_folder

TEMP_PREFIX = '.tmp-'        # every temporary file this module writes starts so
PREVIOUS_SUFFIX = '.prev'    # the checkpoint a save replaced, kept as a fallback
# what the feature cache's writes of before named their temporaries (removed as ours too)
OLD_TEMP_SUFFIXES = ('.npy.tmp.npy', '.json.tmp')
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
UMASK = os.umask(0)  # read once, at import (no threads yet): mkstemp's 0600 is not the user's
os.umask(UMASK)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint or model file that cannot be read or written; the message says what to do."""


class UnsafeCheckpoint(CheckpointError, pickle.UnpicklingError):
    """A pickle holding objects that weights-only loading refuses (still an UnpicklingError,
    for code that tries another format on one)."""


def disk_full(error):
    """Whether `error` or an error it was raised from is a full disk or quota."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        error = error.__cause__ or error.__context__
    return False


def atomic_write(path, write, keep_previous=False, suffix='.pth'):
    """Call write(binary file) on a temporary file beside `path`, fsync, then rename it to `path`:
    a kill never leaves half a file there, and a failed write leaves the old file untouched.
    `keep_previous` moves the file it replaces to `path + '.prev'` first."""
    folder = os.path.dirname(os.path.abspath(path))
    check_output_folder(folder)
    os.makedirs(folder, exist_ok=True)
    if os.path.isdir(path) and not os.path.islink(path):
        raise CheckpointError(f"{path} is a folder where this code writes a file: move it "
                              f"away (or delete it, if it is not yours) and rerun")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # the mode any other file written here gets
        # through a Python file, so that a full disk is an OSError(ENOSPC), not a C++ message
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it the file
        if keep_previous and os.path.exists(path):
            os.replace(path, path + PREVIOUS_SUFFIX)
        os.replace(tmp, path)
    except Exception as error:
        if disk_full(error):
            free = shutil.disk_usage(folder).free
            raise CheckpointError(
                f"could not write {path}: the disk is full ({free / 2 ** 20:.0f} MiB free in "
                f"{folder}). Nothing was replaced: the previous {os.path.basename(path)}, if any, "
                f"is intact. Free some space and rerun the same command; it resumes from the "
                f"last checkpoint.") from error
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path, keep_previous=False):
    """torch.save through atomic_write."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f), keep_previous)


class _Stream:
    """A file seen by numpy as a stream: it then writes through Python (a full disk is an
    OSError with errno ENOSPC) instead of C's fwrite (an OSError with no errno)."""

    def __init__(self, f):
        self.write = f.write


def atomic_save_array(path, array):
    """np.save through atomic_write (its temporary named as every temporary of ours)."""
    atomic_write(path, lambda f: np.save(_Stream(f), array, allow_pickle=False), suffix='.npy')


def atomic_write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode('utf-8')), suffix='.txt')


def remove_temporaries(folder):
    """Delete the temporary files that killed writers left directly in `folder` (call it only
    while holding the folder's lock: no live writer's file is then among them)."""
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (name.startswith(TEMP_PREFIX) or name.startswith('features-')
                and name.endswith(OLD_TEMP_SUFFIXES)) and os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
            removed.append(name)
    return removed


def why_unloadable(path, error):
    """What is wrong with a file that torch.load could not read, in plain words."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(16)
    if size == 0:
        return "is empty (0 bytes)"
    zipped, pickled = head.startswith(b'PK\x03\x04'), head.startswith(b'\x80')
    if not (zipped or pickled):  # torch.save writes a zip archive (once, a bare pickle)
        return (f"is not a PyTorch checkpoint (those are zip archives written by torch.save; "
                f"this file starts with {head!r})")
    if isinstance(error, pickle.UnpicklingError) and 'Weights only' in str(error):
        return ("holds Python objects other than weights (tensors, numbers, text, lists, "
                "dicts); it is not loaded, since unpickling those could run any code")
    if zipped and not zipfile.is_zipfile(path):
        return f"is truncated: the zip archive ends early ({size:,} bytes), before its index"
    return f"is truncated or damaged ({type(error).__name__}: {error})"


def require(path, produced_by):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: run {produced_by} with the same "
                                f"--config_env first (it writes this file)")


def load(path, device='cpu'):
    """torch.load(weights_only=True); a file it cannot read is a CheckpointError saying why."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types on bad files (see why_unloadable)
        reason = why_unloadable(path, error)
        kind = UnsafeCheckpoint if reason.startswith('holds Python') else CheckpointError
        raise kind(f"{path} {reason}") from error


def load_with_fallback(path, device='cpu', report=print, repair=True):
    """The checkpoint in `path`, or the previous one (`path.prev`) when `path` is missing or
    cannot be read; None when there is neither. With `repair` (one process only), a good previous
    checkpoint is moved back to `path`, so that the next save keeps it as the fallback rather
    than the bad file."""
    previous = path + PREVIOUS_SUFFIX
    if not os.path.exists(path) and not os.path.exists(previous):
        return None
    problems = []
    for candidate in (path, previous):
        if not os.path.exists(candidate):
            problems.append(f"{candidate} does not exist")
            continue
        try:
            state = load(candidate, device)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if candidate == previous:
            report(f"{problems[0]}; resuming from the previous checkpoint {previous}")
            if repair:
                os.replace(previous, path)
        return state
    bad = [p for p in (path, previous) if os.path.exists(p)]
    raise CheckpointError(f"cannot resume: {'; '.join(problems)}. To start this step over, "
                          f"delete {'them' if len(bad) > 1 else 'it'}:\n  rm "
                          + ' '.join(f"'{p}'" for p in bad))


class WeightsMismatch(UserError, RuntimeError):
    pass


def load_state_dict_strict(model, state_dict, source, allowed_missing=(), allowed_unexpected=()):
    """Load weights; any missing or unexpected key not explicitly allowed is an error listing them.

    `allowed_*` are key prefixes (e.g. the projection head left behind by the pretext model).
    """
    model_keys = set(model.state_dict())
    given = set(state_dict)
    missing = sorted(k for k in model_keys - given if not k.startswith(tuple(allowed_missing)))
    unexpected = sorted(k for k in given - model_keys
                        if not k.startswith(tuple(allowed_unexpected)))
    shape_errors = sorted(f"{k}: file {tuple(state_dict[k].shape)} vs model "
                          f"{tuple(model.state_dict()[k].shape)}"
                          for k in model_keys & given
                          if state_dict[k].shape != model.state_dict()[k].shape)
    if missing or unexpected or shape_errors:
        lines = [f"weights in {source} do not match the model:"]
        for title, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                            ('shape mismatches', shape_errors)):
            if keys:
                shown = ', '.join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else '')
                lines.append(f"  {title} ({len(keys)}): {shown}")
        raise WeightsMismatch('\n'.join(lines))
    check_finite_weights(state_dict, source)
    model.load_state_dict({k: v for k, v in state_dict.items() if k in model_keys}, strict=False)


def check_finite_weights(state_dict, source):
    """Weights with NaN or infinite values load silently and crash a later step: refuse them,
    naming the file."""
    import torch

    bad = sorted(k for k, v in state_dict.items() if torch.is_tensor(v)
                 and v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        shown = ', '.join(bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5 else '')
        raise WeightsMismatch(f"weights in {source} are not finite (NaN or infinite values in "
                              f"{shown}): the file is damaged or its training diverged; use "
                              f"another file")
