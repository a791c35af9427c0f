"""What scripts/run_folder.sh prints: where the export goes, and at the end the gallery's path,
the cluster sizes and every warning of the run.

    python -m annotation.folder_report where --config_env ENV --config_exp EXP --opts ...
    python -m annotation.folder_report report OUTDIR
"""
import argparse
import json
import os
import sys

from utils.config import ConfigError, load_config
from utils.text import plural

ANNOTATIONS = 'annotations'


def annotations_dir(config_env, config_exp, opts):
    """<root_dir>/<the run's output folder>/annotations: beside the steps' folders, so that
    each experiment has its own export."""
    cfg = load_config(config_env, config_exp, opts)
    return os.path.join(os.path.dirname(cfg.paths.pretext_dir), ANNOTATIONS)


def report_lines(out_dir):
    with open(os.path.join(out_dir, 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    kept = [c for c in summary['clusters'] if 'merged_into' not in c]
    lines = [f"gallery: {os.path.join(os.path.abspath(out_dir), 'index.html')}",
             f"{plural(summary['num_images'], 'image')} in {plural(len(kept), 'cluster')}:"]
    width = max(len(str(c['cluster'])) for c in kept)
    lines += [f"  {c['cluster']:>{width}}  {c['size']:>7,}  {c['name']}" for c in kept]
    if summary['skipped']:
        lines.append(f"{plural(len(summary['skipped']), 'file')} skipped: listed in "
                     f"{os.path.join(os.path.abspath(out_dir), 'summary.json')}")
    lines += [f"note: {n}" for n in summary.get('notes', [])]
    lines += [f"warning: {w}" for w in summary.get('warnings', [])]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    where = sub.add_parser('where')
    where.add_argument('--config_env', required=True)
    where.add_argument('--config_exp', required=True)
    where.add_argument('--opts', nargs='*', default=[])
    report = sub.add_parser('report')
    report.add_argument('out_dir')
    args = parser.parse_args(argv)
    if args.command == 'where':
        try:
            print(annotations_dir(args.config_env, args.config_exp, args.opts))
        except ConfigError as error:
            sys.exit(f"config error: {error}")
    else:
        print('\n'.join(report_lines(args.out_dir)))


if __name__ == '__main__':
    main()
