"""The from-scratch folder configs (configs/*/..._folder.yml) on the digits saved as a folder of
PNGs, with the per-image data path (`fast_augmentation=false`) and the batched one (`true`: the
working copies cropped square once, one array), side by side: seconds per epoch of each step
(from its log, the first epoch left out when there are more) and the three steps projected to
the configs' epochs.

    python benchmarks/folder_fast_path.py /tmp/fast --epochs 3
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import yaml
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data.digits import digits_arrays  # noqa: E402
from data.image_folder import forget_scans  # noqa: E402
from tests.pipeline_run import folder_outputs, run_step, scan, selflabel, simclr  # noqa: E402
from tests.pipeline_run import write_env  # noqa: E402

STEPS = (('pretext', 'simclr', simclr), ('scan', 'scan', scan),
         ('selflabel', 'selflabel', selflabel))


def write_digits(folder):
    """All 1,797 digits (train and test) as 16x16 PNGs, one folder per digit."""
    count = 0
    for split in ('train', 'test'):
        images, targets = digits_arrays(split)
        for image, target in zip(images, targets):
            os.makedirs(os.path.join(folder, str(target)), exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, str(target), f'{count:04d}.png'))
            count += 1
    return count


def epoch_seconds(log):
    with open(log) as f:
        seconds = [json.loads(line)['seconds'] for line in f]
    return float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='a folder for the digits and the runs')
    parser.add_argument('--epochs', type=int, default=3, help='epochs measured per step')
    args = parser.parse_args()
    folder = os.path.join(args.work, 'digits')
    if not os.path.isdir(folder):
        write_digits(folder)
    table = {}
    for fast in ('false', 'true'):
        root = os.path.join(args.work, f'fast-{fast}')
        shutil.rmtree(root, ignore_errors=True)
        env = write_env(root, os.path.join(root, 'outputs'))
        for step, prefix, module in STEPS:
            config = os.path.join(ROOT, 'configs', step, f'{prefix}_folder.yml')
            forget_scans()  # each step is a process of its own
            run_step(module, env, config, f'folder={folder}', 'num_classes=10',
                     f'epochs={args.epochs}', f'fast_augmentation={fast}',
                     'augmentation_kwargs.horizontal_flip=false')
            with open(config) as f:
                full_epochs = yaml.safe_load(f)['epochs']
            log = os.path.join(folder_outputs(os.path.join(root, 'outputs'), folder), step,
                               'log.jsonl')
            table[(fast, step)] = (epoch_seconds(log), full_epochs)
    print(f"\nthe 1,797 digits as 16x16 PNGs, from-scratch folder configs; s/epoch "
          f"(projected minutes for the configs' epochs):")
    print(f"{'fast_augmentation':18s}" + ''.join(f"{s:>22s}" for s, _, _ in STEPS)
          + f"{'total':>10s}")
    for fast in ('false', 'true'):
        cells = [table[(fast, step)] for step, _, _ in STEPS]
        total = sum(s * e for s, e in cells) / 60
        print(f"{fast:18s}" + ''.join(f"{s:9.2f} ({s * e / 60:5.1f} min)" for s, e in cells)
              + f"{total:7.1f} min")


if __name__ == '__main__':
    main()
