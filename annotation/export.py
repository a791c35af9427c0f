"""Annotation export: cluster names, the CSV of one row per image, and per-cluster grids.

Names come from a user's YAML file (cluster id -> name), else from the classes the clusters are
matched to when labels exist, else 'cluster K'. Everything is written into one output folder,
never next to the images.
"""
import csv
import json
import os
import re

import numpy as np
import yaml

from utils.errors import UserError
from utils.paths import is_inside
from utils.plots import prototype_grid

CSV_NAME = 'annotations.csv'
NAMES_NAME = 'names.yml'
GRID_COLUMNS = 8
GRID_ROWS = 2


class AnnotationError(UserError, ValueError):
    """A names file or an output folder the export cannot use; the message names it."""


def default_names(num_clusters, matched=None):
    """'cluster K', or the matched class name where `matched` (cluster -> name or None) has one."""
    names = {k: f"cluster {k}" for k in range(num_clusters)}
    names.update({k: name for k, name in (matched or {}).items() if name is not None})
    return names


def _cluster_id(key):
    """An int cluster id from a YAML key (3 or '3'); None for anything else."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key.strip())
    return None


def read_names(path, num_clusters):
    """{cluster id: name} from a user's YAML mapping; clusters left out keep their default name.
    Ids must be clusters of the model (0 .. num_clusters-1); names non-empty text."""
    if not os.path.isfile(path):
        raise AnnotationError(f"names file not found: {path}")
    with open(path, encoding='utf-8') as f:
        try:
            content = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise AnnotationError(f"{path}: not valid YAML: {e}") from e
        except UnicodeDecodeError as e:
            raise AnnotationError(f"{path}: not a text file (byte {e.object[e.start]:#04x} at "
                                  f"offset {e.start} is not UTF-8 text): a names file is YAML "
                                  f"text") from e
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise AnnotationError(f"{path}: must map cluster ids to names, one per line like "
                              f"'3: cats', got {type(content).__name__}")
    names = {}
    for key, value in content.items():
        cluster = _cluster_id(key)
        if cluster is None or not 0 <= cluster < num_clusters:
            raise AnnotationError(f"{path}: unknown cluster id {key!r}: the model has clusters "
                                  f"0 to {num_clusters - 1}")
        if cluster in names:
            raise AnnotationError(f"{path}: cluster {cluster} is named twice")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) \
                or not str(value).strip():
            raise AnnotationError(f"{path}: the name of cluster {cluster} must be non-empty "
                                  f"text, got {value!r}")
        names[cluster] = str(value).strip()
    return names


def check_output_folder(out_dir, image_folders):
    """Refuse an output folder inside an image folder: nothing is ever written there."""
    for folder in image_folders:
        if is_inside(out_dir, folder):
            raise AnnotationError(f"output folder {out_dir} is inside the image folder "
                                  f"{os.path.realpath(folder)}, where nothing is written: "
                                  f"choose a folder outside it")


def remove_previous_export(out_dir):
    """Delete the thumbnails and grids an earlier export left in out_dir (only files named as
    this module names them), so that a rerun shows no stale image."""
    for sub, pattern in (('thumbs', r'\d{7,}\.png'), ('prototypes', r'cluster_\d{3,}\.png')):
        folder = os.path.join(out_dir, sub)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if re.fullmatch(pattern, name):
                    os.remove(os.path.join(folder, name))


def write_csv(path, paths, clusters, confidences, names, labels=None):
    """One row per image: path, cluster, confidence, name (and label when known)."""
    header = ['path', 'cluster', 'confidence', 'name'] + (['label'] if labels is not None else [])
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, (image_path, cluster) in enumerate(zip(paths, clusters)):
            row = [image_path, int(cluster), f"{confidences[i]:.4f}", names[int(cluster)]]
            writer.writerow(row + ([labels[i]] if labels is not None else []))


def write_names_template(path, names, sizes):
    """The names in use as an editable YAML file for --names (JSON strings are valid YAML)."""
    lines = ["# Cluster id: name. Edit the names (or delete lines), then pass this file with",
             "# --names to eval.py --annotate; ids must be clusters of the model."]
    lines += [f"{k}: {json.dumps(names[k], ensure_ascii=False)}  # {sizes[k]} images"
              for k in sorted(names)]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


def ranked_members(probs, clusters, cluster):
    """Indices of a cluster's images, most confident first."""
    members = np.flatnonzero(clusters == cluster)
    return members[np.argsort(-probs[members, cluster], kind='stable')]


def write_cluster_grids(out_dir, load_image, probs, clusters, names):
    """prototypes/cluster_K.png: the most confident images of each non-empty cluster, in a grid;
    returns {cluster: path relative to out_dir}."""
    os.makedirs(os.path.join(out_dir, 'prototypes'), exist_ok=True)
    grids = {}
    for k in range(probs.shape[1]):
        members = ranked_members(probs, clusters, k)[:GRID_COLUMNS * GRID_ROWS]
        if len(members) == 0:
            continue
        images = [np.asarray(load_image(int(i))) for i in members]
        rows = [images[r:r + GRID_COLUMNS] for r in range(0, len(images), GRID_COLUMNS)]
        titles = [f"{k}: {names[k]}\n(n={int((clusters == k).sum())})"] + [''] * (len(rows) - 1)
        relative = f"prototypes/cluster_{k:03d}.png"  # a URL path in the gallery too
        prototype_grid(rows, titles, os.path.join(out_dir, relative))
        grids[k] = relative
    return grids
