"""Evaluate a trained model: metrics, confusion matrix, prototypes, annotations, predictions.

    python eval.py --config_env configs/env.yml --config_exp configs/scan/scan_digits.yml
    python eval.py ... --annotate OUTDIR [--names NAMES.yml] [--predict FOLDER]

The model defaults to the output of the config's own step. Pretext model: weighted kNN accuracy
and k-means on the L2-normalised features (fit on train, scored on val/test). SCAN or self-label
model: Hungarian ACC, NMI, ARI, AMI, top-5, per-class precision/recall, confusion_matrix.png,
prototypes.png, all in <step dir>/eval/ with metrics.json.

--annotate OUTDIR (SCAN or self-label model) also writes, for the images of the val split (for a
folder: all its images) or, with --predict FOLDER, for the images of FOLDER: annotations.csv
(path, cluster, confidence, name, and label when known), prototypes/cluster_K.png, an
index.html gallery (open it in a browser, no server needed), names.yml (the names used, to edit
and pass back with --names) and summary.json.
"""
import json
import os

import numpy as np
import torch
from sklearn.cluster import KMeans

from annotation.export import (CSV_NAME, NAMES_NAME, AnnotationError, check_output_folder,
                               default_names, ranked_members, read_names, remove_previous_export,
                               write_cluster_grids, write_csv, write_names_template)
from annotation.gallery import ClusterSection, Thumb, relative_href, save_thumbnail, write_gallery
from data import build_dataset
from data.device_loader import make_eval_loader
from data.image_folder import ImageFolderDataset, load_rgb
from data.settings import complete_image_settings
from models import ContrastiveModel, build_backbone
from models.loading import load_contrastive_weights, load_trained_clustering_model, require
from utils.inference import compute_features, predict_clusters
from utils.knn import weighted_knn_accuracy
from utils.metrics import cluster_metrics, confusion_counts, per_class_precision_recall
from utils.mining import neighbor_accuracy
from utils.plots import confusion_matrix_figure, prototype_grid
from utils.runtime import get_args_parser, log, run_cli, start_run

PROTOTYPES_PER_CLUSTER = 8
GALLERY_MOST, GALLERY_LEAST = 12, 6  # thumbnails per cluster: most and least confident images


def evaluate_pretext(cfg, model_path, device):
    model = ContrastiveModel(build_backbone(cfg.backbone), **cfg.model_kwargs)
    model = load_contrastive_weights(model, model_path).to(device)
    if cfg.setup == 'moco':  # the features its neighbours are mined on: the backbone's
        model.contrastive_head = torch.nn.Identity()
    model.eval()
    train_set, val_set = build_dataset(cfg, 'train'), build_dataset(cfg, 'val')
    train_f, train_t = compute_features(model, make_eval_loader(cfg, train_set, device), device)
    val_f, val_t = compute_features(model, make_eval_loader(cfg, val_set, device), device)
    results = {'step': 'pretext', 'model': model_path}
    if not val_set.has_labels:
        return results
    results['knn_acc'] = weighted_knn_accuracy(train_f, train_t, val_f, val_t, cfg.num_classes)
    # k-means as the paper's baseline: normalised features, fit on train, scored on val/test.
    train_np = torch.nn.functional.normalize(train_f, dim=1).cpu().numpy()
    val_np = torch.nn.functional.normalize(val_f, dim=1).cpu().numpy()
    kmeans = KMeans(n_clusters=cfg.num_classes, n_init=10, random_state=cfg.seed).fit(train_np)
    metrics = cluster_metrics(kmeans.predict(val_np), val_t.cpu().numpy(), cfg.num_classes)
    results['kmeans'] = {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami')}
    if os.path.isfile(cfg.paths.topk_neighbors_train_path):
        results['neighbor_acc_train'] = neighbor_accuracy(
            np.load(cfg.paths.topk_neighbors_train_path), train_t.cpu().numpy())
    return results


def cluster_order(mapping, num_clusters):
    """Clusters sorted by the class they match; unmatched clusters last."""
    matched = sorted((c, k) for k, c in mapping.items() if c >= 0)
    return [k for _, k in matched] + [k for k in range(num_clusters) if mapping[k] < 0]


def load_clustering_model(path, backbone, device):
    """(model on device, head index) of a SCAN or self-label model file, ours or the original's
    (whose files do not name their backbone: the config's is used)."""
    try:
        model, head = load_trained_clustering_model(path, backbone)
    except (IndexError, KeyError) as e:  # no cluster head: a pretext model, or another file
        raise AnnotationError(f"{path} is not a SCAN or self-label model (no cluster head)") from e
    return model.to(device), head


def predict_dataset(model, head, dataset, cfg, device):
    """(probabilities N x clusters of the chosen head, targets) under the validation transform."""
    predictions = predict_clusters(model, make_eval_loader(cfg, dataset, device), device)
    return predictions['probs'][head], predictions['targets']


def evaluate_clustering(cfg, model_path, out_dir, val_set, probs, targets, head):
    """Metrics and figures of a clustering model from its predictions on the val split."""
    clusters = probs.argmax(axis=1)
    num_clusters = probs.shape[1]
    results = {'step': cfg.step, 'model': model_path, 'head': head,
               'cluster_sizes': np.bincount(clusters, minlength=num_clusters).tolist()}
    names = default_names(num_clusters)
    if val_set.has_labels:
        classes = val_set.classes or [str(c) for c in range(cfg.num_classes)]
        metrics = cluster_metrics(clusters, targets, len(classes), probs=probs)
        mapping = metrics.pop('mapping')
        results.update(metrics)
        matched = np.array([mapping[k] for k in clusters])
        known = targets >= 0
        results['per_class'] = [dict(row, name=classes[row['class']]) for row in
                                per_class_precision_recall(matched[known], targets[known],
                                                           len(classes))]
        results['cluster_to_class'] = {str(k): (classes[c] if c >= 0 else None)
                                       for k, c in mapping.items()}
        names.update({k: classes[c] for k, c in mapping.items() if c >= 0})
        order = cluster_order(mapping, num_clusters)
        counts = confusion_counts(clusters[known], targets[known], num_clusters, len(classes)).T
        path = os.path.join(out_dir, 'confusion_matrix.png')
        confusion_matrix_figure(counts[:, order], classes, [names[k] for k in order], path,
                                f"{cfg.step} on {cfg.val_db_name}: ACC {metrics['acc']:.3f}")
        results['figures'] = [path]
        results['cluster_order'] = order
    path = os.path.join(out_dir, 'prototypes.png')
    write_prototypes(val_set, probs, names, results.get('cluster_order', range(num_clusters)),
                     path, f"most confident images per cluster ({cfg.step})")
    results.setdefault('figures', []).append(path)
    return results


def write_prototypes(dataset, probs, names, order, path, title):
    dataset.transform = None
    clusters = probs.argmax(axis=1)
    rows, titles = [], []
    for k in order:
        members = ranked_members(probs, clusters, k)
        rows.append([np.asarray(dataset.load_image(int(i)))
                     for i in members[:PROTOTYPES_PER_CLUSTER]])
        titles.append(f"{k}: {names[k]}\n(n={len(members)})")
    prototype_grid(rows, titles, path, title)


def print_results(results):
    if results['step'] == 'pretext':
        km = results.get('kmeans')
        if km:
            log(f"pretext: kNN acc {results['knn_acc']:.4f}; k-means ACC {km['acc']:.4f} "
                f"NMI {km['nmi']:.4f} ARI {km['ari']:.4f} AMI {km['ami']:.4f}", 'green')
        return
    if 'acc' in results:
        log(f"{results['step']}: ACC {results['acc']:.4f}  NMI {results['nmi']:.4f}  "
            f"ARI {results['ari']:.4f}  AMI {results['ami']:.4f}  top-5 {results['acc_top5']:.4f}",
            'green')
    log(f"cluster sizes: {results['cluster_sizes']}")


def original_image(dataset, index):
    """The image as stored (full size) for thumbnails and grids; the dataset's own otherwise."""
    if dataset.paths is not None:
        return load_rgb(dataset.paths[index])
    return dataset.load_image(index)


def image_names(dataset, source):
    """Per image: its file path, or '<source>[i]' for a dataset that is not made of files."""
    if dataset.paths is not None:
        return list(dataset.paths)
    return [f"{source}[{i}]" for i in range(len(dataset))]


def class_names(dataset, targets):
    """The dataset's class names, or the class ids as text where it has none."""
    return dataset.classes or [str(c) for c in range(int(targets.max()) + 1)]


def label_names(dataset, targets):
    """Per image: the name of its true class ('' where unknown); None for unlabeled data."""
    if not dataset.has_labels:
        return None
    classes = class_names(dataset, targets)
    return [classes[t] if t >= 0 else '' for t in targets]


def match_names(dataset, probs, targets):
    """{cluster: class name} by Hungarian matching, and the metrics, where the images have
    labels; ({}, None) otherwise."""
    if not dataset.has_labels:
        return {}, None
    classes = class_names(dataset, targets)
    metrics = cluster_metrics(probs.argmax(axis=1), targets, len(classes), probs=probs)
    mapping = metrics.pop('mapping')
    return {k: classes[c] for k, c in mapping.items() if c >= 0}, metrics


def gallery_sections(out_dir, dataset, probs, names, display_names):
    clusters, confidences = probs.argmax(axis=1), probs.max(axis=1)
    labels = label_names(dataset, dataset.targets) if dataset.has_labels else None

    def thumb(i):
        src, small = save_thumbnail(original_image(dataset, i), out_dir, i)
        title = display_names[i] + (f" (label: {labels[i]})" if labels else '')
        link = relative_href(dataset.paths[i], out_dir) if dataset.paths is not None else ''
        return Thumb(src, f"{confidences[i]:.3f}", title, link, small)

    sections = []
    for k in range(probs.shape[1]):
        ranked = ranked_members(probs, clusters, k)
        least = ranked[max(GALLERY_MOST, len(ranked) - GALLERY_LEAST):][::-1]
        sections.append(ClusterSection(k, names[k], len(ranked),
                                       [thumb(int(i)) for i in ranked[:GALLERY_MOST]],
                                       [thumb(int(i)) for i in least]))
    return sections


def annotate(out_dir, dataset, probs, targets, names, source, model_path, metrics=None,
             names_file=None):
    """annotations.csv, prototypes/cluster_K.png, index.html, names.yml (unless that is the
    user's own --names file) and summary.json."""
    os.makedirs(out_dir, exist_ok=True)
    remove_previous_export(out_dir)
    clusters, confidences = probs.argmax(axis=1), probs.max(axis=1)
    sizes = np.bincount(clusters, minlength=probs.shape[1]).tolist()
    paths = image_names(dataset, source)
    csv_path = os.path.join(out_dir, CSV_NAME)
    write_csv(csv_path, paths, clusters, confidences, names, label_names(dataset, targets))
    grids = write_cluster_grids(out_dir, lambda i: original_image(dataset, i), probs, clusters,
                                names)
    folder = getattr(dataset, 'folder', None)
    shown = [os.path.relpath(p, folder) if folder else p for p in paths]
    sections = gallery_sections(out_dir, dataset, probs, names, shown)
    for section in sections:
        section.grid = grids.get(section.cluster, '')
    skipped = [(os.path.relpath(p, folder), reason) for p, reason in
               getattr(dataset, 'skipped', [])] if folder else []
    lines = [f"{len(paths):,} images in {probs.shape[1]} clusters "
             f"({sum(1 for n in sizes if n)} non-empty); model {model_path}."]
    if metrics:
        lines.append(f"Against the labels of the images: ACC {metrics['acc']:.4f}, "
                     f"NMI {metrics['nmi']:.4f}, ARI {metrics['ari']:.4f}, "
                     f"AMI {metrics['ami']:.4f}.")
    if skipped:
        lines.append(f"{len(skipped):,} files were skipped (listed at the end).")
    write_gallery(os.path.join(out_dir, 'index.html'), f"Clusters of {folder or source}", lines,
                  sections, skipped, CSV_NAME)
    template = os.path.join(out_dir, NAMES_NAME)
    if not (names_file and os.path.exists(template) and os.path.samefile(names_file, template)):
        write_names_template(template, names, sizes)
    summary = {'images': folder or source, 'model': model_path, 'num_images': len(paths),
               'clusters': [{'cluster': k, 'name': names[k], 'size': sizes[k]}
                            for k in range(len(sizes))],
               'skipped': [{'path': p, 'reason': r} for p, r in skipped]}
    if metrics:
        summary['metrics'] = {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami') if k in metrics}
    with open(os.path.join(out_dir, 'summary.json'), 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    return csv_path


def get_eval_parser():
    parser = get_args_parser('Evaluate a model; export annotations')
    parser.add_argument('--model', default=None, help="model file (default: the step's own)")
    parser.add_argument('--annotate', default=None, metavar='OUTDIR',
                        help='SCAN or self-label model: write annotations.csv, a prototype grid '
                             'per cluster and an index.html gallery into OUTDIR')
    parser.add_argument('--names', default=None, metavar='NAMES.yml',
                        help='with --annotate: YAML mapping cluster id -> name (default: the '
                             'matched class names where labels exist, else "cluster K")')
    parser.add_argument('--predict', default=None, metavar='FOLDER',
                        help='with --annotate: assign the images of FOLDER (not trained on) to '
                             'the clusters and annotate those instead')
    return parser


def check_annotation_args(args, cfg):
    """Refuse what --annotate/--names/--predict cannot do before any model is run."""
    if (args.names or args.predict) and not args.annotate:
        raise AnnotationError("--names and --predict go with --annotate OUTDIR (where the "
                              "results are written)")
    if args.annotate and cfg.step == 'pretext':
        raise AnnotationError(
            f"{args.config_exp} is a pretext (SimCLR) step: its model has no clusters to "
            f"annotate. Run scan.py (and selflabel.py), then pass configs/scan/... or "
            f"configs/selflabel/... with the same --opts")
    if args.annotate:
        check_output_folder(args.annotate, [f for f in (cfg.folder, args.predict) if f])


def export_annotations(args, cfg, device, model, head, model_path, user_names, predict_set,
                       evaluated):
    """--annotate: the val split's images (as evaluated), or with --predict the new folder's."""
    val_set, probs, targets, results = evaluated
    matched = {int(k): v for k, v in results.get('cluster_to_class', {}).items()}
    dataset, source = val_set, f"{cfg.val_db_name}-val"
    metrics = results if 'acc' in results else None
    if predict_set is not None:
        probs, targets = predict_dataset(model, head, predict_set, cfg, device)
        dataset, source = predict_set, args.predict
        own, metrics = match_names(predict_set, probs, targets)
        matched = own or matched
    names = default_names(probs.shape[1], matched)
    names.update(user_names)
    csv_path = annotate(args.annotate, dataset, probs, targets, names, source, model_path,
                        metrics, args.names)
    log(f"annotations: {csv_path}\ngallery: {os.path.join(args.annotate, 'index.html')}",
        'green')
    return csv_path


def main(args):
    cfg, device = start_run(args, setup=None)
    check_annotation_args(args, cfg)
    complete_image_settings(cfg)
    model_path = args.model or cfg.paths[f'{cfg.step}_model']
    require(model_path, {'pretext': 'simclr.py', 'scan': 'scan.py',
                         'selflabel': 'selflabel.py'}[cfg.step])
    out_dir = cfg.paths[f'{cfg.step}_eval_dir']
    os.makedirs(out_dir, exist_ok=True)
    if cfg.step == 'pretext':
        results = evaluate_pretext(cfg, model_path, device)
    else:
        model, head = load_clustering_model(model_path, cfg.backbone, device)
        # the names file and the new folder are checked before the (long) predictions
        user_names = read_names(args.names, model.cluster_head[0].out_features) \
            if args.names else {}
        predict_set = None
        if args.predict:  # resized as the training images were (benchmarks: to the crop)
            t = cfg.transformation_kwargs
            predict_set = ImageFolderDataset(args.predict, resize=t.resize or t.crop_size)
        val_set = build_dataset(cfg, 'val')
        probs, targets = predict_dataset(model, head, val_set, cfg, device)
        results = evaluate_clustering(cfg, model_path, out_dir, val_set, probs, targets, head)
    path = os.path.join(out_dir, 'metrics.json')
    with open(path, 'w') as f:
        json.dump(results, f, indent=2)
    print_results(results)
    log(f"metrics: {path}" + ''.join(f"\nfigure: {p}" for p in results.get('figures', [])))
    if args.annotate:
        results['annotations'] = export_annotations(
            args, cfg, device, model, head, model_path, user_names, predict_set,
            (val_set, probs, targets, results))
    return results


if __name__ == '__main__':
    run_cli(main, get_eval_parser())
