"""Run the three steps and eval.py in-process on configs written for a test."""
import os

import yaml

import eval as evaluate
import scan
import selflabel
import simclr
from tests.folder_images import write_pattern_folder
from utils.config import output_name
from utils.lock import release_output_locks
from utils.runtime import get_args_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = (('pretext', 'simclr', simclr), ('scan', 'scan', scan),
         ('selflabel', 'selflabel', selflabel))


def write_env(folder, root_dir):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, 'env.yml')
    with open(path, 'w') as f:
        yaml.safe_dump({'root_dir': str(root_dir), 'data_dir': str(os.path.join(folder, 'data')),
                        'device': 'cpu'}, f)
    return path


def folder_outputs(root_dir, folder, backbone='auto', seed=0):
    """Where the steps write for an image folder: <root_dir>/folder-<name>-<hash of its path>,
    then -<timm model> for a pretrained backbone and -seed<N> for a seed other than 0."""
    return os.path.join(str(root_dir), output_name({'train_db_name': 'folder', 'seed': seed,
                                                    'folder': str(folder),
                                                    'backbone': backbone}))


def write_config(dest, step, base='digits', **changes):
    """The shipped `<step>_<base>.yml` with top-level keys replaced; returns its path."""
    prefix = {'pretext': 'simclr', 'scan': 'scan', 'selflabel': 'selflabel'}[step]
    with open(os.path.join(ROOT, 'configs', step, f'{prefix}_{base}.yml')) as f:
        content = yaml.safe_load(f)
    content.update(changes)
    path = os.path.join(dest, f'{step}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(content, f)
    return path


def run_step(module, env, exp, *opts):
    args = get_args_parser('test').parse_args(['--config_env', env, '--config_exp', exp,
                                               '--opts', *opts])
    try:
        return module.main(args)
    finally:
        release_output_locks()  # as run_cli does when the script ends


def trained_pattern_folder(root):
    """Steps 1 and 2 (one epoch each, scan_folder.yml) on 18 pattern images of 3 kinds in
    root/photos, outputs in root/out: (env file, the --opts that eval.py needs too)."""
    folder = os.path.join(root, 'photos')
    write_pattern_folder(folder, 6)
    env = write_env(str(root), os.path.join(root, 'out'))
    opts = [f'folder={folder}', 'num_classes=3', 'num_workers=0', 'num_neighbors=5',
            'batch_size=18', 'epochs=1']
    run_step(simclr, env, 'configs/pretext/simclr_folder.yml', *opts)
    run_step(scan, env, 'configs/scan/scan_folder.yml', *opts)
    return env, opts


def run_eval(env, exp, *extra):
    args = evaluate.get_eval_parser().parse_args(['--config_env', env, '--config_exp', exp,
                                                  *extra])
    try:
        return evaluate.main(args)
    finally:
        release_output_locks()


class Killed(Exception):
    pass


def kill_after_epochs(module, monkeypatch, epochs_done):
    """Make module.train_one_epoch raise Killed once `epochs_done` epochs have completed."""
    original, calls = module.train_one_epoch, []

    def dying(*args, **kwargs):
        if len(calls) == epochs_done:
            raise Killed()
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(module, 'train_one_epoch', dying)
