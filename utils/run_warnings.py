"""Warnings a person must see: printed when they arise, kept in the step's folder
(warnings.json), and carried by eval.py into metrics.json, the export's summary.json and the
gallery. Each run of a step starts its list afresh, so the file always describes its last run."""
import json
import os

from termcolor import colored

from utils.checkpoint import atomic_write_text
from utils.distributed import is_main_process
from utils.text import plural

WARNINGS_NAME = 'warnings.json'
STEPS = ('pretext', 'scan', 'selflabel')


def start_warnings(step_dir):
    """An empty list for a new run of the step (rank 0)."""
    path = os.path.join(step_dir, WARNINGS_NAME)
    if is_main_process() and os.path.isfile(path) and not os.path.islink(path):
        os.remove(path)


def read_step_warnings(step_dir):
    path = os.path.join(step_dir, WARNINGS_NAME)
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding='utf-8') as f:
            entries = json.load(f)
    except (OSError, ValueError):  # a file cut by a kill: its warnings come back on a rerun
        return []
    return [e for e in entries if isinstance(e, dict) and 'message' in e]


def warn(step_dir, step, message, kind='warning'):
    """Print `message` and add it to the step's warnings.json. kind 'note' is information a
    person should still read (the image size chosen), 'warning' something likely wrong."""
    if not is_main_process():
        return
    text = f"{kind}: {message}"
    print(colored(text, 'yellow') if kind == 'warning' else text, flush=True)
    entries = read_step_warnings(step_dir)
    entries.append({'step': step, 'kind': kind, 'message': message})
    os.makedirs(step_dir, exist_ok=True)
    atomic_write_text(os.path.join(step_dir, WARNINGS_NAME),
                      json.dumps(entries, indent=2, ensure_ascii=False) + '\n')


def run_warnings(paths, up_to_step, kind='warning'):
    """The messages of one kind ('warning' or 'note') of the steps up to `up_to_step` (the one
    whose model is evaluated)."""
    steps = STEPS[:STEPS.index(up_to_step) + 1]
    return [e['message'] for step in steps for e in read_step_warnings(paths[f'{step}_dir'])
            if e.get('kind', 'warning') == kind]


def collapse_warnings(sizes, ids=None):
    """Messages about a clustering that uses fewer clusters than asked: empty clusters, and one
    cluster holding most of the images (over half, and over 1.5 times an even share). `ids`:
    the cluster id of each size (default 0, 1, ...)."""
    sizes = [int(s) for s in sizes]
    ids = list(range(len(sizes))) if ids is None else list(ids)
    total, count = sum(sizes), len(sizes)
    messages = []
    empty = [k for k, n in zip(ids, sizes) if n == 0]
    if empty and total:
        shown = ', '.join(map(str, empty[:20])) + (', ...' if len(empty) > 20 else '')
        messages.append(f"{plural(len(empty), 'cluster')} of {count} "
                        f"{'is' if len(empty) == 1 else 'are'} empty ({shown}): the images went "
                        f"into {plural(count - len(empty), 'cluster')}")
    if total and count > 1:
        biggest = max(range(count), key=lambda i: sizes[i])
        share = sizes[biggest] / total
        if share > 0.5 and share > 1.5 / count:
            messages.append(f"cluster {ids[biggest]} holds {share:.0%} of the images "
                            f"({sizes[biggest]:,} of {total:,}): the clustering may have "
                            f"collapsed onto few clusters")
    return messages
