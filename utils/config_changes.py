"""Which differences between two configurations matter: a resume (utils/training.py) and a step
that finds another run's model in its folder (utils/experiment_clash.py) compare the same way.
Imports no torch: eval.py's re-export from saved predictions checks its folder with it."""
import json

from utils.errors import UserError

# Keys that may change between a run and its resumption without invalidating the checkpoint:
# where things are, how fast they run, and what happens after training (mining).
RESUMABLE_CHANGES = {'epochs', 'num_workers', 'device', 'root_dir', 'data_dir', 'imagenet_dir',
                     'paths', 'config_files', 'knn_every', 'knn_k', 'fast_augmentation',
                     'num_neighbors', 'num_neighbors_val', 'mining_index', 'mining_ivf_kwargs',
                     # read by selflabel.py --corrections alone, which checks them itself
                     'refine_epochs', 'refine_lr', 'correction_weight'}


def config_differences(old, new):
    keys = (set(old) | set(new)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if old.get(k) != new.get(k))


class ResumeConflict(UserError, RuntimeError):
    """A checkpoint exists but was written by a run with another configuration."""


def plain(cfg):
    """EasyDict -> plain nested dicts/lists (what torch.load(weights_only=True) accepts)."""
    return json.loads(json.dumps(cfg))
