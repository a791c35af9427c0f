"""Wall time of a names re-export (`eval.py --annotate OUT --names NAMES.yml` into an existing
export of the same model and images), the whole command as a user runs it, imports included,
for one or more checkouts of this code side by side (runs alternated), on one generated folder.

    git archive 03d7839 | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python benchmarks/reexport_speed.py /tmp/reexport --code before=/tmp/before after=.

Each checkout first trains steps 1 and 2 for one epoch on the folder (the model's quality does
not matter here) and makes the first export; then the re-exports are timed.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCAN = 'configs/scan/scan_folder.yml'


def prepare(name, code, folder, work, classes):
    """Steps 1 and 2 and the first export of one checkout; (env file, opts, export folder)."""
    root = os.path.join(work, name)
    os.makedirs(root, exist_ok=True)
    env_file = os.path.join(root, 'env.yml')
    with open(env_file, 'w') as f:
        yaml.safe_dump({'root_dir': os.path.join(root, 'outputs'), 'device': 'cpu'}, f)
    opts = [f'folder={folder}', f'num_classes={classes}', 'epochs=1', 'num_neighbors=5']
    export = os.path.join(root, 'export')
    for script, config, extra in (('simclr.py', 'configs/pretext/simclr_folder.yml', []),
                                  ('scan.py', SCAN, []),
                                  ('eval.py', SCAN, ['--annotate', export])):
        with open(os.path.join(root, f'{script}.log'), 'w') as log:
            subprocess.run([sys.executable, script, '--config_env', env_file, '--config_exp',
                            config, *extra, '--opts', *opts], cwd=code, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
    return env_file, opts, export


def reexport(code, env_file, opts, export, names, log_path):
    started = time.perf_counter()
    with open(log_path, 'w') as log:
        subprocess.run([sys.executable, 'eval.py', '--config_env', env_file, '--config_exp', SCAN,
                        '--annotate', export, '--names', names, '--opts', *opts], cwd=code,
                       stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work', help='a folder for the images and every run\'s outputs')
    parser.add_argument('--code', nargs='+', default=[f'this={ROOT}'],
                        help='NAME=PATH of each checkout to time')
    parser.add_argument('--images', type=int, default=336, help='images in the folder')
    parser.add_argument('--classes', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    work = os.path.abspath(args.work)
    folder = os.path.join(work, 'images')
    if not os.path.isdir(folder):
        subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'photo_folder.py'),
                        folder, '--per_class', str(-(-args.images // 5))], check=True)
    names = os.path.join(work, 'names.yml')
    with open(names, 'w') as f:
        yaml.safe_dump({k: f'kind {k}' for k in range(args.classes)}, f)
    codes = dict(item.split('=', 1) for item in args.code)
    prepared = {name: prepare(name, os.path.abspath(code), folder, work, args.classes)
                for name, code in codes.items()}
    seconds = {name: [] for name in codes}
    for repeat in range(args.repeats):
        for name, code in codes.items():
            log_path = os.path.join(work, name, f'reexport-{repeat}.log')
            seconds[name].append(reexport(os.path.abspath(code), *prepared[name], names,
                                          log_path))
            print(f"  {name} re-export {repeat + 1}: {seconds[name][-1]:.1f} s", flush=True)
    first = next(iter(codes))
    print(f"\nnames re-export of {folder} (the whole command, imports included), seconds:")
    for name, values in seconds.items():
        ratio = statistics.median(seconds[first]) / statistics.median(values)
        print(f"{name:10s} median {statistics.median(values):6.1f}  "
              f"({', '.join(f'{v:.1f}' for v in values)})  {ratio:.1f}x of {first}")


if __name__ == '__main__':
    main()
