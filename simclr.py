"""Step 1: SimCLR pretext training, then top-k nearest-neighbour mining for step 2.

    python simclr.py --config_env configs/env.yml --config_exp configs/pretext/simclr_digits.yml

Writes into <root_dir>/<dataset>/pretext/: checkpoint.pth.tar (every epoch; a rerun resumes),
model.pth.tar, topk-train-neighbors.npy, topk-val-neighbors.npy, log.jsonl.
"""
import os
import time

import torch

from data import build_dataset, val_is_train
from data.device_loader import make_eval_loader, make_train_loader
from data.feature_cache import backbone_fingerprint, split_features
from data.first_notes import report_image_settings
from data.fingerprint import record_fingerprint
from data.loaders import set_loader_epoch
from data.settings import complete_image_settings
from losses import SimCLRLoss
from models import ContrastiveModel, build_backbone
from models.timm_backbone import pretrained_timm_backbone
from utils.checkpoint import atomic_save, atomic_save_array, load, load_state_dict_strict
from utils.config import is_timm_backbone
from utils.device import autocast, prepare_model, to_device
from utils.distributed import barrier, cleanup_distributed, is_main_process, wrap_ddp
from utils.inference import compute_features
from utils.knn import weighted_knn_accuracy
from utils.mining import mine_nearest_neighbors, neighbor_accuracy
from utils.progress import progress
from utils.runtime import get_args_parser, lock_run_folder, log, run_cli, start_run
from utils.training import (RunLog, build_optimizer, build_scheduler, epoch_seed, plain,
                            restore_checkpoint, resume_state, save_checkpoint, seed_everything)


def train_one_epoch(model, loader, criterion, optimizer, device, epoch):
    model.train()
    total, steps = torch.zeros((), device=device), 0
    bar = progress(loader, desc=f"pretext epoch {epoch}", leave=False)
    for batch in bar:
        images = to_device(torch.cat([batch['image'], batch['image_augmented']]), device)
        with autocast(device):
            output = model(images)
        b = batch['image'].shape[0]
        features = torch.stack([output[:b], output[b:]], dim=1).float()
        loss = criterion(features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        steps += 1
        if steps % 10 == 0:  # reading the loss syncs with the device: not every step
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return (total / max(steps, 1)).item()


def embed(model, dataset, cfg, device, desc):
    """L2-normalised contrastive features of a dataset under the validation transform."""
    loader = make_eval_loader(cfg, dataset, device)
    model.eval()
    return compute_features(model, loader, device, desc)


def train_pretext(cfg, model, device):
    base = build_dataset(cfg, 'pretext')
    loader = make_train_loader(cfg, base, 'pretext', device)
    monitor = [build_dataset(cfg, 'train'), build_dataset(cfg, 'val')]
    ddp_model = wrap_ddp(model, device, cfg)
    criterion = SimCLRLoss(cfg.criterion_kwargs.temperature, cfg.criterion_kwargs.symmetric)
    optimizer = build_optimizer(cfg, ddp_model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    run_log = RunLog(cfg.paths.pretext_log)

    start_epoch = 0
    state = resume_state(cfg, cfg.paths.pretext_checkpoint, device)
    run_log.start(state)  # the log holds exactly the checkpoint's epochs
    if state is not None:
        start_epoch = restore_checkpoint(state, model, optimizer, scheduler)
        log(f"resuming from {cfg.paths.pretext_checkpoint} at epoch {start_epoch}", 'yellow')

    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(epoch_seed(cfg, epoch))
        set_loader_epoch(loader, epoch)
        started = time.time()
        loss = train_one_epoch(ddp_model, loader, criterion, optimizer, device, epoch)
        seconds = time.time() - started
        record = {'epoch': epoch + 1, 'loss': loss, 'lr': optimizer.param_groups[0]['lr'],
                  'seconds': round(seconds, 2),
                  'images_per_s': round(len(loader) * cfg.batch_size / seconds, 1)}
        scheduler.step()
        if is_main_process() and ((epoch + 1) % cfg.knn_every == 0 or epoch + 1 == cfg.epochs):
            record['knn_acc'] = knn_monitor(model, monitor, cfg, device)
        run_log.write(record)
        save_checkpoint(cfg.paths.pretext_checkpoint, cfg, epoch + 1, model, optimizer, scheduler,
                        log=run_log.records)


def knn_monitor(model, datasets, cfg, device):
    """Weighted kNN accuracy of val images against train features, where labels exist: the
    original's K (knn_k: 100) and the loss's temperature; on a folder (val = train) a query does not
    vote for itself."""
    train_set, val_set = datasets
    if not (train_set.has_labels and val_set.has_labels):
        return None
    train_f, train_t = embed(model, train_set, cfg, device, 'kNN bank')
    val_f, val_t = embed(model, val_set, cfg, device, 'kNN query')
    return weighted_knn_accuracy(train_f, train_t, val_f, val_t, k=cfg.knn_k,
                                 temperature=cfg.criterion_kwargs.temperature,
                                 exclude_self=val_is_train(cfg))


def convert_moco_state_dict(state_dict):
    """MoCo v2 checkpoint keys (module.encoder_q.*) -> ContrastiveModel keys."""
    state_dict = state_dict.get('state_dict', state_dict)
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix('module.')
        if not key.startswith('encoder_q.'):
            continue  # the momentum encoder and the queue are not part of the model
        key = key.removeprefix('encoder_q.')
        if key.startswith('fc.'):
            converted['contrastive_head.' + key.removeprefix('fc.')] = value
        else:
            converted['backbone.' + key] = value
    return converted


def import_pretrained(model, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights not found: {path} (set pretrained_weights "
                                f"in the config or with --opts pretrained_weights=PATH)")
    state = load(path)  # a file that is not a checkpoint is a message saying so
    load_state_dict_strict(model, convert_moco_state_dict(state), path)
    log(f"imported pretrained weights from {path}; pretext training skipped", 'yellow')


def mine_split(cfg, split, features, targets):
    """Mine and save the top-k neighbours of a split's features (L2-normalised in the search);
    returns their accuracy where labels exist."""
    k, path = ((cfg.num_neighbors, cfg.paths.topk_neighbors_train_path) if split == 'train' else
               (cfg.num_neighbors_val, cfg.paths.topk_neighbors_val_path))
    started = time.time()
    indices = mine_nearest_neighbors(features, k, cfg.mining_index,
                                     cfg.mining_ivf_kwargs.nlist, cfg.mining_ivf_kwargs.nprobe)
    accuracy = neighbor_accuracy(indices, targets.cpu().numpy())
    atomic_save_array(path, indices)
    shown = 'n/a (no labels)' if accuracy is None else f"{accuracy:.4f}"
    log(f"top-{k} neighbours of {len(indices)} {split} images mined in "
        f"{time.time() - started:.1f}s; neighbour accuracy {shown}; saved {path}", 'green')
    return accuracy


def mine_and_save(model, cfg, device):
    """Embed train and val with the val transform, mine neighbours, report their accuracy.
    `model` gives L2-normalised vectors: the contrastive head's, or the backbone's (MoCo)."""
    results = {}
    for split in ('train', 'val'):
        features, targets = embed(model, build_dataset(cfg, split), cfg, device, f"embed {split}")
        results[split] = mine_split(cfg, split, features, targets)
    return results


def pretext_from_pretrained(cfg, device):
    """Step 1 with a pretrained timm backbone trains nothing: the weights are saved as the
    pretext model, train and val are embedded with the validation transform (cached for steps 2
    and 3) and the neighbours mined on those backbone features (rank 0; the others wait). The
    weights come first: missing ones stop the run before the images are read."""
    results = {}
    if is_main_process():
        backbone = pretrained_timm_backbone(cfg.backbone, cfg.pretrained_weights)['backbone']
        backbone = prepare_model(backbone, device).eval()
        complete_image_settings(cfg)
        lock_run_folder(cfg, cfg.paths.pretext_dir)
        report_image_settings(cfg, backbone_was_auto=False)
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
                              'neighbor_acc': mine_split(cfg, split, features, targets)}
    barrier()
    return results


def main(args):
    cfg, device = start_run(args, 'simclr')
    if is_timm_backbone(cfg.backbone):  # a pretrained backbone: embed and mine, train nothing
        results = pretext_from_pretrained(cfg, device)
        cleanup_distributed()
        return results
    backbone_was_auto = cfg.backbone == 'auto'
    complete_image_settings(cfg)
    lock_run_folder(cfg, cfg.paths.pretext_dir)
    report_image_settings(cfg, backbone_was_auto)
    record_fingerprint(cfg)  # the images the neighbours will point at (checked on a resume)
    model = ContrastiveModel(build_backbone(cfg.backbone), **cfg.model_kwargs)
    model = prepare_model(model, device)
    if cfg.pretrained_weights:
        import_pretrained(model, cfg.pretrained_weights)
    else:
        train_pretext(cfg, model, device)
    if is_main_process():
        atomic_save({'model': model.state_dict(), 'config': plain(cfg)}, cfg.paths.pretext_model)
        if cfg.setup == 'moco':  # as the original: mined on the backbone's features, not the MLP's
            model.contrastive_head = torch.nn.Identity()
        mine_and_save(model, cfg, device)
    barrier()
    cleanup_distributed()


if __name__ == '__main__':
    run_cli(main, get_args_parser('SCAN step 1: SimCLR pretext training and neighbour mining'))
