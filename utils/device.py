"""One code path for CPU and CUDA: device choice, autocast, memory format, batch transfer."""
import contextlib
import os

import torch

from utils.errors import UserError


class DeviceError(UserError, RuntimeError):
    """The configured device does not exist here."""


def select_device(name='auto'):
    """'auto' takes this rank's GPU when there is one, else the CPU; 'cpu'/'cuda'/'cuda:N' force."""
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceError(f"unknown device '{name}' (key 'device' of the env file or --opts): "
                          f"use auto, cpu, cuda or cuda:N") from error
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' was asked for but CUDA is not available here; "
                          f"use --opts device=auto or device=cpu")
    if device.type == 'cuda' and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"device '{name}' was asked for but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to "
                          f"cuda:{torch.cuda.device_count() - 1}")
    return device


def configure_backends(device):
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device):
    """bf16 mixed precision on CUDA; full precision on the CPU (faithful and not slower there)."""
    if device.type == 'cuda':
        return torch.autocast('cuda', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device):
    return torch.channels_last if device.type == 'cuda' else torch.contiguous_format


def prepare_model(model, device):
    return model.to(device=device, memory_format=memory_format(device))


def to_device(images, device):
    return images.to(device, non_blocking=True, memory_format=memory_format(device))
