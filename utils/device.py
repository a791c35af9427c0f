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


# The run's precision (config key `precision`), set once by configure_backends at the start of a
# run and read by every autocast() call site: training, mining and evaluation alike.
_precision = 'fp32'


def configure_backends(device, precision='fp32'):
    """fp32 (the original's): full precision everywhere, TF32 off. bf16: bf16 autocast, and TF32
    for the matrix products left in fp32 on CUDA."""
    global _precision
    if precision not in ('fp32', 'bf16'):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    _precision = precision
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = precision == 'bf16'
    torch.backends.cudnn.allow_tf32 = precision == 'bf16'


def autocast(device):
    """bf16 autocast on the device when the run's precision is bf16 (CPU or CUDA alike); a
    no-op in fp32."""
    if _precision == 'bf16':
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device):
    return torch.channels_last if device.type == 'cuda' else torch.contiguous_format


def prepare_model(model, device):
    return model.to(device=device, memory_format=memory_format(device))


def to_device(images, device):
    return images.to(device, non_blocking=True, memory_format=memory_format(device))
