"""Step 3: self-labeling fine-tune of the best SCAN head on its own confident predictions.

    python selflabel.py --config_env configs/env.yml --config_exp configs/selflabel/selflabel_digits.yml

Reads <root_dir>/<dataset>/scan/model.pth.tar; writes into <root_dir>/<dataset>/selflabel/:
checkpoint.pth.tar (every epoch; a rerun resumes), model.pth.tar, log.jsonl. Each epoch logs the
share of confident samples and the number of non-empty clusters, so a collapse shows.
"""
import time
import warnings

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import refine
from data import build_dataset
from data.device_loader import make_eval_loader, make_train_loader
from data.feature_cache import cached_eval_loader, cached_features, cached_selflabel_loader
from data.fingerprint import check_fingerprint
from data.loaders import set_loader_epoch
from data.settings import complete_image_settings
from losses import ConfidenceBasedCE
from models.heads import heads_on_features
from models.loading import clustering_model_from_scan
from utils.checkpoint import atomic_save
from utils.device import autocast, prepare_model, to_device
from utils.ema import ShadowEMA
from utils.distributed import barrier, cleanup_distributed, is_main_process, wrap_ddp
from utils.inference import predict_clusters
from utils.metrics import labelled_metrics, non_empty_clusters
from utils.progress import progress
from utils.runtime import get_args_parser, lock_run_folder, log, run_cli, start_run
from utils.training import (RunLog, build_optimizer, build_scheduler, epoch_seed, input_digests,
                            plain, restore_checkpoint, resume_state, save_checkpoint,
                            seed_everything)


def train_one_epoch(model, ema, loader, criterion, optimizer, device, epoch, head_only=False):
    # With a frozen backbone its BatchNorm statistics and dropout stay frozen too (eval mode).
    model.eval() if head_only else model.train()
    loss_sum = torch.zeros((), device=device)
    confident, seen, skipped, steps = 0, 0, 0, 0
    bar = progress(loader, desc=f"selflabel epoch {epoch}", leave=False)
    for batch in bar:
        weak = to_device(batch['image'], device)
        strong = to_device(batch['image_augmented'], device)
        with autocast(device):
            with torch.no_grad():
                weak_logits = model(weak)[0]
            strong_logits = model(strong)[0]
        loss, n_confident = criterion(weak_logits, strong_logits)
        seen += weak.shape[0]
        confident += n_confident
        if loss is None:  # nothing confident in this batch: nothing to learn from it
            skipped += 1
            continue
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach()
        steps += 1
        bar.set_postfix(confident=f"{confident / seen:.2f}")
    return {'loss': (loss_sum / steps).item() if steps else None,
            'confident_share': confident / max(seen, 1), 'skipped_batches': skipped}


def build_ema(cfg, model, state):
    """use_ema: the original's shadow loaded into the model after every step (made after a
    resume, from the model as restored), or with `ema_method: averaged` torch's AveragedModel."""
    if not cfg.use_ema:
        return None
    if cfg.ema_method == 'original':
        return ShadowEMA(model, cfg.ema_alpha)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_alpha), use_buffers=True)
    if state is not None:
        ema.load_state_dict(state['ema'])
    return ema


def main(args):
    if getattr(args, 'corrections', None):  # the gallery's corrections teach the model
        return refine.main(args)
    cfg, device = start_run(args, 'selflabel')
    complete_image_settings(cfg)
    lock_run_folder(cfg, cfg.paths.selflabel_dir)
    check_fingerprint(cfg)  # the images step 1 saw
    model = prepare_model(clustering_model_from_scan(cfg), device)
    if cfg.update_cluster_head_only:
        model.freeze_backbone()
    if cfg.feature_cache:  # `trained`: model's own head, fed with cached backbone features
        train, val = cached_features(cfg, model.backbone, device)
        trained = prepare_model(heads_on_features(model), device)
        train_loader, val_loader = cached_selflabel_loader(cfg, train), cached_eval_loader(cfg, val)
    else:
        trained = model
        train_loader = make_train_loader(cfg, build_dataset(cfg, 'train'), 'selflabel', device)
        val_loader = make_eval_loader(cfg, build_dataset(cfg, 'val'), device)
    ddp_model = wrap_ddp(trained, device, cfg)
    optimizer = build_optimizer(cfg, [p for p in ddp_model.parameters() if p.requires_grad])
    scheduler = build_scheduler(cfg, optimizer)
    criterion = ConfidenceBasedCE(cfg.confidence_threshold,
                                  cfg.criterion_kwargs.apply_class_balancing)
    run_log = RunLog(cfg.paths.selflabel_log)

    start_epoch = 0
    inputs = input_digests(cfg.paths.scan_model)
    state = resume_state(cfg, cfg.paths.selflabel_checkpoint, device, inputs)
    run_log.start(state)  # the log holds exactly the checkpoint's epochs
    if state is not None:
        start_epoch = restore_checkpoint(state, trained, optimizer, scheduler)
        log(f"resuming from {cfg.paths.selflabel_checkpoint} at epoch {start_epoch}", 'yellow')
    ema = build_ema(cfg, trained, state)

    # An epoch in which no batch had a confident sample steps the schedule without an optimizer
    # step; that is intended (the schedule is per epoch), so torch's warning is noise here.
    warnings.filterwarnings('ignore', message=r'Detected call of `lr_scheduler.step\(\)`')
    averaged = isinstance(ema, AveragedModel)
    final = ema.module if averaged else trained  # the original's EMA lives in the model itself
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(epoch_seed(cfg, epoch))
        set_loader_epoch(train_loader, epoch)
        started = time.time()
        record = {'epoch': epoch + 1, **train_one_epoch(ddp_model, ema, train_loader, criterion,
                                                        optimizer, device, epoch,
                                                        cfg.update_cluster_head_only)}
        record['seconds'] = round(time.time() - started, 2)
        scheduler.step()
        if is_main_process():
            predictions = predict_clusters(final, val_loader, device, desc='selflabel eval')
            record['non_empty_clusters'] = non_empty_clusters(predictions['probs'][0])
            metrics = labelled_metrics(predictions['probs'][0], predictions['targets'],
                                       cfg.num_classes)
            record.update({f'val_{k}': v for k, v in (metrics or {}).items()})
        extra = {'ema': ema.state_dict()} if averaged else {}
        run_log.write(record)
        save_checkpoint(cfg.paths.selflabel_checkpoint, cfg, epoch + 1, trained, optimizer,
                        scheduler, log=run_log.records, inputs=inputs, **extra)
    if is_main_process():
        if trained is not model:  # heads trained on cached features: save them with the backbone
            model.cluster_head.load_state_dict(final.cluster_head.state_dict())
            final = model
        atomic_save({'model': final.state_dict(), 'head': 0, 'config': plain(cfg)},
                    cfg.paths.selflabel_model)
        log(f"self-labeled model saved in {cfg.paths.selflabel_model}", 'green')
    barrier()
    cleanup_distributed()


if __name__ == '__main__':
    run_cli(main, refine.add_corrections_argument(get_args_parser('SCAN step 3: self-labeling')))
