"""Print the results of a three-step run as one table, from each step's eval/metrics.json.

    python -m utils.report --config_env configs/env.yml --configs PRETEXT.yml SCAN.yml SELF.yml
"""
import argparse
import json
import os

from utils.config import load_config

ROWS = (('pretext', 'pretext + k-means'), ('scan', 'SCAN'), ('selflabel', 'SCAN + self-label'))
METRICS = ('acc', 'nmi', 'ari', 'ami')


def step_metrics(results):
    if results['step'] == 'pretext':
        return results.get('kmeans')
    return {k: results[k] for k in METRICS} if 'acc' in results else None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--config_env', required=True)
    parser.add_argument('--configs', nargs=3, required=True, metavar='EXP.yml')
    parser.add_argument('--opts', nargs='*', default=[])
    parser.add_argument('--seconds', nargs=3, type=int, default=None)
    args = parser.parse_args()
    lines = [f"{'step':<20}" + ''.join(f"{m.upper():>8}" for m in METRICS) + f"{'time':>8}"]
    figures = []
    for i, (config, (step, title)) in enumerate(zip(args.configs, ROWS)):
        cfg = load_config(args.config_env, config, args.opts)
        path = os.path.join(cfg.paths[f'{step}_eval_dir'], 'metrics.json')
        with open(path) as f:
            results = json.load(f)
        m = step_metrics(results)
        cells = ''.join(f"{m[k]:>8.4f}" for k in METRICS) if m else f"{'n/a':>32}"
        took = f"{args.seconds[i]:>7}s" if args.seconds else ''
        lines.append(f"{title:<20}{cells}{took}")
        figures += results.get('figures', [])
    print('\n' + '\n'.join(lines))
    print('\nfigures:\n' + '\n'.join(f"  {p}" for p in figures))


if __name__ == '__main__':
    main()
