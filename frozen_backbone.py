"""The three steps on a frozen pretrained backbone: embed once, mine, train the heads on the
cached features. Chosen by config (`backbone: timm/<model name>`, `feature_cache: true`); the
published SCAN path does not pass through here.

Step 1 (`pretext_from_pretrained`) trains nothing: it loads the pretrained weights, saves them
as the pretext model, embeds train and val with the validation transform, mines neighbours on
the L2-normalised backbone features and keeps the features (pretext/features-*.npy).
Steps 2 and 3 (`cached_scan_inputs`, `cached_selflabel_inputs`) train the cluster heads of the
full model on those features, plus `cached_views` augmented views per image computed once.
"""
import os
import time

import numpy as np
import torch
import torch.nn as nn

from data import build_dataset
from data.augment import build_augmentation, build_val_transform
from data.fingerprint import record_fingerprint
from data.feature_cache import (CachedFeatures, backbone_fingerprint, cache_key,
                                cached_eval_loader, cached_scan_loader, cached_selflabel_loader,
                                changed_parts, embed_backbone_features, read_cached,
                                write_cached)
from data.settings import complete_image_settings
from models import ClusteringModel, build_backbone
from models.timm_backbone import pretrained_timm_backbone
from utils.checkpoint import atomic_save, load, load_state_dict_strict
from utils.device import prepare_model
from utils.distributed import barrier, is_main_process
from utils.errors import UserError
from utils.inference import predict_clusters
from utils.mining import mine_nearest_neighbors, neighbor_accuracy
from utils.runtime import lock_run_folder, log
from utils.training import plain, seed_everything


class StaleFeatures(UserError, RuntimeError):
    """Cached features of other images than the neighbours of step 1 were mined on."""


def val_preprocessing(cfg):
    """What the features of the validation transform depend on, besides images and weights."""
    t = cfg.transformation_kwargs
    return {'crop_size': t.crop_size, 'resize': t.resize, 'interpolation': t.interpolation,
            'normalize': plain(t.normalize)}


def views_preprocessing(cfg):
    return {'strategy': cfg.augmentation_strategy, 'augmentation': plain(cfg.augmentation_kwargs),
            'views': cfg.cached_views, 'seed': cfg.seed}


def split_features(cfg, backbone, backbone_key, split, device, dataset=None,
                   same_images=False):
    """(features N x D tensor, targets, what happened) of one split under the validation
    transform: from the cache when its key fits, else embedded now and cached. A folder's val
    images are its train images: val then reuses the train file (the keys are equal).
    `same_images`: a file of other images is an error (steps 2-3: step 1 mined on it)."""
    dataset = dataset if dataset is not None else build_dataset(cfg, split)
    key = cache_key(dataset, backbone_key, val_preprocessing(cfg))
    own = cfg.paths[f'features_{split}']
    if same_images and 'images' in (changed_parts(own, key) or ()):
        raise StaleFeatures(f"{own}: the images changed since step 1 embedded them, so its "
                            f"neighbours are of other images: rerun simclr.py (it embeds and "
                            f"mines again), then this step")
    reasons = []
    for path in (own, cfg.paths.features_train) if split == 'val' else (own,):
        array, why = read_cached(path, key)
        if array is not None:
            log(f"{split} features: cached in {path}")
            return torch.from_numpy(array), torch.as_tensor(dataset.targets), 'cached'
        reasons.append(why)
    started = time.time()
    features, _ = embed_backbone_features(backbone, dataset, build_val_transform(cfg), cfg,
                                          device, desc=f"embed {split}")
    write_cached(own, features.cpu().numpy(), key, backbone=cfg.backbone, split=split)
    log(f"{split} features: {len(dataset)} images embedded in {time.time() - started:.1f}s "
        f"({reasons[0]}); saved {own}")
    return features.cpu(), torch.as_tensor(dataset.targets), f"embedded ({reasons[0]})"


def mine_split(cfg, features, targets, split):
    """Top-k neighbours of a split's features, saved for step 2; their accuracy if labelled."""
    k, path = ((cfg.num_neighbors, cfg.paths.topk_neighbors_train_path) if split == 'train' else
               (cfg.num_neighbors_val, cfg.paths.topk_neighbors_val_path))
    indices = mine_nearest_neighbors(features, k, cfg.mining_index, cfg.mining_ivf_kwargs.nlist,
                                     cfg.mining_ivf_kwargs.nprobe)
    np.save(path, indices)
    accuracy = neighbor_accuracy(indices, targets.numpy())
    shown = 'n/a (no labels)' if accuracy is None else f"{accuracy:.4f}"
    log(f"top-{k} neighbours of {len(indices)} {split} images mined on the L2-normalised backbone "
        f"features; neighbour accuracy {shown}; saved {path}", 'green')
    return accuracy


def pretext_from_pretrained(cfg, device):
    """Step 1 with a pretrained timm backbone: load, save, embed, mine (rank 0; others wait).
    The weights come first: missing ones stop the run before the images are read."""
    results = {}
    if is_main_process():
        backbone = pretrained_timm_backbone(cfg.backbone, cfg.pretrained_weights)['backbone']
        backbone = prepare_model(backbone, device).eval()
        complete_image_settings(cfg)
        lock_run_folder(cfg, cfg.paths.pretext_dir)
        record_fingerprint(cfg)  # the images the neighbours and features point at
        weights = 'the Hugging Face hub' if cfg.pretrained_weights == 'hub' else \
            cfg.pretrained_weights
        log(f"pretrained {cfg.backbone} from {weights}; nothing to train in step 1", 'yellow')
        atomic_save({'model': {f'backbone.{k}': v for k, v in backbone.state_dict().items()},
                     'config': plain(cfg)}, cfg.paths.pretext_model)
        backbone_key = backbone_fingerprint(cfg.backbone, backbone)
        for split in ('train', 'val'):
            features, targets, how = split_features(cfg, backbone, backbone_key, split, device)
            results[split] = {'features': how,
                              'neighbor_acc': mine_split(cfg, features, targets, split)}
    barrier()
    return results


def heads_on_features(model):
    """A ClusteringModel with an identity backbone that shares `model`'s cluster heads: fed
    with cached features it trains the very heads that `model` (backbone included) saves."""
    heads = ClusteringModel({'backbone': nn.Identity(), 'dim': model.backbone_dim},
                            model.cluster_head[0].out_features, model.nheads)
    heads.cluster_head = model.cluster_head
    return heads


def train_features(cfg, backbone, backbone_key, device):
    """Train split: its val-transform features (step 1's, unless only the preprocessing or the
    file changed) and `cached_views` augmented views, as a V x N x D array."""
    dataset = build_dataset(cfg, 'train')
    base, targets, _ = split_features(cfg, backbone, backbone_key, 'train', device, dataset,
                                      same_images=True)
    views = augmented_views(cfg, backbone, backbone_key, dataset, device)
    stacked = base[None] if views is None else torch.cat([base[None], views])
    return stacked, targets


def augmented_views(cfg, backbone, backbone_key, dataset, device):
    """`cached_views` passes of the step's augmentation through the backbone (V x N x D), each
    seeded, computed once and cached; None for 0 views."""
    if cfg.cached_views == 0:
        return None
    path = cfg.paths.features_train_views
    key = cache_key(dataset, backbone_key, views_preprocessing(cfg))
    array, why = read_cached(path, key)
    if array is not None:
        log(f"{cfg.cached_views} augmented views per image: cached in {path}")
        return torch.from_numpy(array)
    started, views = time.time(), []
    for view in range(cfg.cached_views):
        seed_everything(cfg.seed * 1_000 + view)
        features, _ = embed_backbone_features(backbone, dataset, build_augmentation(cfg), cfg,
                                              device, desc=f"view {view + 1}/{cfg.cached_views}")
        views.append(features.cpu())
    array = torch.stack(views)
    write_cached(path, array.numpy(), key, backbone=cfg.backbone, views=cfg.cached_views)
    log(f"{cfg.cached_views} augmented views of {len(dataset)} images embedded in "
        f"{time.time() - started:.1f}s ({why}); saved {path}")
    return array


def cached_inputs(cfg, model, device):
    """(heads model, train features, val features) of a step on cached features. Rank 0 fills
    the cache; the other ranks then read it."""
    backbone_key = backbone_fingerprint(cfg.backbone, model.backbone)

    def features():
        train, train_targets = train_features(cfg, model.backbone, backbone_key, device)
        val, val_targets, _ = split_features(cfg, model.backbone, backbone_key, 'val', device)
        return train, train_targets, val, val_targets

    if is_main_process():
        train, train_targets, val, val_targets = features()
    barrier()
    if not is_main_process():
        train, train_targets, val, val_targets = features()
    heads = prepare_model(heads_on_features(model), device)
    return (heads, CachedFeatures(train, train_targets, device),
            CachedFeatures(val, val_targets, device))


def cached_scan_inputs(cfg, model, device, train_neighbors):
    """(heads model, train loader, val loader) for scan.py on cached features."""
    heads, train, val = cached_inputs(cfg, model, device)
    return heads, cached_scan_loader(cfg, train, train_neighbors), cached_eval_loader(cfg, val)


def cached_selflabel_inputs(cfg, model, device):
    """(heads model, train loader, val loader) for selflabel.py on cached features."""
    heads, train, val = cached_inputs(cfg, model, device)
    return heads, cached_selflabel_loader(cfg, train), cached_eval_loader(cfg, val)


def cached_val_predictions(cfg, model, head, dataset, device):
    """eval.py: (probabilities of `head`, targets) on the cached val features when they are the
    features of this model's backbone on the current images; None otherwise (then eval embeds)."""
    paths = [p for p in (cfg.paths.features_val, cfg.paths.features_train) if os.path.isfile(p)]
    if not paths:
        return None
    key = cache_key(dataset, backbone_fingerprint(cfg.backbone, model.backbone),
                    val_preprocessing(cfg))
    for path in paths:
        array, _ = read_cached(path, key)
        if array is not None:
            log(f"eval on the cached val features in {path}")
            features = CachedFeatures(array, dataset.targets, device)
            predictions = predict_clusters(prepare_model(heads_on_features(model), device),
                                           cached_eval_loader(cfg, features), device)
            return predictions['probs'][head], predictions['targets']
    return None


def backbone_features_for_eval(cfg, model_path, device):
    """eval.py on a pretrained-backbone pretext model: (train features, train targets, val
    features, val targets), from the cache where it fits, else embedded (and cached)."""
    backbone = build_backbone(cfg.backbone)['backbone']
    state = {k.removeprefix('backbone.'): v for k, v in load(model_path)['model'].items()}
    load_state_dict_strict(backbone, state, model_path)
    backbone = prepare_model(backbone, device).eval()
    backbone_key = backbone_fingerprint(cfg.backbone, backbone)
    train_f, train_t, _ = split_features(cfg, backbone, backbone_key, 'train', device)
    val_f, val_t, _ = split_features(cfg, backbone, backbone_key, 'val', device)
    return train_f.to(device), train_t.to(device), val_f.to(device), val_t.to(device)
