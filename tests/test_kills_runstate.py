"""Repeated SIGKILLs at chosen and random points of a small digits run: the rerun ends with the
same weights, neighbours and log as an uninterrupted run, and leaves no stray file.

Each step is run straight in one output root and, in another, killed over and over (inside a
checkpoint write, between its two renames, after the log line and before the checkpoint, half
way through a log line, at random times) and rerun until it finishes. tests/kill_harness.py
forks every life from one process that imported the scripts once.
"""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.pipeline_run import ROOT, write_env
from utils.checkpoint import load

EPOCHS = {'pretext': 2, 'scan': 2, 'selflabel': 2}
CONFIGS = {'pretext': 'configs/pretext/simclr_digits.yml', 'scan': 'configs/scan/scan_digits.yml',
           'selflabel': 'configs/selflabel/selflabel_digits.yml'}
EXTRA = {'pretext': [], 'scan': [], 'selflabel': ['confidence_threshold=0.5']}
# Each deterministic life must end killed (the point was reached); the timer ones may not.
KILLED_LIVES = {
    'pretext': ['after-log:1', 'before-rename:2', 'between-renames:1'],
    'scan': ['half-save:1', 'half-log:2'],
    'selflabel': ['between-renames:1', 'half-save:1'],
}
TIMING_FIELDS = {'seconds', 'images_per_s'}


def file_tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def log_records(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


@pytest.fixture(scope='module')
def killed_and_straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('kills')
    rng = random.Random(int.from_bytes(os.urandom(4), 'little'))
    seed_note = f"timers drawn with random.Random state {rng.getstate()[1][:2]}"
    roots = {name: tmp / name for name in ('straight', 'killed')}
    envs = {name: write_env(str(tmp / f'env-{name}'), root) for name, root in roots.items()}
    plan = []
    for step in ('pretext', 'scan', 'selflabel'):
        opts = [f'epochs={EPOCHS[step]}', 'batch_size=128', *EXTRA[step]]
        common = {'step': step, 'exp': os.path.join(ROOT, CONFIGS[step]), 'opts': opts}
        plan.append({**common, 'env': envs['straight'], 'root': str(roots['straight']),
                     'lives': ['finish']})
        timers = [f'timer:{rng.uniform(0.5, 4.0):.2f}']
        plan.append({**common, 'env': envs['killed'], 'root': str(roots['killed']),
                     'lives': KILLED_LIVES[step] + timers + ['finish']})
    plan_path = tmp / 'plan.json'
    plan_path.write_text(json.dumps(plan))
    # one thread: both runs compute alike, and a shared CPU is not wasted on spinning threads
    result = subprocess.run([sys.executable, '-m', 'tests.kill_harness', str(plan_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    lives = [json.loads(line) for line in result.stdout.splitlines()]
    return {'straight': roots['straight'] / 'digits', 'killed': roots['killed'] / 'digits',
            'lives': lives, 'note': seed_note}


def test_every_planned_kill_happened_and_each_step_finished(killed_and_straight):
    lives = killed_and_straight['lives']
    for step, planned in KILLED_LIVES.items():
        killed_root = [life for life in lives if life['step'] == step
                       and life['root'].endswith('killed')]
        statuses = {life['life']: life['status'] for life in killed_root}
        assert all(statuses[life] == -9 for life in planned), (step, statuses)
        assert killed_root[-1]['status'] == 0, (step, killed_root, killed_and_straight['note'])


@pytest.mark.parametrize('step', ['pretext', 'scan', 'selflabel'])
def test_same_weights_as_an_uninterrupted_run(killed_and_straight, step):
    straight, killed = killed_and_straight['straight'] / step, killed_and_straight['killed'] / step
    for name in ('checkpoint.pth.tar', 'model.pth.tar'):
        a, b = load(str(straight / name))['model'], load(str(killed / name))['model']
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), (step, name, killed_and_straight['note'])
    if step == 'pretext':
        for split in ('train', 'val'):
            name = f'topk-{split}-neighbors.npy'
            assert np.array_equal(np.load(straight / name), np.load(killed / name))


@pytest.mark.parametrize('step', ['pretext', 'scan', 'selflabel'])
def test_log_holds_every_epoch_once_with_the_same_values(killed_and_straight, step):
    straight = log_records(killed_and_straight['straight'] / step / 'log.jsonl')
    killed = log_records(killed_and_straight['killed'] / step / 'log.jsonl')
    assert [r['epoch'] for r in killed] == list(range(1, EPOCHS[step] + 1))
    assert without_timing(killed) == without_timing(straight), killed_and_straight['note']


def test_no_stray_files(killed_and_straight):
    straight, killed = file_tree(killed_and_straight['straight']), \
        file_tree(killed_and_straight['killed'])
    assert killed == straight, killed_and_straight['note']
    assert not [f for f in killed if os.path.basename(f).startswith(('.tmp-', '.lock'))]
    assert 'pretext/checkpoint.pth.tar.prev' in killed  # the fallback a damaged one needs
