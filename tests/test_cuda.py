"""What only a GPU can show: bf16 autocast in each step, channels_last, fused optimizers, the fast
data path on the device, mining (faiss-gpu where installed, the blocked matrix-product fallback
where not) and one torchrun process with NCCL. Skipped without CUDA; run by
benchmarks/gpu_check.sh on a GPU machine."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from data import build_dataset
from data.device_loader import make_eval_loader, make_train_loader
from data.settings import complete_image_settings
from models import ContrastiveModel, build_backbone
from tests.pipeline_run import ROOT, folder_outputs, run_eval, run_step, write_config, write_env
from utils.config import load_config
from utils.device import autocast, configure_backends, prepare_model, select_device, to_device
from utils.mining import _faiss_gpu_available, mine_nearest_neighbors
from utils.training import build_optimizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
CUDA = torch.device('cuda')
CONFIGS = os.path.join(ROOT, 'configs')
GPU_OPTS = ('device=cuda', 'precision=bf16', 'fast_augmentation=true')


@pytest.fixture(autouse=True)
def fp32_after():
    yield
    configure_backends(torch.device('cpu'), 'fp32')


def digits_config(step, *opts):
    prefix = {'pretext': 'simclr', 'scan': 'scan', 'selflabel': 'selflabel'}[step]
    cfg = load_config(os.path.join(CONFIGS, 'env.yml'),
                      os.path.join(CONFIGS, step, f'{prefix}_digits.yml'), list(opts))
    return complete_image_settings(cfg)


def test_auto_device_is_cuda():
    assert select_device('auto').type == 'cuda'


def test_channels_last_model_and_batches():
    model = prepare_model(ContrastiveModel(build_backbone('resnet18_cifar')), CUDA)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_cuda
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = to_device(torch.randn(4, 3, 32, 32), CUDA)
    assert images.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('optimizer', ['sgd', 'adam'])
def test_fused_optimizer_on_cuda(optimizer):
    cfg = digits_config('pretext', f'optimizer={optimizer}')
    parameters = [torch.nn.Parameter(torch.randn(3, device=CUDA))]
    assert build_optimizer(cfg, parameters).defaults.get('fused') is True


def test_bf16_autocast_on_cuda():
    configure_backends(CUDA, 'bf16')
    with autocast(CUDA):
        product = torch.ones(8, 8, device=CUDA) @ torch.ones(8, 8, device=CUDA)
    assert product.dtype == torch.bfloat16
    assert torch.backends.cuda.matmul.allow_tf32


@pytest.mark.parametrize('kind', ['pretext', 'scan', 'selflabel'])
def test_fast_data_path_on_the_device(kind):
    cfg = digits_config(kind, 'fast_augmentation=true')
    dataset = build_dataset(cfg, 'train')
    neighbors = None
    if kind == 'scan':
        neighbors = np.tile(np.arange(len(dataset))[:, None], (1, cfg.num_neighbors + 1))
    batch = next(iter(make_train_loader(cfg, dataset, kind, CUDA, neighbors)))
    images = [v for v in batch.values() if torch.is_tensor(v) and v.dim() == 4]
    assert images and all(v.is_cuda and v.dtype == torch.float32 for v in images)
    assert all(torch.isfinite(v).all() for v in images)
    # the val transform is deterministic: the same pixels on the device as on the CPU
    on_gpu = next(iter(make_eval_loader(cfg, dataset, CUDA)))['image'].float().cpu()
    on_cpu = next(iter(make_eval_loader(cfg, dataset, torch.device('cpu'))))['image'].float()
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4)


def random_features(n=3000, dim=64):
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


def test_mining_blocked_fallback_matches_faiss_on_the_cpu():
    features = random_features()
    expected = mine_nearest_neighbors(features, 10, backend='faiss')
    found = mine_nearest_neighbors(features.to(CUDA), 10, backend='torch', block_rows=512)
    assert found.shape == expected.shape == (3000, 11)
    assert (found[:, 0] == np.arange(3000)).all()
    assert (found == expected).mean() > 0.999  # ties between equal similarities aside


@pytest.mark.skipif(not _faiss_gpu_available(), reason='this faiss has no GPU support '
                                                       '(faiss-gpu not installed)')
def test_mining_with_faiss_gpu():
    features = random_features()
    found = mine_nearest_neighbors(features.to(CUDA), 10, backend='faiss')
    expected = mine_nearest_neighbors(features.to(CUDA), 10, backend='torch')
    assert (found == expected).mean() > 0.999


def test_three_steps_in_bf16_on_the_device(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    results = {}
    for step, module in (('pretext', 'simclr'), ('scan', 'scan'), ('selflabel', 'selflabel')):
        config = os.path.join(CONFIGS, step, f"{module}_digits.yml")
        run_step(__import__(module), env, config, *GPU_OPTS, 'epochs=2')
        results[step] = run_eval(env, config, '--opts', *GPU_OPTS)
        log = [json.loads(line) for line in open(tmp_path / 'out' / 'digits' / step
                                                 / 'log.jsonl')]
        assert len(log) == 2 and all(np.isfinite(r['loss']) for r in log if r.get('loss'))
    assert results['scan']['acc'] > 0.3  # 2 epochs of each step already cluster the digits


PROBE = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from utils.distributed import init_distributed
init_distributed()
x = torch.ones(3, device='cuda')
dist.all_reduce(x)
print('backend', dist.get_backend(), 'sum', x.tolist())
dist.destroy_process_group()
"""


def torchrun(*args, cwd=ROOT):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                           '--nproc_per_node=1', *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_torchrun_one_process_uses_nccl(tmp_path):
    probe = tmp_path / 'probe.py'
    probe.write_text(PROBE.format(root=ROOT))
    result = torchrun(str(probe))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'backend nccl sum [1.0, 1.0, 1.0]' in result.stdout


def test_torchrun_one_process_runs_step_one(tmp_path):
    from tests.shapes import SHAPES, write_shapes
    folder = tmp_path / 'shapes'
    write_shapes(str(folder), per_class=20)
    config = write_config(str(tmp_path), 'pretext', train_db_name='folder',
                          val_db_name='folder', folder=str(folder), num_classes=len(SHAPES),
                          batch_size=32, num_workers=0, epochs=2)
    env = write_env(str(tmp_path), tmp_path / 'out')
    result = torchrun('simclr.py', '--config_env', env, '--config_exp', config, '--opts',
                      'device=cuda', 'precision=bf16')
    assert result.returncode == 0, result.stderr[-3000:]
    out = folder_outputs(tmp_path / 'out', folder)
    log = [json.loads(line) for line in open(os.path.join(out, 'pretext', 'log.jsonl'))]
    assert len(log) == 2 and all(np.isfinite(r['loss']) for r in log)
    assert os.path.isfile(os.path.join(out, 'pretext', 'topk-train-neighbors.npy'))
