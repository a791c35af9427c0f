"""Wall time of the README's pretrained folder commands (steps 1-3 and `eval.py --annotate`)
for one or more checkouts of this code on the same folder, side by side in one run, and the
time projected to 5,000 photos from the per-image rates. The backbone (DINOv2 ViT-S/14 by
default) has random weights (no download here): its speed is the real model's.

    python benchmarks/photo_folder.py /tmp/phone --per_class 20 --size 4032x3024
    git worktree add /tmp/before <commit>   # or `git archive <commit> | tar -x -C /tmp/before`
    python benchmarks/pretrained_folder.py /tmp/phone /tmp/e2e --code before=/tmp/before after=.
"""
import argparse
import os
import subprocess
import sys
import time

import yaml

STEPS = (('step 1', 'simclr.py', 'configs/pretext/simclr_folder_pretrained.yml'),
         ('step 2', 'scan.py', 'configs/scan/scan_folder_pretrained.yml'),
         ('step 3', 'selflabel.py', 'configs/selflabel/selflabel_folder_pretrained.yml'),
         ('annotate', 'eval.py', 'configs/selflabel/selflabel_folder_pretrained.yml'))
PROJECTED = 5000


def write_weights(path, model):
    import safetensors.torch
    import timm
    import torch
    torch.manual_seed(0)
    safetensors.torch.save_file(timm.create_model(model, num_classes=0).state_dict(), path)


def count_images(folder):
    return sum(name.lower().endswith(('.jpg', '.jpeg', '.png')) for _, _, names in os.walk(folder)
               for name in names)


def run_code(name, code, folder, work, weights, backbone, num_classes, threads):
    """Seconds per step of one checkout; its outputs under work/name."""
    root = os.path.join(work, name)
    os.makedirs(root, exist_ok=True)
    env_file = os.path.join(root, 'env.yml')
    with open(env_file, 'w') as f:
        yaml.safe_dump({'root_dir': os.path.join(root, 'outputs'), 'device': 'cpu'}, f)
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
    seconds = {}
    for step, script, config in STEPS:
        command = [sys.executable, script, '--config_env', env_file, '--config_exp', config]
        if script == 'eval.py':
            command += ['--annotate', os.path.join(root, 'annotations')]
        opts = [f'folder={folder}', f'num_classes={num_classes}', f'backbone=timm/{backbone}']
        if script == 'simclr.py':
            opts.append(f'pretrained_weights={weights}')
        started = time.perf_counter()
        with open(os.path.join(root, f'{step}.log'), 'w') as log:
            subprocess.run(command + ['--opts', *opts], cwd=code, env=env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
        seconds[step] = time.perf_counter() - started
        print(f"  {name} {step}: {seconds[step]:.1f} s", flush=True)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', help='the photos (benchmarks/photo_folder.py)')
    parser.add_argument('work', help='a folder for the weights and every run\'s outputs')
    parser.add_argument('--code', nargs='+', default=[f'this={os.getcwd()}'],
                        help='NAME=PATH of each checkout to time')
    parser.add_argument('--backbone', default='vit_small_patch14_dinov2.lvd142m')
    parser.add_argument('--num_classes', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2, help='OMP_NUM_THREADS of each step')
    args = parser.parse_args()
    folder, work = os.path.abspath(args.folder), os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    weights = os.path.join(work, 'weights.safetensors')
    if not os.path.isfile(weights):
        write_weights(weights, args.backbone)
    n = count_images(folder)
    results = {}
    for item in args.code:
        name, code = item.split('=', 1)
        results[name] = run_code(name, os.path.abspath(code), folder, work, weights,
                                 args.backbone, args.num_classes, args.threads)
    steps = [step for step, _, _ in STEPS]
    print(f"\n{n:,} photos in {folder}, {args.backbone} (random weights), "
          f"OMP_NUM_THREADS={args.threads}; seconds:")
    print(f"{'code':10s}" + ''.join(f"{s:>10s}" for s in steps) + f"{'total':>10s}"
          + f"{'s/image':>10s}{f'{PROJECTED:,} photos':>16s}")
    for name, seconds in results.items():
        total = sum(seconds.values())
        print(f"{name:10s}" + ''.join(f"{seconds[s]:10.1f}" for s in steps) + f"{total:10.1f}"
              + f"{total / n:10.2f}{total / n * PROJECTED / 60:12.1f} min")


if __name__ == '__main__':
    main()
