"""Accuracy of heads trained on a frozen backbone's cached features with and without augmented
views embedded in step 2, side by side on the same backbone: the digits' own SimCLR backbone
(configs/*/..._digits.yml, step 1 run once), steps 2 and 3 with `update_cluster_head_only` and
`feature_cache` as the pretrained folder configs run them (no pretrained weights can be
downloaded here). A recipe is `cached_views:feature_dropout`: `1:0` embeds one augmented view
per image (the pretrained configs before); `0:0` embeds each image once per run, no
augmentation (TEMI-style); `0:0.2` once, with 20% of each feature's values dropped in the
augmented draws.

    python benchmarks/frozen_views.py /tmp/views --recipes 1:0 0:0 0:0.2 --seeds 0 1 2
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.pipeline_run import run_step, scan, selflabel, simclr, write_env  # noqa: E402

CONFIGS = {step: os.path.join(ROOT, 'configs', step, f'{prefix}_digits.yml') for step, prefix in
           (('pretext', 'simclr'), ('scan', 'scan'), ('selflabel', 'selflabel'))}


def last_record(path):
    with open(path) as f:
        return json.loads(f.read().splitlines()[-1])


def run(work, recipe, seed):
    """(SCAN log record, self-label log record, seconds of steps 2 and 3) of one recipe."""
    views, dropout = recipe.split(':')
    root = os.path.join(work, f'views{views}-dropout{dropout}-seed{seed}')
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(os.path.join(work, 'pretext', 'outputs'), os.path.join(root, 'outputs'))
    env = write_env(root, os.path.join(root, 'outputs'))
    opts = ['update_cluster_head_only=true', 'feature_cache=true', f'cached_views={views}',
            f'feature_dropout={dropout}', f'seed={seed}']
    started = time.perf_counter()
    run_step(scan, env, CONFIGS['scan'], *opts)
    run_step(selflabel, env, CONFIGS['selflabel'], *opts)
    outputs = os.path.join(root, 'outputs', 'digits')
    return (last_record(os.path.join(outputs, 'scan', 'log.jsonl')),
            last_record(os.path.join(outputs, 'selflabel', 'log.jsonl')),
            time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='a folder for the runs')
    parser.add_argument('--recipes', nargs='+', default=['1:0', '0:0', '0:0.2'],
                        help='cached_views:feature_dropout')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--pretext_epochs', type=int, default=50)
    args = parser.parse_args()
    pretext = os.path.join(args.work, 'pretext')
    if not os.path.isdir(os.path.join(pretext, 'outputs', 'digits', 'pretext')):
        env = write_env(pretext, os.path.join(pretext, 'outputs'))
        run_step(simclr, env, CONFIGS['pretext'], f'epochs={args.pretext_epochs}')
    rows = []
    for seed in args.seeds:
        for recipe in args.recipes:
            scan_log, final, seconds = run(args.work, recipe, seed)
            rows.append((recipe, seed, scan_log.get('val_acc'), final.get('val_acc'), seconds))
            print(json.dumps({'recipe': recipe, 'seed': seed, 'scan_acc': rows[-1][2],
                              'selflabel_acc': rows[-1][3], 'seconds': round(seconds, 1)}),
                  flush=True)
    print(f"\nthe digits (test split), small CNN frozen after {args.pretext_epochs} SimCLR epochs:")
    print("views:dropout  seed  SCAN acc  self-label acc  steps 2+3 s")
    for recipe, seed, scan_acc, final_acc, seconds in rows:
        print(f"{recipe:>13s}  {seed:4d}  {scan_acc:8.3f}  {final_acc:14.3f}  {seconds:11.1f}")
    for recipe in args.recipes:
        scans = [r[2] for r in rows if r[0] == recipe]
        finals = [r[3] for r in rows if r[0] == recipe]
        print(f"{recipe}: mean SCAN {np.mean(scans):.3f}, self-label {np.mean(finals):.3f} over "
              f"{len(finals)} seed{'s' if len(finals) != 1 else ''}")


if __name__ == '__main__':
    main()
