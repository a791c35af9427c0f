"""Model files in any of the formats this project reads: its own, and the original SCAN
repository's (the authors' released checkpoints).

Ours: {'model': state dict, 'config': ..., 'head': best head}. The original's (torch.save):
pretext, a plain state dict of the contrastive model; SCAN, {'model': state dict, 'head': index
of the best head}; self-label, a plain state dict of the one-head clustering model. Its
ResNet-18s (CIFAR and STL) name each block's projection `shortcut.0/1` where torchvision, whose
blocks we use, says `downsample.0/1`; every other name is the same (ResNet-50 is torchvision's in
both).
"""
from collections import namedtuple

import numpy as np
import torch

from utils.checkpoint import load
from utils.errors import UserError

ModelFile = namedtuple('ModelFile', 'state head config')

# The original saves the best head as np.argmin's numpy integer; numpy 1 pickles its scalars
# under numpy.core, numpy 2 under numpy._core. Allowed for weights_only loading, nothing else.
NUMPY_SCALAR_GLOBALS = [(np._core.multiarray.scalar, 'numpy.core.multiarray.scalar'),
                        np._core.multiarray.scalar, np.dtype, type(np.dtype(np.int64)),
                        type(np.dtype(np.int32))]


class NotAModelFile(UserError, ValueError):
    pass


def original_to_ours(state_dict):
    """Parameter names of the original code -> ours (a no-op for our own files)."""
    if state_dict and all(k.startswith('module.') for k in state_dict):  # saved from DataParallel
        state_dict = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    return {k.replace('.shortcut.', '.downsample.'): v for k, v in state_dict.items()}


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _head(head, path):
    """The best head's index as saved (an int, or the original's numpy or tensor integer)."""
    if isinstance(head, (bool, float, str)) or not (isinstance(head, (int, np.integer)) or (
            torch.is_tensor(head) and head.numel() == 1 and not head.is_floating_point())):
        raise NotAModelFile(f"{path} is damaged: its 'head' must be a head index, got a "
                            f"{type(head).__name__}; rerun the step that wrote it")
    return int(head)


def _config(config, path):
    """The saved config: a mapping whose transform settings eval reuses, or None."""
    if config is None:
        return None
    transform = config.get('transformation_kwargs') if isinstance(config, dict) else None
    if not isinstance(config, dict) or (transform is not None and not (
            isinstance(transform, dict) and isinstance(transform.get('normalize'), dict)
            and {'crop_size', 'resize'} <= set(transform))):
        raise NotAModelFile(f"{path} is damaged: its saved 'config' is not the mapping this "
                            f"code writes (with transformation_kwargs and their normalize); "
                            f"rerun the step that wrote it")
    return config


def read_model_file(path):
    """ModelFile(state dict in our names, head index, config or None) of a model file."""
    with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
        saved = load(path)
    if isinstance(saved, dict) and _is_state_dict(saved.get('model')):
        state, head, config = saved['model'], _head(saved.get('head', 0), path), \
            _config(saved.get('config'), path)
    elif _is_state_dict(saved):
        state, head, config = saved, 0, None
    else:
        raise NotAModelFile(f"{path} is not a model file: expected a state dict, or a dict with "
                            f"'model' (a state dict) and 'head' (this project's files and the "
                            f"original SCAN code's)")
    return ModelFile(original_to_ours(state), head, config)
