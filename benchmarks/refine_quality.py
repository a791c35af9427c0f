"""Do the gallery's corrections teach the model? Measured as a user would run it, on real digits.

scikit-learn's 1,797 handwritten digits are written as 8x8 PNGs into one flat folder (no labels
the code can see); per seed: the folder pipeline (simclr/scan/selflabel *_folder.yml with
augmentation_kwargs.horizontal_flip=false), an export, then for each share P: the least
confident P% of the exported images are corrected with their true class (the cluster that
class is matched to, Hungarian, on the export), `selflabel.py --corrections` refines, and an
export of the refined model is scored. Prints ACC (Hungarian) on the images NOT in the
corrected share, before and after refining, and how many of those changed cluster.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/refine_quality.py /tmp/refine_bench
    ... --seeds 0 --percents 5 --step_epochs 20 20 10 --opts fast_augmentation=true  # smaller
"""
import argparse
import csv
import glob
import os
import subprocess
import sys
import time

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.metrics import cluster_metrics, hungarian_match  # noqa: E402

STEPS = (('simclr.py', 'configs/pretext/simclr_folder.yml'),
         ('scan.py', 'configs/scan/scan_folder.yml'),
         ('selflabel.py', 'configs/selflabel/selflabel_folder.yml'))
SELFLABEL_CONFIG = STEPS[-1][1]
REFINE_EPOCHS = 10  # refine_epochs' default


def write_digits(folder):
    """The digits as grey PNGs in a flat folder; {file name: class}."""
    bunch = load_digits()
    os.makedirs(folder, exist_ok=True)
    labels = {}
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        name = f"digit_{i:04d}.png"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            Image.fromarray((image * (255 / 16)).round().astype(np.uint8)).save(path)
        labels[name] = int(label)
    return labels


def run(script, *args):
    command = [sys.executable, os.path.join(ROOT, script), *args]
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout, time.time() - started


def read_export(folder):
    """(ids, file names, clusters, confidences) of an export's annotations.csv, in id order."""
    with open(os.path.join(folder, 'annotations.csv'), newline='', encoding='utf-8') as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r['id']))
    return ([int(r['id']) for r in rows], [r['path'] for r in rows],
            np.array([int(r['cluster']) for r in rows]),
            np.array([float(r['confidence']) for r in rows]))


def least_confident(confidence, share):
    looked = np.zeros(len(confidence), bool)
    looked[np.argsort(confidence, kind='stable')[:int(round(share * len(confidence)))]] = True
    return looked


def write_corrections(path, export, truth, share):
    """corrections.csv that moves the least confident `share` of the images to the cluster of
    their class; returns the mask of the images looked at (corrected or found right)."""
    ids, paths, clusters, confidence = export
    num_clusters = int(clusters.max()) + 1
    class_of = hungarian_match(clusters, truth, max(num_clusters, 10), 10)
    cluster_of = {c: k for k, c in class_of.items() if c >= 0}
    looked = least_confident(confidence, share)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['id', 'path', 'from', 'to'])
        for i in np.flatnonzero(looked):
            target = cluster_of[truth[i]]
            if target != clusters[i]:
                writer.writerow([ids[i], paths[i], clusters[i], target])
    return looked


def one_seed(work, folder, labels, seed, percents, opts, step_epochs=None, refine_opts=()):
    root = os.path.join(work, f'seed{seed}')
    env = os.path.join(work, f'env-seed{seed}.yml')
    with open(env, 'w') as f:
        yaml.safe_dump({'root_dir': root, 'data_dir': os.path.join(work, 'data'),
                        'device': 'cpu'}, f)
    common = ['--config_env', env, '--opts', f'folder={folder}', 'num_classes=10',
              f'seed={seed}', 'augmentation_kwargs.horizontal_flip=false', *opts]
    seconds = {}
    for i, ((script, config), step) in enumerate(zip(STEPS, ('pretext', 'scan', 'selflabel'))):
        epochs = [f'epochs={step_epochs[i]}'] if step_epochs else []
        if not glob.glob(os.path.join(root, 'folder-*', step, 'model.pth.tar')):  # a rerun
            _, seconds[script] = run(script, '--config_exp', config, *common, *epochs)
    base = os.path.join(work, f'export-seed{seed}')
    run('eval.py', '--config_exp', SELFLABEL_CONFIG, '--annotate', base, '--force', *common)
    before = read_export(base)
    truth = np.array([labels[os.path.basename(p)] for p in before[1]])
    rows = []
    for percent in percents:
        corrections = os.path.join(work, f'corrections-seed{seed}-{percent:g}.csv')
        looked = write_corrections(corrections, before, truth, percent / 100)
        out, seconds['refine'] = run('selflabel.py', '--config_exp', SELFLABEL_CONFIG,
                                     '--corrections', corrections, *common, *refine_opts)
        refined_dir = refined_folder(root)
        after_dir = os.path.join(work, f'export-seed{seed}-refined{percent:g}')
        run('eval.py', '--config_exp', SELFLABEL_CONFIG, '--annotate', after_dir, '--force',
            '--model', os.path.join(refined_dir, 'model.pth.tar'), *common)
        os.replace(refined_dir, f'{refined_dir}-{percent:g}')  # the next share refines afresh
        after = read_export(after_dir)
        rest = ~looked
        acc = [cluster_metrics(clusters[rest], truth[rest], 10)['acc']
               for clusters in (before[2], after[2])]
        rows.append({'seed': seed, 'percent': percent, 'looked': int(looked.sum()),
                     'moved': sum(1 for _ in open(corrections)) - 1,
                     'acc_before': acc[0], 'acc_after': acc[1],
                     'changed': int((before[2][rest] != after[2][rest]).sum()),
                     'refine_s': seconds['refine']})
        print_row(rows[-1])
    print(f"seed {seed}: steps took " + ', '.join(f"{k} {v:.0f} s" for k, v in seconds.items()),
          flush=True)
    return control(work, root, seed, common, rows, before, truth)


def control(work, root, seed, common, rows, before, truth):
    """The same number of epochs of plain self-labeling, no corrections (step 3 resumed for
    refine_epochs more): what refining gains over training longer."""
    (log_path,) = glob.glob(os.path.join(root, 'folder-*', 'selflabel', 'log.jsonl'))
    with open(log_path) as f:
        done = sum(1 for line in f if '"epoch"' in line)
    run('selflabel.py', '--config_exp', SELFLABEL_CONFIG, *common, f'epochs={done + REFINE_EPOCHS}')
    out = os.path.join(work, f'export-seed{seed}-control')
    run('eval.py', '--config_exp', SELFLABEL_CONFIG, '--annotate', out, '--force', *common)
    longer = read_export(out)[2]
    for row in rows:
        rest = ~least_confident(before[3], row['percent'] / 100)
        row['acc_control'] = cluster_metrics(longer[rest], truth[rest], 10)['acc']
    return rows



def refined_folder(root):
    (name,) = [d for d in os.listdir(root) if d.startswith('folder-')]
    return os.path.join(root, name, 'refined')


def print_row(row):
    print(f"| {row['seed']} | {row['percent']:g}% | {row['looked']} | {row['moved']} | "
          f"{row['acc_before']:.4f} | {row['acc_after']:.4f} | "
          f"{row['acc_after'] - row['acc_before']:+.4f} | {row['changed']} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='a new folder for the images and every output')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--percents', type=float, nargs='+', default=[1, 5, 10])
    parser.add_argument('--opts', nargs='*', default=[], help='KEY=VALUE for every step')
    parser.add_argument('--refine_opts', nargs='*', default=[],
                        help='KEY=VALUE for selflabel.py --corrections alone (refine_epochs=5)')
    parser.add_argument('--step_epochs', type=int, nargs=3, metavar=('PRETEXT', 'SCAN', 'SELF'),
                        help="epochs of the three steps (default: the configs')")
    args = parser.parse_args()
    folder = os.path.join(args.work, 'digits')
    labels = write_digits(folder)
    print("| seed | corrected share | images looked at | moved | ACC before (rest) | "
          "ACC after (rest) | change | rest changed cluster |\n|---|---|---|---|---|---|---|---|",
          flush=True)
    rows = [row for seed in args.seeds
            for row in one_seed(args.work, folder, labels, seed, args.percents, args.opts,
                                args.step_epochs, args.refine_opts)]
    print(f"\nmean over seeds {args.seeds} (control: {REFINE_EPOCHS} more epochs of step 3, "
          f"no corrections):\n| share | ACC before | ACC after refining | change | "
          f"ACC control |\n|---|---|---|---|---|")
    for percent in args.percents:
        mine = [r for r in rows if r['percent'] == percent]
        before, after, longer = (np.mean([r[k] for r in mine])
                                 for k in ('acc_before', 'acc_after', 'acc_control'))
        print(f"| {percent:g}% | {before:.4f} | {after:.4f} | {after - before:+.4f} | "
              f"{longer:.4f} |")


if __name__ == '__main__':
    main()
