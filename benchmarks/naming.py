"""Naming quality of a labelled export: how many clusters got their matched class's name.

    python eval.py --config_env configs/env.yml \
        --config_exp configs/selflabel/selflabel_cifar10.yml --annotate out/cifar10 \
        --naming-model ViT-B-32 --naming-weights open_clip_model.safetensors
    python benchmarks/naming.py out/cifar10

Each cluster is matched to a class by Hungarian matching on annotations.csv (cluster x label
counts). A name is right when it is the class name (case, '_' and '-' ignored) or, for an entry
of the default vocabulary, one of the lemmas of its WordNet synset (CIFAR-10's 'automobile' is
the synset 'car, auto, automobile, machine, motorcar'). Printed: the chosen (unique) names right,
and the clusters with the class among their 3 suggestions (IC|TC reports 10/10 on CIFAR-10 and
STL-10). Prints figures, asserts nothing.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from annotation.naming import default_vocabulary  # noqa: E402
from annotation.tables import from_cell  # noqa: E402


def normalized(name):
    return ' '.join(name.lower().replace('_', ' ').replace('-', ' ').split())


def matched_classes(csv_path):
    """{cluster: class} by Hungarian matching of the export's clusters to its labels."""
    csv.field_size_limit(2 ** 30)
    with open(csv_path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    if not rows or 'label' not in rows[0]:
        sys.exit(f"{csv_path} has no label column: export a labelled split or folder")
    clusters = np.array([int(r['cluster']) for r in rows])
    labels = [from_cell(r['label']) for r in rows]
    classes = sorted({label for label in labels if label})
    counts = np.zeros((clusters.max() + 1, len(classes)), dtype=int)
    for k, label in zip(clusters, labels):
        if label:
            counts[k, classes.index(label)] += 1
    rows_, cols = linear_sum_assignment(counts, maximize=True)
    return {int(k): classes[c] for k, c in zip(rows_, cols) if counts[k, c]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('export', help='the folder of eval.py --annotate ... --naming-model')
    args = parser.parse_args()
    with open(os.path.join(args.export, 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    if 'naming' not in summary:
        sys.exit(f"{args.export} was exported without --naming-model")
    matched = matched_classes(os.path.join(args.export, 'annotations.csv'))
    vocabulary = default_vocabulary()
    synonyms = dict(zip(vocabulary.names, vocabulary.synonyms))

    def right(name, cls):
        return normalized(cls) in {normalized(s) for s in synonyms.get(name, []) + [name]}

    chosen_right = top3_right = named = 0
    for cluster in summary['clusters']:
        k, cls = cluster['cluster'], matched.get(cluster['cluster'])
        if 'suggestions' not in cluster or cls is None:
            continue
        named += 1
        top3 = [s['name'] for s in cluster['suggestions']]
        chosen_right += right(cluster['suggested_name'], cls)
        top3_right += any(right(name, cls) for name in top3)
        print(f"cluster {k:3d} class {cls!r:20} chosen {cluster['suggested_name'][:40]!r:42} "
              f"{'right' if right(cluster['suggested_name'], cls) else 'wrong'}; top 3: "
              + ', '.join(f"{s['name'][:30]} {s['score']:.2f}" for s in cluster['suggestions']))
    print(f"{summary['naming']['model']} ({summary['naming']['vocabulary_size']:,} names, "
          f"{summary['naming']['images_per_cluster']} images per cluster): chosen name right "
          f"for {chosen_right}/{named} clusters; the class among the top 3 for "
          f"{top3_right}/{named}")


if __name__ == '__main__':
    main()
