"""Step 2: SCAN clustering from the neighbours mined in step 1.

    python scan.py --config_env configs/env.yml --config_exp configs/scan/scan_digits.yml

Reads <root_dir>/<dataset>/pretext/{model.pth.tar, topk-*-neighbors.npy}; writes into
<root_dir>/<dataset>/scan/: checkpoint.pth.tar (every epoch; a rerun resumes), model.pth.tar (the
lowest-loss head over the run, chosen on the validation neighbours, never by accuracy), log.jsonl.
"""
import time

import torch
from easydict import EasyDict

from data import build_dataset
from data.device_loader import make_eval_loader, make_train_loader
from data.feature_cache import cached_eval_loader, cached_features, cached_scan_loader
from data.fingerprint import check_fingerprint
from data.loaders import set_loader_epoch
from data.settings import complete_image_settings
from losses import SCANLoss, lowest_loss_head, scan_head_losses
from models.heads import heads_on_features
from models.loading import clustering_model_from_pretext
from models.original import read_model_file
from utils.checkpoint import atomic_save, require
from utils.config import ConfigError
from utils.device import autocast, prepare_model, to_device
from utils.distributed import barrier, cleanup_distributed, is_main_process, wrap_ddp
from utils.inference import predict_clusters
from utils.k_selection import resolve_auto_num_classes
from utils.metrics import labelled_metrics
from utils.mining import read_neighbors
from utils.progress import progress
from utils.runtime import get_args_parser, lock_run_folder, log, run_cli, start_run
from utils.training import (RunLog, build_optimizer, build_scheduler, epoch_seed, input_digests,
                            plain, restore_checkpoint, resume_state, save_checkpoint,
                            seed_everything)


def forward_heads(model, images, head_only):
    """Logits of every head; a frozen backbone runs without gradients."""
    if not head_only:
        return model(images)
    with torch.no_grad():
        features = model(images, forward_pass='backbone')
    return model(features, forward_pass='head')


def train_one_epoch(model, loader, criterion, optimizer, device, epoch, head_only, concat):
    # With a frozen backbone its BatchNorm statistics stay frozen too (eval mode).
    model.eval() if head_only else model.train()
    sums = torch.zeros(3, device=device)
    bar = progress(loader, desc=f"scan epoch {epoch}", leave=False)
    for step, batch in enumerate(bar, 1):
        anchors, neighbors = (to_device(batch[k], device) for k in ('anchor', 'neighbor'))
        with autocast(device):
            if concat:  # opt-in: one pass, BatchNorm statistics over anchors and neighbours
                b = anchors.shape[0]
                outputs = forward_heads(model, torch.cat([anchors, neighbors]), head_only)
                pairs = [(out[:b], out[b:]) for out in outputs]
            else:  # as the original: two passes, BatchNorm statistics per pass
                pairs = list(zip(forward_heads(model, anchors, head_only),
                                 forward_heads(model, neighbors, head_only)))
        losses = [criterion(a, n) for a, n in pairs]
        total = sum(loss[0] for loss in losses)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        sums += torch.stack([torch.stack(loss).detach() for loss in losses]).mean(0)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{total.item() / len(losses):.3f}")
    mean = (sums / max(len(loader), 1)).tolist()
    return {'loss': mean[0], 'consistency': mean[1], 'entropy': mean[2]}


def evaluate(model, val_loader, val_neighbors, cfg, device):
    """Per-head SCAN loss on the validation neighbours; metrics of the best head if labelled."""
    predictions = predict_clusters(model, val_loader, device, desc='scan eval')
    head_losses = scan_head_losses(predictions['probs'], val_neighbors)
    head, loss = lowest_loss_head(head_losses)
    record = {'best_head': head, 'val_loss': loss, 'val_consistency': head_losses[head]['consistency'],
              'val_entropy': head_losses[head]['entropy']}
    metrics = labelled_metrics(predictions['probs'][head], predictions['targets'], cfg.num_classes)
    if metrics:
        record.update({f'val_{k}': v for k, v in metrics.items()})
    return record


def load_neighbors(cfg):
    for path in (cfg.paths.topk_neighbors_train_path, cfg.paths.topk_neighbors_val_path):
        require(path, 'simclr.py')
    train = read_neighbors(cfg.paths.topk_neighbors_train_path)
    mined = train.shape[1] - 1  # column 0 is the anchor itself
    if cfg.num_neighbors > mined:
        raise ConfigError(f"{cfg.config_files['exp']}: num_neighbors={cfg.num_neighbors}, but "
                          f"step 1 mined {mined} per image ({cfg.paths.topk_neighbors_train_path})"
                          f": lower it to {mined} or less, or rerun simclr.py with --opts "
                          f"num_neighbors={cfg.num_neighbors} (it only mines again)")
    return train, read_neighbors(cfg.paths.topk_neighbors_val_path)


def step1_train_features(cfg, device):
    """Step 1's features of the train images, those its neighbours were mined on."""
    from eval import pretext_features  # the same features eval.py scores
    saved = read_model_file(cfg.paths.pretext_model).config or {}
    step1 = EasyDict({**cfg, 'setup': saved.get('setup', 'simclr'),
                      'model_kwargs': saved.get('model_kwargs', cfg.model_kwargs)})
    return pretext_features(step1, cfg.paths.pretext_model, device)[0].cpu().numpy()


def main(args):
    cfg, device = start_run(args, 'scan')
    complete_image_settings(cfg)
    lock_run_folder(cfg, cfg.paths.scan_dir)
    train_neighbors, val_neighbors = load_neighbors(cfg)
    check_fingerprint(cfg)  # the neighbours point at the images step 1 saw
    if cfg.num_classes == 'auto':  # K from step 1's features; saved with the model's config
        resolve_auto_num_classes(cfg, step1_train_features(cfg, device), write=is_main_process())
    model = prepare_model(clustering_model_from_pretext(cfg), device)
    if cfg.update_cluster_head_only:
        model.freeze_backbone()
    if cfg.feature_cache:  # `trained`: model's own heads, fed with cached backbone features
        train, val = cached_features(cfg, model.backbone, device)
        trained = prepare_model(heads_on_features(model), device)
        train_loader = cached_scan_loader(cfg, train, train_neighbors)
        val_loader = cached_eval_loader(cfg, val)
    else:
        trained = model
        train_loader = make_train_loader(cfg, build_dataset(cfg, 'train'), 'scan', device,
                                         train_neighbors)
        val_loader = make_eval_loader(cfg, build_dataset(cfg, 'val'), device)
    ddp_model = wrap_ddp(trained, device, cfg)
    optimizer = build_optimizer(cfg, [p for p in ddp_model.parameters() if p.requires_grad])
    scheduler = build_scheduler(cfg, optimizer)
    criterion = SCANLoss(cfg.criterion_kwargs.entropy_weight)
    run_log = RunLog(cfg.paths.scan_log)

    start_epoch, best = 0, {'loss': float('inf'), 'head': 0}
    inputs = input_digests(cfg.paths.pretext_model, cfg.paths.topk_neighbors_train_path,
                           cfg.paths.topk_neighbors_val_path)
    state = resume_state(cfg, cfg.paths.scan_checkpoint, device, inputs)
    run_log.start(state)  # the log holds exactly the checkpoint's epochs
    if state is not None:
        start_epoch = restore_checkpoint(state, trained, optimizer, scheduler)
        best = state['best']
        log(f"resuming from {cfg.paths.scan_checkpoint} at epoch {start_epoch}", 'yellow')

    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(epoch_seed(cfg, epoch))
        set_loader_epoch(train_loader, epoch)
        started = time.time()
        record = {'epoch': epoch + 1, **train_one_epoch(ddp_model, train_loader, criterion,
                                                        optimizer, device, epoch,
                                                        cfg.update_cluster_head_only,
                                                        cfg.concat_forward)}
        record['seconds'] = round(time.time() - started, 2)
        scheduler.step()
        if is_main_process():
            record.update(evaluate(trained, val_loader, val_neighbors, cfg, device))
            if record['val_loss'] < best['loss']:
                best = {'loss': record['val_loss'], 'head': record['best_head'],
                        'epoch': epoch + 1}
                atomic_save({'model': model.state_dict(), 'head': best['head'],
                             'config': plain(cfg)}, cfg.paths.scan_model)
            record['saved_best'] = best.get('epoch') == epoch + 1
        run_log.write(record)
        save_checkpoint(cfg.paths.scan_checkpoint, cfg, epoch + 1, trained, optimizer, scheduler,
                        best=best, log=run_log.records, inputs=inputs)
    log(f"best SCAN head {best['head']} (val loss {best['loss']:.4f}) saved in "
        f"{cfg.paths.scan_model}", 'green')
    barrier()
    cleanup_distributed()


if __name__ == '__main__':
    run_cli(main, get_args_parser('SCAN step 2: clustering from mined nearest neighbours'))
