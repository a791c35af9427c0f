"""DataLoaders shared by the scripts."""
from torch.utils.data import DataLoader, DistributedSampler

from utils.distributed import get_world_size, is_distributed


def make_loader(dataset, cfg, device, shuffle, drop_last, batch_size=None, distributed=True):
    """DataLoader with a DistributedSampler under DDP (the configured batch size is the global
    one: each rank takes its share); `distributed=False` for a full pass on one rank. Workers draw their seeds from the global
    RNG, which each script seeds per epoch, so a resumed run replays the same batches."""
    sampler = None
    world = get_world_size() if distributed else 1
    if distributed and is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, drop_last=drop_last, seed=cfg.seed)
        shuffle = False
    per_rank = max(1, (batch_size or cfg.batch_size) // world)
    return DataLoader(dataset, batch_size=per_rank, shuffle=shuffle,
                      sampler=sampler, num_workers=cfg.num_workers, drop_last=drop_last,
                      pin_memory=device.type == 'cuda')


def set_loader_epoch(loader, epoch):
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
