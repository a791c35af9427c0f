"""What a run's images were: a cheap fingerprint of a dataset, and a comparison that says what
changed.

Neighbour indices and cached features point at images by position, so step 1 records the
fingerprint of the train and val splits beside the neighbours it mines (fingerprint.json), and
steps 2 and 3, eval and a resumed step 1 check the images they are given against it.

Datasets of files: the ordered paths (relative to the dataset's folder) with size and
modification time; renames, swaps, edits, additions and removals all show, without reading a
single pixel. Built-in datasets (arrays, md5-checked when downloaded): class, length, image shape
and hashes of the labels and of an evenly spaced sample of images.
"""
import hashlib
import json
import os

import numpy as np

from data import build_dataset, folder_check_record
from utils.checkpoint import PREVIOUS_SUFFIX, atomic_write_text
from utils.distributed import is_main_process
from utils.errors import UserError

FINGERPRINT_NAME = 'fingerprint.json'
SPLITS = ('train', 'val')
SAMPLED_IMAGES = 1024  # images hashed of a built-in dataset: its files are md5-checked anyway
SHOWN = 5              # file names shown per kind of change


class DatasetChanged(UserError, RuntimeError):
    """The images differ from those step 1 was run on."""


def _sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _file_entry(path, root):
    try:
        st = os.stat(path)
        return [os.path.relpath(path, root), st.st_size, st.st_mtime_ns]
    except OSError:  # gone since the dataset was listed
        return [os.path.relpath(path, root), None, None]


def dataset_fingerprint(dataset):
    """A JSON-able description of a dataset's images that changes when they do."""
    if dataset.paths is not None:
        paths = list(dataset.paths)
        root = getattr(dataset, 'folder', None) or (os.path.commonpath(paths) if paths else '')
        root = root if os.path.isdir(root) else os.path.dirname(root)
        return {'kind': 'files', 'root': root, 'count': len(paths),
                'files': [_file_entry(p, root) for p in paths]}
    fingerprint = {'kind': 'arrays', 'dataset': type(dataset).__name__, 'count': len(dataset),
                   'labels': _sha256(np.asarray(dataset.targets, dtype=np.int64))}
    if dataset.data is not None:
        step = max(1, len(dataset.data) // SAMPLED_IMAGES)
        fingerprint['image_shape'] = list(dataset.data.shape[1:])
        fingerprint['images'] = _sha256(dataset.data[::step])
    return fingerprint


def fingerprint_digest(fingerprint):
    """A short stable hash of a fingerprint (for cache keys)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _listed(pairs, show=lambda p: p):
    shown = ', '.join(show(p) for p in pairs[:SHOWN])
    return shown + (f", ... ({len(pairs)} in all)" if len(pairs) > SHOWN else '')


def _files(n):
    return f"{n} file{'s' if n != 1 else ''}"


def compare_files(old, new):
    """Differences between two lists of [path, size, mtime], in words."""
    old_stat = {p: (size, mtime) for p, size, mtime in old}
    new_stat = {p: (size, mtime) for p, size, mtime in new}
    removed = [p for p in old_stat if p not in new_stat]
    added = [p for p in new_stat if p not in old_stat]
    # a rename keeps size and modification time: pair removed and added files by them
    removed_by_stat = {}
    for p in removed:
        removed_by_stat.setdefault(old_stat[p], []).append(p)
    renamed = []
    for p in added:
        if new_stat[p][0] is not None and removed_by_stat.get(new_stat[p]):
            renamed.append((removed_by_stat[new_stat[p]].pop(0), p))
    removed = [p for p in removed if p not in {a for a, _ in renamed}]
    added = [p for p in added if p not in {b for _, b in renamed}]
    # a file whose stat is now another old file's: swapped or moved over within the folder
    path_of_old_stat = {stat: p for p, stat in old_stat.items()}
    changed = [p for p in old_stat if p in new_stat and old_stat[p] != new_stat[p]]
    swapped = [(p, path_of_old_stat[new_stat[p]]) for p in changed
               if path_of_old_stat.get(new_stat[p], p) != p]
    swapped_paths = {p for p, _ in swapped}
    missing = [p for p in changed if new_stat[p][0] is None]
    modified = [p for p in changed if p not in swapped_paths and new_stat[p][0] is not None]
    lines = []
    if renamed:
        lines.append(f"{_files(len(renamed))} renamed: "
                     + _listed(renamed, lambda pair: f"{pair[0]} -> {pair[1]}"))
    if swapped:
        lines.append(f"{_files(len(swapped))} now hold what another file held (swapped or "
                     f"moved within the folder): "
                     + _listed(swapped, lambda pair: f"{pair[0]} (was {pair[1]})"))
    if added:
        lines.append(f"{_files(len(added))} added: " + _listed(added))
    if removed:
        lines.append(f"{_files(len(removed))} removed: " + _listed(removed))
    if missing:
        lines.append(f"{_files(len(missing))} no longer readable: " + _listed(missing))
    if modified:
        lines.append(f"{_files(len(modified))} modified since step 1 (size or modification "
                     f"time): " + _listed(modified))
    if not lines and [e[0] for e in old] != [e[0] for e in new]:
        lines.append("the same files in another order")
    return lines


def compare(old, new):
    """What changed from fingerprint `old` to `new`, as a list of lines (empty: nothing)."""
    if old.get('kind') != new.get('kind'):
        return [f"the images are now {new.get('kind')} where they were {old.get('kind')}"]
    if old['kind'] == 'files':
        return compare_files(old['files'], new['files'])
    lines = []
    for key, what in (('dataset', 'dataset'), ('count', 'number of images'),
                      ('image_shape', 'image shape')):
        if old.get(key) != new.get(key):
            lines.append(f"{what} {new.get(key)}, was {old.get(key)}")
    if old['count'] == new['count']:
        lines += [f"the {what} changed" for key, what in (('labels', 'labels'),
                                                          ('images', 'images'))
                  if old.get(key) != new.get(key)]
    return lines


def split_fingerprints(cfg):
    """{split: fingerprint} of the train and val splits of a run; a split equal to an earlier
    one is stored as {'same_as': split} (a folder is both)."""
    found = {}
    for split in SPLITS:
        fingerprint = dataset_fingerprint(build_dataset(cfg, split))
        found[split] = next(({'same_as': s} for s, f in found.items() if f == fingerprint),
                            fingerprint)
    return found


def _resolved(fingerprints, split):
    value = fingerprints[split]
    return fingerprints[value['same_as']] if 'same_as' in value else value


def fingerprint_path(cfg):
    return os.path.join(cfg.paths.pretext_dir, FINGERPRINT_NAME)


def record_fingerprint(cfg):
    """Step 1: record the images of a fresh run; when a checkpoint of step 1 exists (a resume),
    check them against the record instead."""
    path = fingerprint_path(cfg)
    checkpoint = cfg.paths.pretext_checkpoint
    if os.path.isfile(path) and (os.path.exists(checkpoint)
                                 or os.path.exists(checkpoint + PREVIOUS_SUFFIX)):
        return check_fingerprint(cfg, resuming=True)
    fingerprints = split_fingerprints(cfg)
    if is_main_process():
        atomic_write_text(path, json.dumps(fingerprints))
        if cfg.train_db_name == 'folder':  # the later steps' processes skip decoding the files
            from data.image_folder import write_check_record
            write_check_record(build_dataset(cfg, 'train').folder, folder_check_record(cfg))


def damaged(path, why):
    return DatasetChanged(f"{path} is damaged ({why}): it records the images step 1 ran on. "
                          f"Delete it to go on without that check, or start over from step 1 "
                          f"(simclr.py)")


def read_recorded(path):
    try:
        with open(path, encoding='utf-8') as f:
            recorded = json.load(f)
    except (OSError, ValueError) as error:  # truncated, garbage, not UTF-8, a folder
        raise damaged(path, type(error).__name__) from None
    if not isinstance(recorded, dict):
        raise damaged(path, 'not a record of images')
    return recorded


def check_fingerprint(cfg, resuming=False):
    """Raise DatasetChanged, saying what changed, if the images of the run's splits are not the
    ones step 1 recorded; without a record (outputs of an older version), say so and go on."""
    path = fingerprint_path(cfg)
    if not os.path.lexists(path):
        print(f"no record of the images step 1 ran on ({path} is missing): cannot check that "
              f"they did not change since")
        return
    recorded = read_recorded(path)
    current = split_fingerprints(cfg)
    problems, explained = [], {}
    for split in SPLITS:
        try:
            old = _resolved(recorded, split)
            lines = compare(old, _resolved(current, split))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise damaged(path, 'not a record of images') from None
        new = _resolved(current, split)
        key = json.dumps(lines)
        if lines and key in explained:  # the same folder as another split: said already
            explained[key].append(split)
            continue
        if lines:
            explained[key] = [split]
            where = f" ({new['root']})" if new.get('kind') == 'files' else ''
            problems.append((explained[key], where, lines))
    if not problems:
        return
    text = '\n'.join(f"  {' and '.join(splits)} split{where}:\n" + '\n'.join(
        f"    {line}" for line in lines) for splits, where, lines in problems)
    outputs = os.path.dirname(cfg.paths.pretext_dir)
    action = ("resuming step 1 on other images would mix them up" if resuming else
              f"the neighbours and models in {outputs} belong to the old images")
    raise DatasetChanged(
        f"the images changed since step 1 (simclr.py) recorded them in {path}:\n{text}\n"
        f"{action[0].upper() + action[1:]}: restore the files, or start over from step 1 "
        f"(delete {outputs} and rerun simclr.py).")
