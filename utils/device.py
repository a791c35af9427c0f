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


def native_bf16(device):
    """Whether the device multiplies bf16 matrices in hardware: CUDA from Ampere on; a CPU with
    AVX512-BF16 or AMX (x86). Elsewhere (older x86, ARM) bf16 runs emulated on the CPU and is
    several times slower than fp32, so `auto` keeps fp32 there."""
    if device.type == 'cuda':
        try:  # not counting the emulation that pre-Ampere GPUs offer (slower than fp32)
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch before the argument: it reported hardware support only
            return torch.cuda.is_bf16_supported()
    capabilities = getattr(torch.cpu, 'get_capabilities', None)  # torch 2.10+
    if capabilities is not None:
        found = capabilities()
        return bool(found.get('avx512_bf16') or found.get('amx_bf16'))
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')  # older torch (private)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(device, precision):
    """'fp32' or 'bf16' for the configured precision; 'auto' is bf16 where the device has native
    bf16 products (native_bf16), else fp32."""
    if precision not in ('fp32', 'bf16', 'auto'):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == 'auto':
        return 'bf16' if native_bf16(device) else 'fp32'
    return precision


def configure_backends(device, precision='fp32'):
    """fp32 (the original's): full precision everywhere, TF32 off. bf16: bf16 autocast, and TF32
    for the matrix products left in fp32 on CUDA. auto: bf16 where the device computes it
    natively, else fp32. Returns the precision chosen."""
    global _precision
    _precision = resolve_precision(device, precision)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = _precision == 'bf16'
    torch.backends.cudnn.allow_tf32 = _precision == 'bf16'
    return _precision


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
