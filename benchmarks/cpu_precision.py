"""fp32 against bf16 autocast (`precision: bf16`) on this CPU, with 1 and 2 torch threads: the
pretrained embedding (DINOv2 ViT-S/14 at 224, random weights) and the from-scratch folder path's
small CNN at 32 px (forward and a training step), images/s by the wall clock and per CPU-second,
and the cosine of the bf16 features to the fp32 ones on the same images.

    OMP_NUM_THREADS=1 python benchmarks/cpu_precision.py
    python benchmarks/cpu_precision.py --models small --threads 1 2 --steps 10
"""
import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import build_backbone  # noqa: E402

MODELS = {'vit_s14': ('timm/vit_small_patch14_dinov2.lvd142m', 224, 16),
          'small': ('small', 32, 256)}


def run(backbone, images, precision, train, steps):
    """(images/s, images per CPU-second, last features)."""
    context = (torch.autocast('cpu', dtype=torch.bfloat16) if precision == 'bf16'
               else torch.autocast('cpu', enabled=False))
    optimizer = torch.optim.Adam(backbone.parameters(), 1e-4) if train else None
    for step in range(steps + 1):
        if step == 1:  # the first is warm-up
            started, cpu_started = time.perf_counter(), time.process_time()
        with torch.set_grad_enabled(train), context:
            features = backbone(images)
        if train:
            features.float().pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    n = len(images) * steps
    return (n / (time.perf_counter() - started), n / (time.process_time() - cpu_started),
            features.detach().float())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--steps', type=int, default=3)
    args = parser.parse_args()
    for key in args.models:
        name, size, batch = MODELS[key]
        torch.manual_seed(0)
        images = torch.randn(batch, 3, size, size)
        for train in ((False, True) if key == 'small' else (False,)):
            features = {}
            for threads in args.threads:
                torch.set_num_threads(threads)
                for precision in ('fp32', 'bf16'):
                    torch.manual_seed(0)  # the same weights for both precisions
                    backbone = build_backbone(name)['backbone'].train(train)
                    wall, cpu, out = run(backbone, images, precision, train, args.steps)
                    features.setdefault(precision, out)
                    cosine = torch.nn.functional.cosine_similarity(
                        features['fp32'], out, dim=1).mean().item() if not train else None
                    print(json.dumps({'model': key, 'pass': 'train' if train else 'forward',
                                      'size': size, 'batch': batch, 'threads': threads,
                                      'precision': precision, 'images_per_s': round(wall, 1),
                                      'images_per_cpu_s': round(cpu, 1),
                                      'cosine_to_fp32': None if cosine is None
                                      else round(cosine, 5)}), flush=True)


if __name__ == '__main__':
    main()
