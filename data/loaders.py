"""DataLoaders shared by the scripts (the per-image path; data/device_loader.py picks between
this and the batched on-device path)."""
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, RandomSampler,
                              SequentialSampler)

from utils.distributed import get_rank, get_world_size, is_distributed


def batch_sampler(dataset, cfg, shuffle, drop_last, distributed=True, batch_size=None):
    """Batches of indices. Under DDP every rank takes its share of one permutation (seeded with
    cfg.seed + epoch) and the configured batch size is the global one; `distributed=False` for a
    full pass on one rank. Without DDP the shuffle draws from the global RNG, which each script
    seeds per epoch, so a resumed run replays the same batches."""
    world = get_world_size() if distributed else 1
    if distributed and is_distributed():
        sampler = DistributedSampler(dataset, num_replicas=world, rank=get_rank(),
                                     shuffle=shuffle, drop_last=drop_last, seed=cfg.seed)
    else:
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return BatchSampler(sampler, max(1, (batch_size or cfg.batch_size) // world), drop_last)


def make_loader(dataset, cfg, device, shuffle, drop_last, batch_size=None, distributed=True):
    """DataLoader over `dataset` with workers (which draw their seeds from the global RNG)."""
    return DataLoader(dataset, batch_sampler=batch_sampler(dataset, cfg, shuffle, drop_last,
                                                           distributed, batch_size),
                      num_workers=cfg.num_workers, pin_memory=device.type == 'cuda')


def set_loader_epoch(loader, epoch):
    sampler = loader.batch_sampler.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
