"""DDP plumbing for `torchrun`; every function is a no-op in a single process.

torch is imported where a process group is used, not here: a process that never imported torch
has none (eval.py's re-export from saved predictions runs without torch)."""
import os
import sys
import warnings

# torch.distributed.nn.functional (collectives with autograd) is public but marked deprecated in
# favour of a private module (_functional_collectives); with torch pinned, the public one stays.
warnings.filterwarnings('ignore', category=FutureWarning,
                        message=r'torch\.distributed\.nn\.functional\.')


def init_distributed():
    """Join the process group when launched by torchrun (RANK and WORLD_SIZE are set)."""
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ or is_distributed():
        return
    import torch
    import torch.distributed as dist

    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    dist.init_process_group(backend=backend)


def _dist():
    import torch.distributed as dist
    return dist


def is_distributed():
    if 'torch' not in sys.modules:
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return _dist().get_rank() if is_distributed() else 0


def get_world_size():
    return _dist().get_world_size() if is_distributed() else 1


def is_main_process():
    return get_rank() == 0


def barrier():
    if is_distributed():
        _dist().barrier()


def all_gather_with_grad(tensor):
    """Concatenate `tensor` from every rank along dim 0; gradients flow back to each rank."""
    if not is_distributed():
        return tensor
    import torch
    import torch.distributed.nn.functional as dist_fn

    return torch.cat(dist_fn.all_gather(tensor), dim=0)


def all_reduce_sum_with_grad(tensor):
    if not is_distributed():
        return tensor
    import torch.distributed.nn.functional as dist_fn

    return dist_fn.all_reduce(tensor, op=_dist().ReduceOp.SUM)


def all_reduce_sum(tensor):
    """Sum across ranks without gradient (counts, metrics)."""
    if is_distributed():
        dist = _dist()
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj):
    """Send a picklable object from rank 0 to all ranks."""
    if not is_distributed():
        return obj
    holder = [obj]
    _dist().broadcast_object_list(holder, src=0)
    return holder[0]


def cleanup_distributed():
    if is_distributed():
        _dist().destroy_process_group()


def wrap_ddp(model, device, cfg):
    """Under DDP: sync BatchNorm statistics across ranks (optional) and wrap; else unchanged.

    The model is converted in place, so the caller's reference stays the unwrapped module."""
    if not is_distributed():
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel
    if cfg.sync_bn and device.type == 'cuda':
        torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif cfg.sync_bn and get_rank() == 0:
        print("note: torch's SyncBatchNorm needs CUDA; on this device BatchNorm statistics "
              "stay per process", flush=True)
    device_ids = [device.index] if device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=device_ids)
