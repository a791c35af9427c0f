"""Embedding throughput of pretrained timm backbones (random weights: the speed is the same),
as step 1 and the feature cache run them: no gradients, batches of the validation size.

    python benchmarks/timm_embed.py                                   # ViT-S/14, ResNet-50 at 224
    python benchmarks/timm_embed.py --models timm/vit_base_patch16_224.dino --batch 64

One JSON line per model on stdout: images/s of the backbone forward alone, by the wall clock
and per second of this process's CPU time (what an idle machine would give per busy core, when
other processes share the CPU).
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a file from anywhere: the project's modules import

from models import build_backbone  # noqa: E402
from utils.device import autocast, prepare_model, select_device, to_device  # noqa: E402

DEFAULT_MODELS = 'timm/vit_small_patch14_dinov2.lvd142m,timm/resnet50.a1_in1k'


@torch.no_grad()
def images_per_second(backbone, size, batch, steps, warmup, device):
    """(images/s by the wall clock, images per CPU-second of this process)."""
    images = to_device(torch.randn(batch, 3, size, size), device)
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == 'cuda':
                torch.cuda.synchronize()
            started, cpu_started = time.perf_counter(), time.process_time()
        with autocast(device):
            backbone(images)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    n = batch * steps
    return n / (time.perf_counter() - started), n / (time.process_time() - cpu_started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default=DEFAULT_MODELS)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    for name in args.models.split(','):
        backbone = prepare_model(build_backbone(name)['backbone'], device).eval()
        wall, cpu = images_per_second(backbone, args.size, args.batch, args.steps, args.warmup,
                                      device)
        print(json.dumps({'model': name, 'size': args.size, 'batch': args.batch,
                          'device': str(device), 'threads': torch.get_num_threads(),
                          'images_per_s': round(wall, 1),
                          'images_per_cpu_s': round(cpu, 1)}), flush=True)


if __name__ == '__main__':
    main()
