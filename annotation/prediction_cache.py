"""Saved predictions, so that applying names or corrections to an export does not run the
model again.

eval.py keeps each model's probabilities on a set of images in the step's eval/ folder
(predictions-<source>.npz), under a key made of the model file's SHA-256, the head, the
precision and every image's path, size and modification time. The next eval of the same
model on the same images reads them instead of running the model; any change gives another
key, and the model runs again (and the file is replaced). The head and the model's training
transform are saved too: with the model file's SHA-256 in the key, a re-export finds them
without loading the model (eval.py).
"""
import hashlib
import io
import json
import os

import numpy as np

from utils.checkpoint import atomic_write
from utils.paths import file_digest


def images_identity(dataset):
    """What identifies a set of images: each file's path, size and modification time (a
    benchmark split: its name and length, fixed by its checksummed archive)."""
    paths = getattr(dataset, 'paths', None)
    if paths is None:
        return [type(dataset).__name__, len(dataset)]
    identity = []
    for path in paths:
        stat = os.stat(path)
        identity.append([os.fsencode(path).hex(), stat.st_size, stat.st_mtime_ns])
    return identity


def images_key(dataset):
    """A digest of images_identity: the same images, unchanged, give the same key."""
    return hashlib.sha256(json.dumps(images_identity(dataset)).encode('utf-8')).hexdigest()


def same_images_as_before(folder, key):
    """Whether the earlier export in `folder` (annotation.outfolder.ExportFolder), by its own
    unchanged summary.json, was made of the images of `key`: its thumbnails can then stay."""
    if not folder.is_ours('summary.json'):
        return False
    try:
        with open(os.path.join(folder.path, 'summary.json'), encoding='utf-8') as f:
            return json.load(f).get('images_key') == key
    except (OSError, ValueError, AttributeError):
        return False


def prediction_key(model_path, head, precision, dataset):
    text = json.dumps([file_digest(model_path), int(head), precision, images_identity(dataset)])
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def cache_path(eval_dir, source, kind='predictions'):
    """predictions-val.npz, or for --predict FOLDER predictions-<hash of its real path>.npz;
    kind 'overview': what an export derives from them (annotation/derived_cache.py)."""
    if source == 'val':
        return os.path.join(eval_dir, f'{kind}-val.npz')
    digest = hashlib.sha256(os.fsencode(os.path.realpath(source))).hexdigest()[:12]
    return os.path.join(eval_dir, f'{kind}-{digest}.npz')


def load_predictions(path, key):
    """(probs, targets, features or None) saved under `key`, or None."""
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            if str(saved['key']) != key:
                return None
            features = saved['features'] if saved['features'].ndim == 2 else None
            return saved['probs'], saved['targets'], features
    except (OSError, ValueError, KeyError):  # a damaged file: predicted again
        return None


def saved_model_facts(path):
    """(head, the model file's config as far as saved: its transformation_kwargs) of the
    predictions saved in `path`, or None (no file, damaged, or written by older code)."""
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            return int(saved['head']), json.loads(str(saved['trained']))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_predictions(path, key, probs, targets, features=None, head=0, trained=None):
    """`trained`: the model file's config (only its transformation_kwargs are kept)."""
    buffer = io.BytesIO()
    features = np.zeros(0, np.float32) if features is None else np.asarray(features, np.float32)
    kept = {'transformation_kwargs': trained.get('transformation_kwargs')} \
        if isinstance(trained, dict) else None
    np.savez(buffer, key=np.array(key), probs=np.asarray(probs, dtype=np.float32),
             targets=np.asarray(targets), features=features, head=np.array(int(head)),
             trained=np.array(json.dumps(kept)))
    atomic_write(path, lambda f: f.write(buffer.getvalue()), suffix='.npz')


def cached_predictions(eval_dir, source, model_path, head, precision, dataset, predict):
    """(probs, targets, features, key, reused): the saved predictions of this model on these
    images, or predict() (which returns (probs, targets[, features])) then saved."""
    key = prediction_key(model_path, head, precision, dataset)
    path = cache_path(eval_dir, source)
    saved = load_predictions(path, key)
    if saved is not None:
        return (*saved, key, True)
    probs, targets, *rest = predict()
    features = rest[0] if rest else None
    save_predictions(path, key, probs, targets, features, head)
    return probs, targets, features, key, False


def saved_metrics(eval_dir, key):
    """The metrics.json an eval wrote from the predictions saved under `key` (its figures
    beside it), or None: then they are computed again."""
    path = os.path.join(eval_dir, 'metrics.json')
    try:
        with open(path, encoding='utf-8') as f:
            results = json.load(f)
    except (OSError, ValueError):
        return None
    figures = results.get('figures', []) if isinstance(results, dict) else []
    if results.get('predictions_key') != key or not all(os.path.isfile(p) for p in figures):
        return None
    return results
