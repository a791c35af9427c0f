"""Pieces every training script shares: seeds, optimizer, schedule, resume, logging."""
import json
import os
import random
import warnings

import numpy as np
import torch

from utils.checkpoint import PREVIOUS_SUFFIX, atomic_save, atomic_write_text, load_with_fallback
from utils.config_changes import ResumeConflict, config_differences, plain  # noqa: F401 (theirs)
from utils.distributed import get_rank, is_main_process
from utils.outputs import append_text
from utils.paths import file_digest


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
    """Per-epoch schedule, as the original's adjust_learning_rate: cosine from lr down to
    lr * decay_rate**3, step (lr * decay_rate**n in a 0-based epoch above n of lr_decay_epochs),
    or constant."""
    kw = cfg.scheduler_kwargs
    if cfg.scheduler == 'cosine':
        eta_min = cfg.optimizer_kwargs.lr * kw.lr_decay_rate ** 3
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs,
                                                          eta_min=eta_min)
    if cfg.scheduler == 'step':
        milestones = list(kw.lr_decay_epochs)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: kw.lr_decay_rate ** sum(epoch > m for m in milestones))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


CHECKPOINT_KEYS = ('model', 'optimizer', 'epoch', 'config')


def note(message):
    if is_main_process():
        print(message, flush=True)


def input_digests(*paths):
    """{'<step>/<file>': sha256} of the files a step starts from (the previous step's model, the
    mined neighbours), recorded in its checkpoints: a resume from other inputs is refused."""
    return {os.path.join(os.path.basename(os.path.dirname(p)), os.path.basename(p)):
            file_digest(p) for p in paths}


def start_over(checkpoint_path):
    """How to start a step over: both its checkpoint and the previous one, the fallback."""
    return f"delete {checkpoint_path} and {checkpoint_path}{PREVIOUS_SUFFIX}"


def resume_state(cfg, checkpoint_path, device, inputs=None):
    """The checkpoint dict of an interrupted run of the same config (and, where given, the same
    input_digests), or None to start fresh. A missing or damaged checkpoint falls back to the
    previous one (see load_with_fallback)."""
    state = load_with_fallback(checkpoint_path, device, report=note, repair=is_main_process())
    if state is None:
        return None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise ResumeConflict(f"{checkpoint_path} is not a training checkpoint of this step (it "
                             f"lacks {', '.join(k for k in CHECKPOINT_KEYS if k not in state)}); "
                             f"{start_over(checkpoint_path)} to start the step over")
    changed = config_differences(state.get('config', {}), plain(cfg))
    if changed:
        raise ResumeConflict(
            f"{checkpoint_path} was written by a run with a different configuration "
            f"(changed: {', '.join(changed)}). To start over, {start_over(checkpoint_path)}; "
            f"or restore the old values to resume.")
    recorded = state.get('inputs')
    if inputs is not None and recorded is not None and recorded != inputs:
        changed = sorted(k for k in set(inputs) | set(recorded) if inputs.get(k) != recorded.get(k))
        raise ResumeConflict(
            f"{checkpoint_path} was trained from other inputs: {', '.join(changed)} changed "
            f"since (the step before was run again). To train this step from the new ones, "
            f"{start_over(checkpoint_path)}.")
    done, before = state['epoch'], state['config'].get('epochs')
    if done > cfg.epochs:
        raise ResumeConflict(
            f"{checkpoint_path} holds {done} trained epochs, more than epochs={cfg.epochs}: set "
            f"epochs to {done} or more to go on from it, or {start_over(checkpoint_path)} to "
            f"train {cfg.epochs} epochs from the start")
    if before != cfg.epochs and cfg.scheduler != 'constant':
        note(f"epochs changed from {before} to {cfg.epochs}: epochs {done + 1}-{cfg.epochs} "
             f"follow the {cfg.scheduler} schedule of {cfg.epochs} epochs; the {done} done "
             f"followed that of {before} ({start_over(checkpoint_path)} to train all under one)")
    return state


def save_checkpoint(path, cfg, epoch, model, optimizer, scheduler, **extra):
    """The whole training state of a step after `epoch` epochs (rank 0 writes it); the one it
    replaces is kept as `path.prev`, the fallback if this one is ever damaged."""
    if is_main_process():
        atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                     'scheduler': scheduler.state_dict(), 'epoch': epoch, 'config': plain(cfg),
                     **extra}, path, keep_previous=True)


def restore_checkpoint(state, model, optimizer, scheduler):
    """Load a resume_state() dict into the training objects (built for the current config);
    returns the epoch to start at. The learning-rate schedule is not loaded but replayed: see
    replay_schedule."""
    model.load_state_dict(state['model'])
    start_lrs = [group['lr'] for group in optimizer.param_groups]
    optimizer.load_state_dict(state['optimizer'])
    replay_schedule(scheduler, start_lrs, state['epoch'])
    return state['epoch']


def replay_schedule(scheduler, start_lrs, epochs_done):
    """Step a freshly built per-epoch schedule through the epochs done, from its first lr.

    The saved scheduler state would carry the old config's length (CosineAnnealingLR's T_max) into
    a run whose `epochs` changed; replaying the current one gives the next epochs the lr an
    uninterrupted run of this config has, bit for bit (torch's cosine step is recursive)."""
    for group, lr in zip(scheduler.optimizer.param_groups, start_lrs):
        group['lr'] = lr
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter('ignore', UserWarning)
        for _ in range(epochs_done):
            scheduler.step()


# What the epoch line shows, in order, with its format: the numbers that matter, rounded; the
# rest (consistency, entropy, per-head details, ARI, AMI, top-5) only in log.jsonl.
EPOCH_LINE = (('loss', '.3f'), ('lr', '.2g'), ('knn_acc', '.3f'), ('confident_share', '.2f'),
              ('non_empty_clusters', 'd'), ('best_head', 'd'), ('val_loss', '.3f'),
              ('val_acc', '.3f'), ('val_nmi', '.3f'), ('seconds', '.1f'),
              ('images_per_s', '.0f'))


def epoch_line(record):
    """'epoch 3  loss 5.123  lr 0.001  seconds 4.2': one short line per epoch."""
    parts = [f"epoch {record.get('epoch')}"]
    for key, fmt in EPOCH_LINE:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = f"{value:g}" if fmt == 'd' and isinstance(value, float) else format(value, fmt)
            parts.append(f"{key} {shown}")
    if record.get('saved_best'):
        parts.append('(best so far, saved)')
    return '  '.join(parts)


class RunLog:
    """Prints one line per epoch and keeps it in the step's log.jsonl (rank 0 only).

    The records also go into every checkpoint (save_checkpoint(..., log=run_log.records)), and
    `start` rewrites the file from the checkpoint it resumes from: whatever the moment of a kill,
    the log then holds each epoch of the checkpoint exactly once."""

    def __init__(self, path):
        self.path = path
        self.records = []

    def start(self, state):
        """Begin (state None: an empty log) or resume from a resume_state() dict."""
        self.records = [] if state is None else state.get('log') or self.read(state['epoch'])
        if is_main_process():
            atomic_write_text(self.path, ''.join(json.dumps(r) + '\n' for r in self.records))

    def read(self, epochs):
        """The first record of each epoch up to `epochs` in the file (checkpoints of before the
        records were saved in them)."""
        by_epoch = {}
        if os.path.isfile(self.path):
            with open(self.path, encoding='utf-8') as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:  # a line cut short by a kill
                        continue
                    by_epoch.setdefault(record.get('epoch'), record)
        return [by_epoch[e] for e in range(1, epochs + 1) if e in by_epoch]

    def write(self, record):
        record = json.loads(json.dumps(record))  # numpy numbers -> plain, as checkpoints need
        self.records.append(record)
        if not is_main_process():
            return
        print(epoch_line(record), flush=True)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        append_text(self.path, json.dumps(record) + '\n')
