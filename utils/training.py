"""Pieces every training script shares: seeds, optimizer, schedule, resume, logging."""
import json
import os
import random

import numpy as np
import torch

from utils.checkpoint import atomic_save, load
from utils.distributed import get_rank, is_main_process
from utils.errors import UserError


def seed_everything(seed):
    """Seed every generator the run uses; called at each epoch start so a resumed run replays."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(cfg, epoch):
    return cfg.seed * 100_003 + epoch * 1_009 + get_rank()


def build_optimizer(cfg, parameters):
    kw = cfg.optimizer_kwargs
    parameters = list(parameters)
    # fused kernels: one launch per step instead of one per tensor, where the weights are on CUDA
    fused = {'fused': True} if parameters and parameters[0].is_cuda else {}
    if cfg.optimizer == 'sgd':
        return torch.optim.SGD(parameters, lr=kw.lr, momentum=kw.momentum,
                               weight_decay=kw.weight_decay, nesterov=kw.nesterov, **fused)
    if cfg.optimizer == 'adam':
        return torch.optim.Adam(parameters, lr=kw.lr, weight_decay=kw.weight_decay, **fused)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'")


def build_scheduler(cfg, optimizer):
    """Per-epoch schedule: cosine from lr down to lr * decay_rate**3, or constant."""
    if cfg.scheduler == 'cosine':
        eta_min = cfg.optimizer_kwargs.lr * cfg.scheduler_kwargs.lr_decay_rate ** 3
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs,
                                                          eta_min=eta_min)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


# Keys that may change between a run and its resumption without invalidating the checkpoint.
RESUMABLE_CHANGES = {'epochs', 'num_workers', 'device', 'root_dir', 'data_dir', 'imagenet_dir',
                     'paths', 'config_files', 'knn_every', 'fast_augmentation'}


def config_differences(old, new):
    keys = (set(old) | set(new)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if old.get(k) != new.get(k))


class ResumeConflict(UserError, RuntimeError):
    """A checkpoint exists but was written by a run with another configuration."""


def resume_state(cfg, checkpoint_path, device):
    """The checkpoint dict of an interrupted run of the same config, or None to start fresh."""
    if not os.path.isfile(checkpoint_path):
        return None
    state = load(checkpoint_path, device)
    changed = config_differences(state.get('config', {}), plain(cfg))
    if changed:
        raise ResumeConflict(
            f"{checkpoint_path} was written by a run with a different configuration "
            f"(changed: {', '.join(changed)}). Delete that file to start over, or restore "
            f"the old values to resume.")
    return state


def save_checkpoint(path, cfg, epoch, model, optimizer, scheduler, **extra):
    """The whole training state of a step after `epoch` epochs (rank 0 writes it)."""
    if is_main_process():
        atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                     'scheduler': scheduler.state_dict(), 'epoch': epoch, 'config': plain(cfg),
                     **extra}, path)


def restore_checkpoint(state, model, optimizer, scheduler):
    """Load a resume_state() dict into the training objects; returns the epoch to start at."""
    model.load_state_dict(state['model'])
    optimizer.load_state_dict(state['optimizer'])
    scheduler.load_state_dict(state['scheduler'])
    return state['epoch']


def plain(cfg):
    """EasyDict -> plain nested dicts/lists (what torch.load(weights_only=True) accepts)."""
    return json.loads(json.dumps(cfg))


class RunLog:
    """Prints one line per epoch and appends it as JSON to the step's log.jsonl (rank 0 only)."""

    def __init__(self, path):
        self.path = path

    def write(self, record):
        if not is_main_process():
            return
        print('  '.join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in record.items()), flush=True)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
