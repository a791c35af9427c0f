"""Atomic checkpoints and strict weight loading."""
import os
import tempfile

import torch

from utils.errors import UserError


def atomic_save(obj, path):
    """Write to a temporary file in the same folder, then rename: a kill never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.pth')
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path, device='cpu'):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    return torch.load(path, map_location=device, weights_only=True)


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
    model.load_state_dict({k: v for k, v in state_dict.items() if k in model_keys}, strict=False)
