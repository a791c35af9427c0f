"""Where scripts/run_folder.sh's export goes, and the report that ends an export's output
(eval.py --annotate): the gallery's path, the cluster sizes and names, and every note and warning
of the run.

    python -m annotation.folder_report where --config_env ENV --config_exp EXP --opts ...
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass

from utils.config import ConfigError, load_config
from utils.text import plural

ANNOTATIONS = 'annotations'


def annotations_dir(config_env, config_exp, opts):
    """<root_dir>/<the run's output folder>/annotations: beside the steps' folders, so that
    each experiment has its own export."""
    cfg = load_config(config_env, config_exp, opts)
    return os.path.join(os.path.dirname(cfg.paths.pretext_dir), ANNOTATIONS)


@dataclass
class ExportReport:
    gallery: str    # 'gallery: <path of index.html>'
    lines: list     # the sizes and names of the clusters shown, the skipped files
    notes: list
    warnings: list


def export_report(out_dir):
    """What an export's summary.json says, to print at the end of its run."""
    with open(os.path.join(out_dir, 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    kept = [c for c in summary['clusters'] if 'merged_into' not in c]
    lines = [f"{plural(summary['num_images'], 'image')} in {plural(len(kept), 'cluster')}:"]
    width = max(len(str(c['cluster'])) for c in kept)
    lines += [f"  {c['cluster']:>{width}}  {c['size']:>7,}  {c['name']}" for c in kept]
    if summary['skipped']:
        lines.append(f"{plural(len(summary['skipped']), 'file')} skipped: listed in "
                     f"{os.path.join(os.path.abspath(out_dir), 'summary.json')}")
    return ExportReport(f"gallery: {os.path.join(os.path.abspath(out_dir), 'index.html')}",
                        lines, summary.get('notes', []), summary.get('warnings', []))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    where = sub.add_parser('where')
    where.add_argument('--config_env', required=True)
    where.add_argument('--config_exp', required=True)
    where.add_argument('--opts', nargs='*', default=[])
    args = parser.parse_args(argv)
    try:
        print(annotations_dir(args.config_env, args.config_exp, args.opts))
    except ConfigError as error:
        sys.exit(f"config error: {error}")


if __name__ == '__main__':
    main()
