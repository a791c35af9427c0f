"""precision: fp32 (the original's, and the default), bf16, or auto (bf16 where the device
computes it natively), set once at the start of a run and used alike by training, mining and
evaluation, on the CPU as on CUDA."""
import contextlib
import os
import platform

import pytest
import torch

from tests.pipeline_run import ROOT, write_env
from utils import device as device_module
from utils.device import autocast, configure_backends
from utils.inference import compute_features
from utils.runtime import get_args_parser, start_run

CPU = torch.device('cpu')


@pytest.fixture(autouse=True)
def restore_precision():
    yield
    configure_backends(CPU, 'fp32')


def test_fp32_is_full_precision_without_tf32():
    configure_backends(CPU, 'fp32')
    assert isinstance(autocast(CPU), contextlib.nullcontext)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    with autocast(CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bf16_is_autocast_and_tf32():
    configure_backends(CPU, 'bf16')
    with autocast(CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_evaluation_uses_the_run_precision():
    loader = [{'image': torch.ones(2, 4), 'target': torch.zeros(2, dtype=torch.long)}]
    seen = []

    def forward(x):
        seen.append(torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu')
                    else None)
        return x
    for precision, expected in (('fp32', None), ('bf16', torch.bfloat16)):
        configure_backends(CPU, precision)
        compute_features(forward, loader, CPU)
        assert seen[-1] == expected


@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_start_run_applies_the_config(tmp_path, precision):
    env = write_env(str(tmp_path), tmp_path / 'out')
    args = get_args_parser('t').parse_args([
        '--config_env', env, '--config_exp', f'{ROOT}/configs/pretext/simclr_digits.yml',
        '--opts', f'precision={precision}'])
    cfg, _ = start_run(args, 'simclr')
    assert cfg.precision == precision and device_module._precision == precision


@pytest.mark.parametrize('native', [True, False])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(device_module, 'native_bf16', lambda device: native)
    assert configure_backends(CPU, 'auto') == ('bf16' if native else 'fp32')
    with autocast(CPU):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if native else torch.float32)


@pytest.mark.parametrize('found, native', [({'avx512_bf16': True, 'amx_bf16': False}, True),
                                          ({'avx512_bf16': False, 'amx_bf16': True}, True),
                                          ({'avx512_bf16': False, 'avx2': True}, False),
                                          ({}, False)])
def test_native_bf16_reads_the_cpu_features(monkeypatch, found, native):
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: found, raising=False)
    assert device_module.native_bf16(CPU) is native


def test_native_bf16_on_a_torch_without_get_capabilities(monkeypatch):
    monkeypatch.delattr(torch.cpu, 'get_capabilities', raising=False)
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True, raising=False)
    assert device_module.native_bf16(CPU)
    monkeypatch.delattr(torch.cpu, '_is_amx_tile_supported')
    monkeypatch.delattr(torch.cpu, '_is_avx512_bf16_supported')
    assert not device_module.native_bf16(CPU)  # no way to tell: fp32, never a crash


def test_a_gpu_that_only_emulates_bf16_stays_in_fp32(monkeypatch):
    asked = []

    def supported(including_emulation=True):  # a pre-Ampere GPU: bf16 only emulated
        asked.append(including_emulation)
        return including_emulation
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', supported)
    assert not device_module.native_bf16(torch.device('cuda'))
    assert asked == [False]


def test_this_cpu_is_read_as_its_flags_say():
    """The check agrees with the kernel's CPU flags (Linux; elsewhere nothing to compare)."""
    if not os.path.isfile('/proc/cpuinfo') or platform.machine() not in ('x86_64', 'AMD64'):
        pytest.skip('needs an x86 Linux CPU')
    with open('/proc/cpuinfo') as f:
        flags = set(f.read().split())
    assert device_module.native_bf16(CPU) == bool({'avx512_bf16', 'amx_bf16'} & flags)


def test_auto_is_logged_and_kept_as_written(tmp_path, capsys):
    env = write_env(str(tmp_path), tmp_path / 'out')
    args = get_args_parser('t').parse_args([
        '--config_env', env, '--config_exp', f'{ROOT}/configs/pretext/simclr_digits.yml',
        '--opts', 'precision=auto'])
    cfg, _ = start_run(args, 'simclr')
    chosen = 'bf16' if device_module.native_bf16(CPU) else 'fp32'
    assert cfg.precision == 'auto' and device_module._precision == chosen
    assert f"precision auto: {chosen} on this CPU" in capsys.readouterr().out


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="'fp32', 'bf16' or 'auto', got 'fp16'"):
        configure_backends(CPU, 'fp16')
