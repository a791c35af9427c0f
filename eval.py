"""Evaluate a trained model: metrics, confusion matrix, prototypes, annotations, predictions.

    python eval.py --config_env configs/env.yml --config_exp configs/scan/scan_digits.yml
    python eval.py ... --annotate OUTDIR [--names NAMES.yml] [--corrections CORRECTIONS.csv]
                       [--predict FOLDER] [--force]
                       [--naming-model NAME [--naming-weights hub|PATH] [--vocabulary FILE]
                        [--naming-images N]]

The model defaults to the output of the config's own step. Pretext model: weighted kNN accuracy
and k-means on the L2-normalised features (fit on train, scored on val/test). SCAN or self-label
model: Hungarian ACC, NMI, ARI, AMI, top-5, per-class precision/recall, confusion_matrix.png,
prototypes.png (the original's: one image per cluster), most_confident.png (a row of the most
confident images per cluster), all in <step dir>/eval/ with metrics.json. A pretext model also
gets the original's top-1/5/20 neighbour accuracy within the val split.

--annotate OUTDIR (SCAN or self-label model) also exports, for the images of the val split (for a
folder: all its images) or, with --predict FOLDER, for the images of FOLDER, a CSV, a gallery in
which to name and correct the clusters, grids, names.yml and summary.json (annotation/export.py),
with the names of --names and the corrections of --corrections applied. --naming-model names the
clusters with a CLIP model (annotation/naming.py; docs/naming.md).

A re-export of the same model file on the same images (other --names or --corrections) runs no
model: the saved predictions, metrics and figures, and the map, duplicates and outliers derived
from them, are read back (annotation/prediction_cache.py, annotation/derived_cache.py). torch and
the models are imported inside the functions that run a model, so that such a re-export loads
neither (docs/first-folder.md).
"""
import json
import os

import numpy as np

from annotation.class_folders import check_destination, export_class_folders
from annotation.derived_cache import DerivedCache
from annotation.export import (AnnotationError, ExportRequest, check_request, default_names,
                               prepare_export, ranked_members, read_names)
from annotation.folder_report import export_report
from annotation.images import match_names
from annotation.naming import IMAGES_PER_CLUSTER, naming_request, suggest_names
from annotation.overview import OverviewSettings
from annotation.prediction_cache import (cache_path, cached_predictions, load_predictions,
                                         prediction_key, save_predictions, saved_metrics,
                                         saved_model_facts)
from data import build_dataset, val_is_train
from data.fingerprint import check_fingerprint
from data.image_folder import ImageFolderDataset
from data.settings import complete_image_settings, use_training_transform
from utils.checkpoint import atomic_write_text, require
from utils.config import is_timm_backbone
from utils.outputs import protect
from utils.plots import confusion_matrix_figure, one_per_cluster_figure, prototype_grid
from utils.prototypes import original_prototypes
from utils.run_warnings import collapse_warnings, run_warnings
from utils.runtime import (get_args_parser, load_run_config, lock_run_folder, log, run_cli,
                           start_device)

PROTOTYPES_PER_CLUSTER = 8
NAMING_CACHE = 'naming-cache'  # <root_dir>/naming-cache: text embeddings of vocabularies


def pretext_features(cfg, model_path, device):
    """(train features, targets, val features, targets) of a pretext model: the contrastive
    features, the backbone's for imported MoCo weights (what its neighbours are mined on), or a
    pretrained timm backbone's own (cached by step 1)."""
    import torch

    from data.device_loader import make_eval_loader
    from models import ContrastiveModel, build_backbone
    from models.loading import load_contrastive_weights
    from utils.inference import compute_features

    if is_timm_backbone(cfg.backbone):
        return timm_backbone_features(cfg, model_path, device)
    model = ContrastiveModel(build_backbone(cfg.backbone), **cfg.model_kwargs)
    model = load_contrastive_weights(model, model_path).to(device)
    if cfg.setup == 'moco':
        model.contrastive_head = torch.nn.Identity()
    model.eval()
    train_set, val_set = build_dataset(cfg, 'train'), build_dataset(cfg, 'val')
    train_f, train_t = compute_features(model, make_eval_loader(cfg, train_set, device), device)
    val_f, val_t = compute_features(model, make_eval_loader(cfg, val_set, device), device)
    return train_f, train_t, val_f, val_t


def timm_backbone_features(cfg, model_path, device):
    """The features of train and val of a pretrained timm backbone (step 1's model file), from
    step 1's cache where it fits, else embedded (and cached)."""
    from data.feature_cache import backbone_fingerprint, split_features
    from models import build_backbone
    from models.original import read_model_file
    from utils.checkpoint import load_state_dict_strict
    from utils.device import prepare_model

    backbone = build_backbone(cfg.backbone)['backbone']
    state = {k.removeprefix('backbone.'): v for k, v in read_model_file(model_path).state.items()}
    load_state_dict_strict(backbone, state, model_path)
    backbone = prepare_model(backbone, device).eval()
    key = backbone_fingerprint(cfg.backbone, backbone)
    train_f, train_t, _ = split_features(cfg, backbone, key, 'train', device)
    val_f, val_t, _ = split_features(cfg, backbone, key, 'val', device)
    return train_f.to(device), train_t.to(device), val_f.to(device), val_t.to(device)


def evaluate_pretext(cfg, model_path, device):
    import torch
    from sklearn.cluster import KMeans

    from utils.knn import weighted_knn_accuracy
    from utils.metrics import cluster_metrics
    from utils.mining import neighbor_accuracies, neighbor_accuracy, read_neighbors

    train_f, train_t, val_f, val_t = pretext_features(cfg, model_path, device)
    results = {'step': 'pretext', 'model': model_path}
    if not bool((val_t >= 0).any()):
        return results
    # num_classes=auto: K is chosen in step 2; the pretext k-means uses the labels' classes
    classes = int(val_t.max()) + 1 if cfg.num_classes == 'auto' else cfg.num_classes
    results['knn_acc'] = weighted_knn_accuracy(train_f, train_t, val_f, val_t, k=cfg.knn_k,
                                               temperature=cfg.criterion_kwargs.temperature,
                                               exclude_self=val_is_train(cfg))
    # the original's judgement of a pretext model: neighbours mined within the val split
    results['val_neighbor_acc'] = {f'top{k}': acc for k, acc in
                                   neighbor_accuracies(val_f, val_t.cpu().numpy()).items()}
    # k-means as the paper's baseline: normalised features, fit on train, scored on val/test.
    train_np = torch.nn.functional.normalize(train_f, dim=1).cpu().numpy()
    val_np = torch.nn.functional.normalize(val_f, dim=1).cpu().numpy()
    kmeans = KMeans(n_clusters=classes, n_init=10, random_state=cfg.seed).fit(train_np)
    metrics = cluster_metrics(kmeans.predict(val_np), val_t.cpu().numpy(), classes)
    results['kmeans'] = {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami')}
    if os.path.isfile(cfg.paths.topk_neighbors_train_path):
        results['neighbor_acc_train'] = neighbor_accuracy(
            read_neighbors(cfg.paths.topk_neighbors_train_path), train_t.cpu().numpy())
    return results


def cluster_order(mapping, num_clusters):
    """Clusters sorted by the class they match; unmatched clusters last."""
    matched = sorted((c, k) for k, c in mapping.items() if c >= 0 and k < num_clusters)
    return [k for _, k in matched] + [k for k in range(num_clusters) if mapping.get(k, -1) < 0]


def load_clustering_model(path, backbone, device):
    """(model on device, head index) of a SCAN or self-label model file, ours or the original's
    (whose files do not name their backbone: the config's is used)."""
    from models.loading import load_trained_clustering_model

    try:
        model, head = load_trained_clustering_model(path, backbone)
    except (IndexError, KeyError) as e:  # no cluster head: a pretext model, or another file
        raise AnnotationError(f"{path} is not a SCAN or self-label model (no cluster head)") from e
    return model.to(device), head


def predict_dataset(model, head, dataset, cfg, device, with_features=False):
    """(probabilities N x clusters of the chosen head, targets[, backbone features]) under the
    validation transform."""
    from data.device_loader import make_eval_loader
    from utils.inference import predict_clusters

    predictions = predict_clusters(model, make_eval_loader(cfg, dataset, device), device)
    found = predictions['probs'][head], predictions['targets']
    return found + (predictions['features'],) if with_features else found


def predict_val(model, head, val_set, cfg, device):
    """(probabilities of `head`, targets, backbone features) on the val split: from the
    features of a frozen backbone that the steps cached, where they are this model's; else by
    running the model."""
    from data.feature_cache import cached_eval_loader, cached_val_features
    from models.heads import heads_on_features
    from utils.device import prepare_model
    from utils.inference import predict_clusters

    features = cached_val_features(cfg, model.backbone, val_set, device)
    if features is None:
        return predict_dataset(model, head, val_set, cfg, device, with_features=True)
    heads = prepare_model(heads_on_features(model), device)
    predictions = predict_clusters(heads, cached_eval_loader(cfg, features), device)
    return predictions['probs'][head], predictions['targets'], predictions['features']


def evaluate_clustering(cfg, model_path, out_dir, val_set, probs, targets, head, features):
    """Metrics and figures of a clustering model from its predictions on the val split."""
    from utils.metrics import (cluster_metrics, confusion_counts, many_to_one_accuracy,
                               per_class_precision_recall)

    clusters = probs.argmax(axis=1)
    num_clusters = probs.shape[1]
    results = {'step': cfg.step, 'model': model_path, 'head': head,
               'cluster_sizes': np.bincount(clusters, minlength=num_clusters).tolist()}
    names = default_names(num_clusters)
    if val_set.has_labels:
        classes = val_set.classes or [str(c) for c in range(cfg.num_classes)]
        metrics = cluster_metrics(clusters, targets, len(classes), probs=probs)
        mapping = {k: c for k, c in metrics.pop('mapping').items() if k < num_clusters}
        results.update(metrics)
        if num_clusters > len(classes):  # overclustering: Hungarian leaves clusters unmatched
            results['acc_many_to_one'] = many_to_one_accuracy(
                clusters[targets >= 0], targets[targets >= 0], num_clusters, len(classes))
        matched = np.array([mapping[k] for k in clusters])
        known = targets >= 0
        results['per_class'] = [dict(row, name=classes[row['class']]) for row in
                                per_class_precision_recall(matched[known], targets[known],
                                                           len(classes))]
        sizes = results['cluster_sizes']  # an empty cluster is never named after a class
        results['cluster_to_class'] = {str(k): (classes[c] if c >= 0 and sizes[k] else None)
                                       for k, c in mapping.items()}
        names.update({k: classes[c] for k, c in mapping.items() if c >= 0 and sizes[k]})
        order = cluster_order(mapping, num_clusters)
        counts = confusion_counts(clusters[known], targets[known], num_clusters, len(classes)).T
        path = os.path.join(out_dir, 'confusion_matrix.png')
        confusion_matrix_figure(counts[:, order], classes, [names[k] for k in order], path,
                                f"{cfg.step} on {cfg.val_db_name}: ACC {metrics['acc']:.3f}")
        results['figures'] = [path]
        results['cluster_order'] = order
    order = results.get('cluster_order', range(num_clusters))
    val_set.transform = None  # the figures show the images themselves
    path = os.path.join(out_dir, 'prototypes.png')
    write_original_prototypes(val_set, probs, features, names, order, path,
                              f"prototype of each cluster ({cfg.step})")
    grid = os.path.join(out_dir, 'most_confident.png')
    write_confident_grid(val_set, probs, names, order, grid,
                         f"most confident images per cluster ({cfg.step})")
    results.setdefault('figures', []).extend([path, grid])
    results['notes'] = run_warnings(cfg.paths, cfg.step, kind='note')
    results['warnings'] = run_warnings(cfg.paths, cfg.step) \
        + collapse_warnings(results['cluster_sizes'])
    return results


def write_original_prototypes(dataset, probs, features, names, order, path, title):
    """The original's `prototypes` figure: one image per cluster (utils/prototypes.py)."""
    prototypes = original_prototypes(probs, features)
    images = [np.asarray(dataset.load_image(prototypes[k])) if k in prototypes else None
              for k in order]
    one_per_cluster_figure(images, [f"{k}: {names[k]}" for k in order], path, title)


def write_confident_grid(dataset, probs, names, order, path, title):
    clusters = probs.argmax(axis=1)
    rows, titles = [], []
    for k in order:
        members = ranked_members(probs, clusters, k)
        rows.append([np.asarray(dataset.load_image(int(i)))
                     for i in members[:PROTOTYPES_PER_CLUSTER]])
        titles.append(f"{k}: {names[k]}\n(n={len(members)})")
    prototype_grid(rows, titles, path, title)


def print_results(results, messages=True):
    """The metrics and sizes; the notes and warnings too unless an export's report follows."""
    if results['step'] == 'pretext':
        km = results.get('kmeans')
        for name, acc in results.get('val_neighbor_acc', {}).items():  # the original's lines
            log(f"Accuracy of {name.replace('top', 'top-')} nearest neighbors on validation set "
                f"is {100 * acc:.2f}")
        if km:
            log(f"pretext: kNN acc {results['knn_acc']:.4f}; k-means ACC {km['acc']:.4f} "
                f"NMI {km['nmi']:.4f} ARI {km['ari']:.4f} AMI {km['ami']:.4f}", 'green')
        return
    if 'predict' in results:
        log(f"new images of {results['predict']} (not the training folder):")
    if 'acc' in results:
        log(f"{results['step']}: ACC {results['acc']:.4f}  NMI {results['nmi']:.4f}  "
            f"ARI {results['ari']:.4f}  AMI {results['ami']:.4f}  top-5 {results['acc_top5']:.4f}"
            + (f"  many-to-one ACC {results['acc_many_to_one']:.4f}"
               if 'acc_many_to_one' in results else ''), 'green')
    log(f"cluster sizes: {results['cluster_sizes']}")
    if messages:
        print_messages(results.get('notes', []), results.get('warnings', []))


def print_messages(notes, warnings):
    for message in notes:
        log(f"note: {message}")
    for message in warnings:
        log(f"warning: {message}", 'yellow')


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
    parser.add_argument('--corrections', default=None, metavar='CORRECTIONS.csv',
                        help='with --annotate: move images and merge clusters as listed (the '
                             'file the gallery\'s "Save corrections" downloads)')
    parser.add_argument('--export-folders', default=None, metavar='DIR',
                        help='with --annotate: also write the clusters as DIR/<cluster name>/ '
                             'folders of links to the images (torchvision ImageFolder reads it)')
    parser.add_argument('--copy-images', action='store_true',
                        help='with --export-folders: copies of the images instead of links')
    parser.add_argument('--force', action='store_true',
                        help='with --annotate: write into a folder that holds other files, '
                             'beside them (a file of the same name as ours is never replaced)')
    parser.add_argument('--naming-model', default=None, metavar='NAME',
                        help='with --annotate: suggest cluster names with this open_clip model '
                             '(e.g. ViT-B-32, ViT-L-14:laion2b_s32b_b82k, or an open_clip '
                             'model config .json); see docs/naming.md')
    parser.add_argument('--naming-weights', default=None, metavar='hub|PATH',
                        help="the naming model's weights: 'hub' (Hugging Face, cached; the "
                             "default) or a local open_clip checkpoint or .safetensors file")
    parser.add_argument('--vocabulary', default=None, metavar='FILE',
                        help='with --naming-model: the names to choose from, one a line '
                             '(default: the ImageNet-21k classes timm ships)')
    parser.add_argument('--naming-images', type=int, default=IMAGES_PER_CLUSTER, metavar='N',
                        help='with --naming-model: embed the N most confident images of each '
                             f'cluster (default {IMAGES_PER_CLUSTER}; 0: all of them)')
    return parser


def annotation_request(args, cfg):
    """--annotate and its options, checked before any model runs."""
    if (args.names or args.predict or args.corrections or args.force or args.naming_model
            or args.export_folders or args.copy_images) and not args.annotate:
        raise AnnotationError("--names, --corrections, --predict, --force, --naming-model and "
                              "--export-folders go with --annotate OUTDIR (where the results "
                              "are written)")
    if args.copy_images and not args.export_folders:
        raise AnnotationError("--copy-images goes with --export-folders DIR")
    if (args.naming_weights or args.vocabulary or args.naming_images != IMAGES_PER_CLUSTER) \
            and not args.naming_model:
        raise AnnotationError("--naming-weights, --vocabulary and --naming-images go with "
                              "--naming-model NAME")
    if not args.annotate:
        return None
    if cfg.step == 'pretext':
        raise AnnotationError(
            f"{args.config_exp} is a pretext (SimCLR) step: its model has no clusters to "
            f"annotate. Run scan.py (and selflabel.py), then pass configs/scan/... or "
            f"configs/selflabel/... with the same --opts")
    naming = naming_request(args.naming_model, args.naming_weights, args.vocabulary,
                            args.naming_images) if args.naming_model else None
    request = ExportRequest(args.annotate, args.names, args.corrections, args.force,
                            tuple(f for f in (cfg.folder, args.predict) if f), naming,
                            OverviewSettings.of_config(cfg))
    check_request(request)
    if args.export_folders:
        check_destination(args.export_folders, request.image_folders)
    return request


def open_predict_folder(args, cfg):
    """--predict's images, resized as the training images were (benchmarks: to the crop)."""
    if not args.predict:
        return None
    t = cfg.transformation_kwargs
    return ImageFolderDataset(args.predict, resize=t.resize or t.crop_size)


def derived_cache(out_dir, source, predictions_key):
    """Where an export keeps what it derives from these predictions (map, duplicates, ...)."""
    return DerivedCache(cache_path(out_dir, source, 'overview'), predictions_key)


def saved_or_predicted(cfg, out_dir, source, model_path, head, dataset, predict):
    """(probs, targets, features, key, reused) of the model on `dataset`: saved by an earlier eval of the same model
    file on the same images (annotation/prediction_cache.py), else predict() and saved."""
    probs, targets, features, key, reused = cached_predictions(
        out_dir, source, model_path, head, cfg.precision, dataset, predict)
    if reused:
        log(f"predictions of {len(dataset):,} images reused from {cache_path(out_dir, source)} "
            f"(same model file, same images)")
    return probs, targets, features, key, reused


def saved_evaluation(cfg, out_dir, model_path):
    """(results, val set, probs, targets, features, key) of an earlier eval of this very model
    file on these very images (its predictions, metrics and figures), or None. Runs and loads no
    model: the head is the one saved with the predictions, whose key holds the model file's
    SHA-256."""
    path = cache_path(out_dir, 'val')
    facts = saved_model_facts(path)
    if facts is None:
        return None
    head, trained = facts
    val_set = build_dataset(cfg, 'val')  # listed only: no pixels are needed
    key = prediction_key(model_path, head, cfg.precision, val_set)
    saved = load_predictions(path, key)
    results = saved_metrics(out_dir, key) if saved is not None else None
    if results is None:  # another model or other images: the model runs (and is reported)
        return None
    use_training_transform(cfg, trained, model_path)  # says what of the eval config is ignored
    log(f"predictions of {len(val_set):,} images reused from {path} (same model file, "
        f"same images), with their metrics and figures: no model runs")
    return results, val_set, *saved, key


def predict_and_save_val(cfg, out_dir, model_path, model, head, val_set, device, trained):
    """(probs, targets, features, key) of the model on the val split, saved for the next eval
    (with the model file's config `trained`)."""
    key = prediction_key(model_path, head, cfg.precision, val_set)
    probs, targets, features = predict_val(model, head, val_set, cfg, device)
    save_predictions(cache_path(out_dir, 'val'), key, probs, targets, features, head, trained)
    return probs, targets, features, key


def evaluate_model(args, cfg, request, model_path, out_dir, device, trained):
    """(results, export or None) of a SCAN or self-label model run on its images (or, with
    --predict, on the new ones); `trained`: the model file's config."""
    model, head = load_clustering_model(model_path, cfg.backbone, device)
    if cfg.num_classes == 'auto':  # the K that step 2 chose, in the model file
        cfg.num_classes = model.cluster_head[0].out_features
    if args.names:  # the names and the new folder are checked before the predictions
        read_names(args.names, model.cluster_head[0].out_features)
    predict_set = open_predict_folder(args, cfg)
    val_set = build_dataset(cfg, 'val')
    if predict_set is not None:
        results, probs, features, key = evaluate_new_images(
            cfg, out_dir, model_path, model, head, val_set, predict_set, device)
        return results, prepare_export(request, predict_set, probs, predict_set.folder,
                                       model_path, features,
                                       derived_cache(out_dir, predict_set.folder, key))
    probs, targets, features, key = predict_and_save_val(cfg, out_dir, model_path, model, head,
                                                         val_set, device, trained)
    export = prepare_export(request, val_set, probs, f"{cfg.val_db_name}-val", model_path,
                            features, derived_cache(out_dir, 'val', key)) if request else None
    results = dict(evaluate_clustering(cfg, model_path, out_dir, val_set, probs, targets, head,
                                       features), predictions_key=key)
    return results, export


def evaluate_new_images(cfg, out_dir, model_path, model, head, val_set, predict_set, device):
    """--predict: only the new images go through the model; their own sizes and, where they
    are labelled, their own metrics. The training folder's predictions (saved by an earlier
    eval, else computed once) only name the clusters where it has labels."""
    probs, _, features, key, _ = saved_or_predicted(
        cfg, out_dir, predict_set.folder, model_path, head, predict_set,
        lambda: predict_dataset(model, head, predict_set, cfg, device, with_features=True))
    sizes = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    results = {'step': cfg.step, 'model': model_path, 'predict': predict_set.folder,
               'cluster_sizes': sizes.tolist(), 'notes': run_warnings(cfg.paths, cfg.step, 'note'),
               'warnings': run_warnings(cfg.paths, cfg.step) + collapse_warnings(sizes)}
    _, metrics = match_names(predict_set, probs)
    results.update({k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami', 'acc_top5')
                    if metrics and k in metrics})
    matched = {}
    if val_set.has_labels:
        val_probs, *_ = saved_or_predicted(
            cfg, out_dir, 'val', model_path, head, val_set,
            lambda: predict_val(model, head, val_set, cfg, device))
        matched = match_names(val_set, val_probs)[0]
    results['cluster_to_class'] = {str(k): v for k, v in matched.items()}
    return results, probs, features, key


def main(args):
    cfg = load_run_config(args, setup=None)
    log(f"{cfg.setup}: {cfg.config_files['exp']}; outputs in {cfg.paths[cfg.step + '_dir']}",
        'blue')
    request = annotation_request(args, cfg)
    complete_image_settings(cfg)
    model_path = args.model or cfg.paths[f'{cfg.step}_model']
    require(model_path, {'pretext': 'simclr.py', 'scan': 'scan.py',
                         'selflabel': 'selflabel.py'}[cfg.step])
    out_dir = cfg.paths[f'{cfg.step}_eval_dir']
    if args.predict:  # the new images get the protection of the config's folder
        protect(args.predict, 'the --predict folder')
    lock_run_folder(cfg, out_dir)
    check_fingerprint(cfg)  # the images step 1 saw
    saved = saved_evaluation(cfg, out_dir, model_path) \
        if cfg.step != 'pretext' and not args.predict else None
    device, export = None, None
    if saved is not None:  # a re-export: nothing runs, torch is not even imported
        results, val_set, probs, _, features, key = saved
        if request:
            export = prepare_export(request, val_set, probs, f"{cfg.val_db_name}-val",
                                    model_path, features, derived_cache(out_dir, 'val', key))
    else:
        from models.original import read_model_file

        device = start_device(cfg)
        log(f"the model runs on {device}")
        trained = read_model_file(model_path).config
        use_training_transform(cfg, trained, model_path)
        if cfg.step == 'pretext':
            results = evaluate_pretext(cfg, model_path, device)
        else:
            results, export = evaluate_model(args, cfg, request, model_path, out_dir, device,
                                             trained)
    if export is not None and request.naming:
        suggest_names(export, request.naming, os.path.join(cfg.root_dir, NAMING_CACHE),
                      device or start_device(cfg), report=log)
    if 'predict' not in results:  # the step's metrics.json stays that of its own images
        path = os.path.join(out_dir, 'metrics.json')
        atomic_write_text(path, json.dumps(results, indent=2))
    print_results(results, messages=export is None)
    if 'predict' not in results:
        log(f"metrics: {path}" + ''.join(f"\nfigure: {p}" for p in results.get('figures', [])))
    if export:
        matched = {int(k): v for k, v in results.get('cluster_to_class', {}).items()}
        export.notes, export.warnings = results['notes'], run_warnings(cfg.paths, cfg.step)
        results['annotations'] = export.write(matched)
        log(f"annotations: {results['annotations']}"
            + (f"\nnames from: {export.names_file}" if export.names_file else ''))
        if args.export_folders:
            log(export_class_folders(args.export_folders, export, args.copy_images), 'green')
        report = export_report(args.annotate)  # ends the output: gallery, sizes, warnings
        log(report.gallery, 'green')
        log('\n'.join(report.lines))
        print_messages(report.notes, report.warnings)
    return results


if __name__ == '__main__':
    run_cli(main, get_eval_parser())
