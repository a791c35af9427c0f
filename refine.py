"""selflabel.py --corrections FILE: the gallery's corrections teach the model.

    python selflabel.py --config_env configs/env.yml --config_exp configs/selflabel/X.yml \\
                        --corrections corrections.csv [--opts ...]

Starts from the step-3 model (without one, the best SCAN head) and fine-tunes it on the images
of the export the corrections were made on (the val split; for a folder, all its images), as
self-labeling does, with one addition: every corrected image (moved, or in a merged-away
cluster) is a labelled sample in every epoch, with the cluster the corrections put it in, its
cross-entropy weighted `correction_weight` beside the confident pseudo-labels (which no longer
come from the corrected images themselves). A merged-away cluster keeps its id and is closed:
its head row is zeroed and its bias set to CLOSED_BIAS, so no image can land there and the
other ids (the user's names) stay. Writes <root_dir>/<dataset>/refined/: checkpoint.pth.tar
(every epoch; a rerun resumes, refused with another corrections file: its SHA-256 is recorded),
model.pth.tar, log.jsonl, whose last record says how the corrections took.
"""
import json
import math
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

from annotation.corrections import match_corrections, read_rows
from annotation.images import image_set
from annotation.names import AnnotationError
from data import build_dataset
from data.augment import build_augmentation, build_val_transform
from data.device_loader import make_eval_loader, make_train_loader
from data.fingerprint import check_fingerprint
from data.loaders import make_loader, set_loader_epoch
from data.settings import complete_image_settings
from data.wrappers import AugmentedDataset
from losses import ConfidenceBasedCE
from models.loading import clustering_model_from_scan, load_trained_clustering_model
from utils.checkpoint import atomic_save
from utils.device import autocast, prepare_model, to_device
from utils.distributed import is_distributed
from utils.inference import predict_clusters
from utils.paths import file_digest
from utils.progress import progress
from utils.runtime import lock_run_folder, log, start_run
from utils.training import (ResumeConflict, RunLog, build_optimizer, build_scheduler, epoch_seed,
                            input_digests, plain, restore_checkpoint, resume_state,
                            save_checkpoint, seed_everything, start_over)

# exp(-1e4) is 0 in float32 and bf16: a closed cluster gets no probability and no gradient
CLOSED_BIAS = -1e4
SHOWN_MISPLACED = 10  # corrected images left elsewhere that the report names


def plural(n, word):
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def add_corrections_argument(parser):
    parser.add_argument('--corrections', default=None, metavar='CORRECTIONS.csv',
                        help="refine the model with the gallery's corrections (moved images, "
                             "merged clusters) into <root_dir>/<dataset>/refined/")
    return parser


def close_clusters(model, clusters):
    """Merged-away clusters keep their id and stay empty (see CLOSED_BIAS)."""
    head = model.cluster_head[0]
    with torch.no_grad():
        for k in clusters:
            head.weight[k] = 0
            head.bias[k] = CLOSED_BIAS


def starting_model(cfg):
    """(one-head model, its file): step 3's model, or the best SCAN head without one."""
    if os.path.isfile(cfg.paths.selflabel_model):
        model, head = load_trained_clustering_model(cfg.paths.selflabel_model, cfg.backbone)
        if model.nheads != 1 or head != 0:
            raise AnnotationError(f"{cfg.paths.selflabel_model} is not a one-head model")
        return model, cfg.paths.selflabel_model
    return clustering_model_from_scan(cfg), cfg.paths.scan_model


def corrected_loader(cfg, dataset, indices, steps, device):
    """The corrected images (both views), in batches beside each of the `steps` batches of the
    main loader: every one of them in every epoch, and, where they are few, several times (up
    to half a batch each step), so that a handful of corrections is learnt in a few epochs."""
    subset = AugmentedDataset(Subset(dataset, indices.tolist()), build_val_transform(cfg),
                              build_augmentation(cfg))
    size = min(len(indices), max(math.ceil(len(indices) / steps), cfg.batch_size // 2))
    return make_loader(subset, cfg, device, shuffle=True, drop_last=False, batch_size=size,
                       distributed=False)


def endless(loader):
    while True:
        yield from loader


def train_one_epoch(model, loader, extra_loader, user_targets, criterion, weight, optimizer,
                    device, epoch, head_only=False):
    """One pass: pseudo-labels of the uncorrected images, user labels of the corrected ones."""
    model.eval() if head_only else model.train()
    sums = {'pseudo_loss': 0.0, 'user_loss': 0.0}
    confident, seen, steps = 0, 0, 0
    extra_batches = endless(extra_loader)
    for batch in progress(loader, desc=f"refine epoch {epoch}", leave=False):
        free = user_targets[batch['index']] < 0  # images the user did not correct
        weak = to_device(batch['image'], device)[free.to(device)]
        strong = to_device(batch['image_augmented'], device)[free.to(device)]
        extra = next(extra_batches, None)
        n_free = weak.shape[0]
        if extra is not None:  # a user's label is sure: both views learn it
            strong = torch.cat([strong, to_device(extra['image'], device),
                                to_device(extra['image_augmented'], device)])
        with autocast(device):
            with torch.no_grad():
                weak_logits = model(weak)[0] if n_free else None
            strong_logits = model(strong)[0]
        loss = None
        if n_free:
            loss, n_confident = criterion(weak_logits, strong_logits[:n_free])
            confident, seen = confident + n_confident, seen + n_free
            sums['pseudo_loss'] += loss.item() if loss is not None else 0.0
        if extra is not None:
            targets = to_device(user_targets[extra['index']].repeat(2), device)
            user_loss = F.cross_entropy(strong_logits[n_free:].float(), targets)
            sums['user_loss'] += user_loss.item()
            loss = weight * user_loss if loss is None else loss + weight * user_loss
        if loss is None:
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return {**{k: v / max(steps, 1) for k, v in sums.items()},
            'confident_share': confident / max(seen, 1)}


def how_it_took(before, after, targets, corrected, merged, paths):
    """What the report says: corrected images elsewhere, images in closed clusters, and how many
    uncorrected images changed cluster."""
    misplaced = np.flatnonzero(corrected & (after != targets))
    return {'corrected_images': int(corrected.sum()),
            'corrected_in_their_cluster': int(corrected.sum() - len(misplaced)),
            'corrected_elsewhere': [{'id': int(i), 'path': paths[i], 'cluster': int(after[i]),
                                     'corrected_to': int(targets[i])} for i in misplaced],
            'images_in_merged_clusters': int(np.isin(after, merged).sum()),
            'uncorrected_images': int((~corrected).sum()),
            'uncorrected_changed_cluster': int((after != before)[~corrected].sum())}


def print_report(report):
    n = report['corrected_images']
    log(f"{report['corrected_in_their_cluster']} of {plural(n, 'corrected image')} in the "
        f"cluster the corrections put them in", 'green' if not report['corrected_elsewhere']
        else 'yellow')
    for row in report['corrected_elsewhere'][:SHOWN_MISPLACED]:
        log(f"  not in place: id {row['id']} {row['path']}: cluster {row['cluster']}, corrected "
            f"to {row['corrected_to']}", 'yellow')
    if len(report['corrected_elsewhere']) > SHOWN_MISPLACED:
        log(f"  ... {len(report['corrected_elsewhere']) - SHOWN_MISPLACED} more in log.jsonl")
    log(f"{plural(report['images_in_merged_clusters'], 'image')} in merged-away clusters")
    log(f"{plural(report['uncorrected_changed_cluster'], 'uncorrected image')} of "
        f"{report['uncorrected_images']:,} changed cluster", 'green')


def check_same_corrections(state, checkpoint, corrections_file, digest, weight):
    """The corrections and their weight of the checkpoint (epochs and lr are checked as
    `epochs` and `optimizer_kwargs.lr`, which they set)."""
    before = state['config'].get('correction_weight')
    if before != weight:
        raise ResumeConflict(f"{checkpoint} was refined with correction_weight={before}, not "
                             f"{weight}: restore it to resume, or {start_over(checkpoint)}")
    recorded = state.get('corrections_sha256')
    if recorded != digest:
        raise ResumeConflict(
            f"{checkpoint} was refined with another corrections file (SHA-256 {recorded}); "
            f"{corrections_file} has {digest}. Pass the file it was started with to resume, or "
            f"{start_over(checkpoint)} to refine with this one.")


def main(args):
    cfg, device = start_run(args, 'selflabel')
    if is_distributed():  # a few epochs on one export's images: one process is enough
        raise AnnotationError("selflabel.py --corrections runs in one process: start it with "
                              "python, not torchrun")
    complete_image_settings(cfg)
    rows = read_rows(args.corrections)  # its form, before any model runs
    digest = file_digest(args.corrections)
    cfg.epochs = cfg.refine_epochs  # what the schedule and the resume check read
    cfg.optimizer_kwargs.lr = cfg.refine_lr or cfg.optimizer_kwargs.lr
    lock_run_folder(cfg, cfg.paths.refined_dir)
    check_fingerprint(cfg)  # the images step 1 saw
    model, start_path = starting_model(cfg)
    model = prepare_model(model, device)
    if cfg.update_cluster_head_only:
        model.freeze_backbone()
    log(f"refining {start_path} with the corrections of {args.corrections}")

    eval_set = build_dataset(cfg, 'val')  # the images of the export the user corrected
    eval_loader = make_eval_loader(cfg, eval_set, device)
    probs = predict_clusters(model, eval_loader, device, desc='before')['probs'][0]
    before, num_clusters = probs.argmax(axis=1), probs.shape[1]
    paths = image_set(eval_set, f"{cfg.val_db_name}-val").paths
    corrections = match_corrections(args.corrections, rows, paths, before, num_clusters)
    targets, corrected = corrections.apply(before, num_clusters)
    if not corrected.any():
        raise AnnotationError(f"{args.corrections} moves no image and merges no non-empty "
                              f"cluster: nothing to learn from")
    merged = sorted(corrections.merges)
    close_clusters(model, merged)
    log(f"{plural(int(corrected.sum()), 'corrected image')} "
        f"({plural(len(corrections.moves), 'moved image')}, "
        f"{plural(len(merged), 'merged cluster')})")

    train_set = build_dataset(cfg, 'val')
    train_loader = make_train_loader(cfg, train_set, 'selflabel', device)
    extra_loader = corrected_loader(cfg, train_set, np.flatnonzero(corrected), len(train_loader),
                                    device)
    user_targets = torch.as_tensor(np.where(corrected, targets, -1), dtype=torch.int64)
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    scheduler = build_scheduler(cfg, optimizer)
    criterion = ConfidenceBasedCE(cfg.confidence_threshold,
                                  cfg.criterion_kwargs.apply_class_balancing)
    run_log = RunLog(cfg.paths.refined_log)
    inputs = input_digests(start_path)
    state = resume_state(cfg, cfg.paths.refined_checkpoint, device, inputs)
    if state is not None:
        check_same_corrections(state, cfg.paths.refined_checkpoint, args.corrections, digest,
                               cfg.correction_weight)
    run_log.start(state)
    start_epoch = 0
    if state is not None:
        start_epoch = restore_checkpoint(state, model, optimizer, scheduler)
        log(f"resuming from {cfg.paths.refined_checkpoint} at epoch {start_epoch}", 'yellow')

    warnings.filterwarnings('ignore', message=r'Detected call of `lr_scheduler.step\(\)`')
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(epoch_seed(cfg, epoch))
        set_loader_epoch(train_loader, epoch)
        started = time.time()
        record = {'epoch': epoch + 1, **train_one_epoch(
            model, train_loader, extra_loader, user_targets, criterion, cfg.correction_weight,
            optimizer, device, epoch, cfg.update_cluster_head_only)}
        record['seconds'] = round(time.time() - started, 2)
        scheduler.step()
        run_log.write(record)
        save_checkpoint(cfg.paths.refined_checkpoint, cfg, epoch + 1, model, optimizer,
                        scheduler, log=run_log.records, inputs=inputs, corrections_sha256=digest)

    close_clusters(model, merged)  # exactly, whatever weight decay did to the bias
    after = predict_clusters(model, eval_loader, device, desc='after')['probs'][0].argmax(axis=1)
    report = how_it_took(before, after, targets, corrected, merged, paths)
    with open(cfg.paths.refined_log, 'a', encoding='utf-8') as f:  # after the epochs' records
        f.write(json.dumps({'report': report}) + '\n')
    print_report(report)
    atomic_save({'model': model.state_dict(), 'head': 0, 'config': plain(cfg),
                 'corrections': {'file': args.corrections, 'sha256': digest}},
                cfg.paths.refined_model)
    log(f"refined model saved in {cfg.paths.refined_model}; export with: eval.py ... --model "
        f"{cfg.paths.refined_model} --annotate OUTDIR", 'green')
    return report
