"""A step never replaces a model that another configuration wrote.

Each step writes into a folder derived from the config (utils.config.derive_paths), so two
experiments that derive the same folder (e.g. the same image folder trained with other settings)
would share it. Before any image is embedded or any weight trained, the step's existing
checkpoint and model are compared with the run's configuration; a difference in a key that
changes the result stops the run with the keys, the values and what to do.
"""
import os

from utils.checkpoint import PREVIOUS_SUFFIX
from utils.config import dotted_items
from utils.config_changes import ResumeConflict, config_differences, plain

SHOWN = 120  # characters of a changed value shown in the message


class ExperimentClash(ResumeConflict):
    """The step's folder holds a model or checkpoint of another configuration."""


def saved_config(path):
    """The config stored in a checkpoint or model file, read without loading the weights
    into memory (mmap); None when the file is missing, unreadable or holds none."""
    import torch  # here: a folder without model files (an export's) needs no torch

    try:
        state = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception:  # a damaged file: the resume's own checks report it with its fallback
        return None
    config = state.get('config') if isinstance(state, dict) else None
    return config if isinstance(config, dict) else None


def describe_changes(old, new, keys):
    """'seed: 0 -> 1' for each changed (dotted) key under the top-level `keys`."""
    old_flat = dotted_items({k: old.get(k) for k in keys})
    new_flat = dotted_items({k: new.get(k) for k in keys})
    lines = []
    for key in sorted(set(old_flat) | set(new_flat)):
        if old_flat.get(key) != new_flat.get(key):
            text = f"{key}: {old_flat.get(key)!r} -> {new_flat.get(key)!r}"
            lines.append(text if len(text) <= SHOWN else text[:SHOWN] + '...')
    return lines


def check_no_clash(cfg, step_dir):
    """Raise ExperimentClash when `step_dir` holds a model or checkpoint written by a run whose
    configuration differs from `cfg` in a key that changes the result (the keys a resume may
    change, utils.config_changes.RESUMABLE_CHANGES, excepted)."""
    current = plain(cfg)
    for name in ('checkpoint.pth.tar', 'checkpoint.pth.tar' + PREVIOUS_SUFFIX, 'model.pth.tar'):
        path = os.path.join(step_dir, name)
        old = saved_config(path) if os.path.isfile(path) else None
        if old is None:
            continue
        changed = config_differences(old, current)
        if current.get('num_classes') == 'auto':  # step 2 chooses K again (the same for the
            changed = [k for k in changed if k != 'num_classes']  # same data; resume checks it)
        if changed:
            details = '\n  '.join(describe_changes(old, current, changed))
            raise ExperimentClash(
                f"{path} was written by a run with a different configuration (changed: "
                f"{', '.join(changed)}):\n  {details}\nNothing was done. To keep that run and "
                f"start this one beside it, give this one other outputs (--opts "
                f"root_dir=PATH); to replace it, delete its folder: rm -r '{step_dir}' (and the "
                f"later steps' folders beside it); to continue it, run with its values.")
