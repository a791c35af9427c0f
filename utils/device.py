"""One code path for CPU and CUDA: device choice, autocast, memory format, batch transfer."""
import contextlib
import os

import torch


def select_device(name='auto'):
    """'auto' takes this rank's GPU when there is one, else the CPU; 'cpu'/'cuda'/'cuda:N' force."""
    if name == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        return torch.device('cpu')
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f"device '{name}' was asked for but CUDA is not available here; "
                           f"use --opts device=auto or device=cpu")
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
