"""Clustering quality of the folder pipeline (README, "Your own images") on real small images:
scikit-learn's handwritten digits written out as PNGs, run through the README's commands
(simclr.py, scan.py, selflabel.py with configs/*/*_folder.yml, then eval.py) for a few seeds;
prints ACC/NMI/ARI per seed, their mean, and the wall time of each run.

    python benchmarks/folder_quality.py --work /tmp/folder_quality                 # 3 seeds, both
    python benchmarks/folder_quality.py --work /tmp/fq --layouts tree --seeds 0 \
        --opts criterion_kwargs.symmetric=false augmentation_kwargs.cutout_kwargs.n_holes=1

Layouts: `tree` (one folder per class: labels read by eval.py) and `flat` (one folder, the class
in each file's name: scored here from the annotations CSV, the labels never reach the model).
`--opts` go to every step after the README's own (folder, num_classes, horizontal_flip=false as
the README advises for digits); `--steps_opts` likewise but never to the eval. Everything is
written under --work (a folder this script creates or an earlier run of it), nothing elsewhere.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.config import load_config  # noqa: E402
from utils.metrics import cluster_metrics  # noqa: E402

STEPS = (('simclr.py', 'configs/pretext/simclr_folder.yml'),
         ('scan.py', 'configs/scan/scan_folder.yml'),
         ('selflabel.py', 'configs/selflabel/selflabel_folder.yml'))
MARKER = '.folder-quality'  # marks --work as this script's: it never writes into another folder


def write_digits(folder, layout):
    """The 1,797 digits as 8x8 grey PNGs: one sub-folder per class, or one flat folder."""
    from sklearn.datasets import load_digits
    if os.path.isdir(folder):
        return folder
    digits = load_digits()
    pixels = np.clip(digits.images * (255 / 16), 0, 255).astype(np.uint8)
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        where = os.path.join(folder, str(label)) if layout == 'tree' else folder
        os.makedirs(where, exist_ok=True)
        Image.fromarray(image).save(os.path.join(where, f"{label}_{i:04d}.png"))
    return folder


def prepare_work(work):
    if os.path.isdir(work) and os.listdir(work) and not os.path.exists(os.path.join(work, MARKER)):
        sys.exit(f"{work} holds files not written by this script: choose an empty or new folder")
    os.makedirs(work, exist_ok=True)
    open(os.path.join(work, MARKER), 'a').close()


def run(cmd, log_path):
    with open(log_path, 'a') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}; see {log_path}")


def flat_metrics(csv_path):
    """ACC/NMI/ARI of a flat folder's annotations: the class is the file name's prefix."""
    with open(csv_path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    clusters = np.array([int(r['cluster']) for r in rows])
    labels = np.array([int(os.path.basename(r['path']).split('_')[0]) for r in rows])
    return cluster_metrics(clusters, labels, int(labels.max()) + 1)


def one_run(args, layout, seed, folder):
    name = f"{args.label}-{layout}-seed{seed}"
    run_dir = os.path.join(args.work, 'runs', name)
    os.makedirs(run_dir, exist_ok=True)
    env = os.path.join(run_dir, 'env.yml')
    with open(env, 'w') as f:
        f.write(f"root_dir: {os.path.join(run_dir, 'outputs')}\ndevice: {args.device}\n")
    opts = [f"folder={folder}", f"num_classes={args.num_classes}",
            'augmentation_kwargs.horizontal_flip=false', f"seed={seed}", *args.opts]
    log_path = os.path.join(run_dir, 'log.txt')
    python = sys.executable
    started = time.time()
    for script, config in STEPS:
        run([python, script, '--config_env', env, '--config_exp', config,
             '--opts', *opts, *args.steps_opts], log_path)
    seconds = time.time() - started
    config = STEPS[-1][1]
    if layout == 'tree':
        run([python, 'eval.py', '--config_env', env, '--config_exp', config, '--opts', *opts],
            log_path)
        cfg = load_config(env, config, opts, evaluation=True)
        with open(os.path.join(cfg.paths.selflabel_eval_dir, 'metrics.json')) as f:
            metrics = json.load(f)
    else:
        out = os.path.join(run_dir, 'annotations')
        run([python, 'eval.py', '--config_env', env, '--config_exp', config, '--annotate', out,
             '--opts', *opts], log_path)
        metrics = flat_metrics(os.path.join(out, 'annotations.csv'))
    return {'label': args.label, 'layout': layout, 'seed': seed, 'seconds': round(seconds, 1),
            **{k: round(float(metrics[k]), 4) for k in ('acc', 'nmi', 'ari')}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work', required=True, help='folder for the images and every output')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--layouts', nargs='+', default=['tree', 'flat'], choices=['tree', 'flat'])
    parser.add_argument('--label', default='folder', help='name of this variant in the table')
    parser.add_argument('--num_classes', default='10')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--opts', nargs='*', default=[], help='key=value for every step')
    parser.add_argument('--steps_opts', nargs='*', default=[],
                        help='key=value for the three steps only (e.g. epochs=1 for a dry run)')
    args = parser.parse_args()
    args.work = os.path.abspath(args.work)
    prepare_work(args.work)
    rows = []
    print(f"{'variant':<24}{'layout':<7}{'seed':>5}{'ACC':>8}{'NMI':>8}{'ARI':>8}{'time':>8}",
          flush=True)
    for layout in args.layouts:
        folder = write_digits(os.path.join(args.work, f"digits-{layout}"), layout)
        for seed in args.seeds:
            row = one_run(args, layout, seed, folder)
            rows.append(row)
            print(f"{row['label']:<24}{layout:<7}{seed:>5}{row['acc']:>8.4f}{row['nmi']:>8.4f}"
                  f"{row['ari']:>8.4f}{row['seconds']:>7.0f}s", flush=True)
            with open(os.path.join(args.work, 'results.jsonl'), 'a') as f:
                f.write(json.dumps(row) + '\n')
        mine = [r for r in rows if r['layout'] == layout]
        means = {k: np.mean([r[k] for r in mine]) for k in ('acc', 'nmi', 'ari', 'seconds')}
        print(f"{args.label:<24}{layout:<7}{'mean':>5}{means['acc']:>8.4f}{means['nmi']:>8.4f}"
              f"{means['ari']:>8.4f}{means['seconds']:>7.0f}s", flush=True)


if __name__ == '__main__':
    main()
