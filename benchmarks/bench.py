"""Throughput of the three training steps, the data path alone, evaluation and neighbour mining,
faithful and fast side by side, with the projected wall time of a whole pipeline.

    python benchmarks/bench.py                      # every preset, published batch sizes
    python benchmarks/bench.py --quick              # tiny batches and few steps (a few CPU minutes)
    python benchmarks/bench.py --presets cifar-10 --compile

faithful: DataLoader + per-image PIL transforms in `num_workers` CPU workers, fp32, contiguous.
fast:     the device loader (uint8 images on the device, batched augmentation there), plus on
          CUDA bf16 autocast (precision: bf16) and channels_last (utils/device.py).
Images are synthetic uint8 arrays shaped like each dataset (the digits preset uses the real
digits). Every figure is one JSON line on stdout; see benchmarks/README.md.
"""
import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from unittest import mock

import numpy as np
import torch
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a file from anywhere: the project's modules import

import scan  # noqa: E402  (the scripts' own train_one_epoch functions are measured)
import selflabel  # noqa: E402
import simclr  # noqa: E402
import utils.inference  # noqa: E402
from data.base import ImageDataset  # noqa: E402
from data.device_loader import make_eval_loader, make_train_loader  # noqa: E402
from data.settings import complete_image_settings  # noqa: E402
from losses import ConfidenceBasedCE, SCANLoss, SimCLRLoss  # noqa: E402
from models import ClusteringModel, ContrastiveModel, build_backbone  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.device import configure_backends, prepare_model, select_device  # noqa: E402
from utils.inference import predict_clusters  # noqa: E402
from utils.mining import mine_nearest_neighbors  # noqa: E402
from utils.training import build_optimizer  # noqa: E402

ENV = os.path.join(ROOT, 'configs', 'env.yml')
EXPERIMENTS = {'pretext': 'configs/pretext/simclr_digits.yml',
               'scan': 'configs/scan/scan_digits.yml',
               'selflabel': 'configs/selflabel/selflabel_digits.yml'}
STEPS = ('pretext', 'scan', 'selflabel')
CIFAR_NORM = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
IMAGENET_NORM = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@dataclass
class Preset:
    size: int
    backbone: str
    images: dict                  # images per epoch: pretext, train (SCAN, self-label), val
    epochs: dict                  # per step; None for the digits configs' own values
    batch: dict                   # per step; None keeps the config's
    quick_batch: dict
    opts: dict = field(default_factory=dict)   # --opts per step over the digits configs
    knn_every: int = 10


def published(size, backbone, norm, cutout, scan_opts=()):
    """--opts turning the digits configs into a dataset's published recipe (SCAN.md)."""
    mean, std = (str(v).replace(' ', '') for v in norm)
    shared = [f'backbone={backbone}', f'transformation_kwargs.crop_size={size}',
              f'augmentation_kwargs.crop_size={size}', 'augmentation_kwargs.horizontal_flip=true',
              f'augmentation_kwargs.normalize.mean={mean}',
              f'augmentation_kwargs.normalize.std={std}',
              f'transformation_kwargs.normalize.mean={mean}',
              f'transformation_kwargs.normalize.std={std}']
    simclr_aug = [f'augmentation_kwargs.random_resized_crop.size={size}',
                  'augmentation_kwargs.random_resized_crop.scale=[0.2,1.0]',
                  'augmentation_kwargs.color_jitter.saturation=0.4',
                  'augmentation_kwargs.color_jitter.hue=0.1',
                  'augmentation_kwargs.random_grayscale.p=0.2']
    strong = [f'augmentation_kwargs.cutout_kwargs.length={cutout}']
    return {'pretext': shared + simclr_aug + ['model_kwargs.features_dim=128', 'optimizer=sgd',
                                              'optimizer_kwargs.lr=0.4',
                                              'criterion_kwargs.temperature=0.1'],
            'scan': shared + strong + simclr_aug + ['optimizer_kwargs.lr=0.0001', *scan_opts],
            'selflabel': shared + strong + ['optimizer_kwargs.lr=0.0001']}


PRESETS = {
    'digits': Preset(16, 'small', {'pretext': 1437, 'train': 1437, 'val': 360}, None, None,
                     {'pretext': 256, 'scan': 128, 'selflabel': 256}),
    'cifar-10': Preset(32, 'resnet18_cifar', {'pretext': 50_000, 'train': 50_000, 'val': 10_000},
                       {'pretext': 500, 'scan': 50, 'selflabel': 200},
                       {'pretext': 512, 'scan': 128, 'selflabel': 1000},
                       {'pretext': 8, 'scan': 8, 'selflabel': 16},
                       published(32, 'resnet18_cifar', CIFAR_NORM, 16)),
    'stl-10': Preset(96, 'resnet18_stl', {'pretext': 105_000, 'train': 5_000, 'val': 8_000},
                     {'pretext': 500, 'scan': 100, 'selflabel': 200},
                     {'pretext': 512, 'scan': 128, 'selflabel': 1000},
                     {'pretext': 4, 'scan': 4, 'selflabel': 8},
                     published(96, 'resnet18_stl', IMAGENET_NORM, 32)),
    # ImageNet-100 sized; SCAN trains 10 heads on a frozen backbone with SimCLR augmentation.
    'imagenet': Preset(224, 'resnet50', {'pretext': 126_689, 'train': 126_689, 'val': 5_000},
                       {'pretext': 0, 'scan': 100, 'selflabel': 25},
                       {'pretext': 256, 'scan': 512, 'selflabel': 256},
                       {'pretext': 2, 'scan': 4, 'selflabel': 2},
                       published(224, 'resnet50', IMAGENET_NORM, 32,
                                 ['augmentation_strategy=simclr', 'num_heads=10',
                                  'update_cluster_head_only=true', 'optimizer=sgd',
                                  'optimizer_kwargs.lr=5.0'])),
}


class SyntheticImages(ImageDataset):
    """Random uint8 images with a `data` array, as CIFAR/STL load theirs."""

    def __init__(self, n, size, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.data = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        self.targets = rng.integers(0, 10, n)


class Steps:
    """The next `n` batches of a loader, restarted when it runs out, as a loader of length n:
    the scripts' train_one_epoch runs on it unchanged, and the workers of a DataLoader stay up
    between the warm-up and the measured steps."""

    def __init__(self, loader):
        self.loader, self.iterator, self.n = loader, iter(loader), 0

    def take(self, n):
        self.n = n
        return self

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            try:
                yield next(self.iterator)
            except StopIteration:
                self.iterator = iter(self.loader)
                yield next(self.iterator)


def silence_progress_bars():
    """The scripts' tqdm bars would interleave with the JSON lines."""
    for module in (simclr, scan, selflabel, utils.inference):
        module.progress = lambda iterable, **kwargs: tqdm(iterable, **{**kwargs, 'disable': True})


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(device, fn):
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


@contextlib.contextmanager
def faithful_precision(enabled):
    """fp32 and the contiguous memory format for the faithful variant: the scripts' autocast and
    to_device are swapped for plain ones while it runs (no-ops on the CPU)."""
    with contextlib.ExitStack() as stack:
        if enabled:
            for module in (simclr, scan, selflabel, utils.inference):
                stack.enter_context(mock.patch.object(
                    module, 'autocast', lambda device: contextlib.nullcontext()))
                stack.enter_context(mock.patch.object(
                    module, 'to_device', lambda x, device: x.to(device, non_blocking=True)))
        yield


def faithful_workers(args):
    return min(8, os.cpu_count()) if args.workers is None else args.workers


def step_config(preset, step, fast, args):
    batch = (preset.quick_batch if args.quick else preset.batch or {}).get(step)
    opts = [f'fast_augmentation={str(fast).lower()}', f'device={args.device}',
            *preset.opts.get(step, [])]
    if batch:
        opts.append(f'batch_size={batch}')
    if args.workers is not None or preset.opts:  # the digits configs keep their own
        opts.append(f'num_workers={faithful_workers(args)}')
    if step == 'selflabel':  # an untrained model is never 99% sure: let every batch train
        opts.append('confidence_threshold=0.0')
    return complete_image_settings(load_config(ENV, os.path.join(ROOT, EXPERIMENTS[step]), opts))


def build_datasets(name, preset, args):
    """(pretext/train dataset, val dataset, N x 21 neighbour indices)."""
    if name == 'digits':
        from data.digits import Digits
        train, val = Digits('train'), Digits('test')
    else:
        largest = max((preset.quick_batch if args.quick else preset.batch).values())
        # enough for the longest measurement without restarting a DataLoader mid-way
        n = largest * (args.warmup + 2 * faithful_workers(args) + data_figure_steps(args)) + 1
        train, val = SyntheticImages(n, preset.size), SyntheticImages(n, preset.size, seed=1)
    rng = np.random.default_rng(0)
    neighbors = np.concatenate([np.arange(len(train))[:, None],
                                rng.integers(0, len(train), (len(train), 20))], axis=1)
    return train, val, neighbors


def build_model(cfg, step, device, fast, compile_model):
    if step == 'pretext':
        model = ContrastiveModel(build_backbone(cfg.backbone), **cfg.model_kwargs)
    else:
        heads = cfg.num_heads if step == 'scan' else 1
        model = ClusteringModel(build_backbone(cfg.backbone), cfg.num_classes, heads)
    if step == 'scan' and cfg.update_cluster_head_only:
        model.freeze_backbone()
    model = prepare_model(model, device) if fast else model.to(device)
    return torch.compile(model) if compile_model else model


def train_runner(step, cfg, model, device):
    """A function loader -> None running the script's own train_one_epoch for one epoch."""
    optimizer = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    if step == 'pretext':
        criterion = SimCLRLoss(cfg.criterion_kwargs.temperature, cfg.criterion_kwargs.symmetric)
        return lambda loader: simclr.train_one_epoch(model, loader, criterion, optimizer, device, 0)
    if step == 'scan':
        criterion = SCANLoss(cfg.criterion_kwargs.entropy_weight)
        return lambda loader: scan.train_one_epoch(model, loader, criterion, optimizer, device, 0,
                                                   cfg.update_cluster_head_only,
                                                   cfg.concat_forward)
    criterion = ConfidenceBasedCE(cfg.confidence_threshold,
                                  cfg.criterion_kwargs.apply_class_balancing)
    return lambda loader: selflabel.train_one_epoch(model, None, loader, criterion, optimizer,
                                                    device, 0)


def consume(loader, device):
    """Read batches as a training step would: every image tensor on the device."""
    for batch in loader:
        for value in batch.values():
            if value.dim() == 4:
                value.to(device, non_blocking=True)


class Report:
    """Prints one JSON line per figure and keeps the rates for ratios and projections."""

    def __init__(self, device):
        self.device, self.rates = device, {}

    def figure(self, kind, preset, step, variant, cfg, images, seconds, **settings):
        rate = images / seconds
        self.rates[preset, kind, step, variant] = rate
        fast = variant != 'faithful'
        dtype = 'bfloat16 autocast' if fast and self.device.type == 'cuda' else 'float32'
        record = {'figure': kind, 'preset': preset, 'step': step, 'variant': variant,
                  'device': device_name(self.device), 'dtype': dtype,
                  'batch_size': cfg.batch_size, 'image_size': cfg.transformation_kwargs.crop_size,
                  'backbone': cfg.backbone, 'images_per_s': round(rate, 1),
                  'seconds': round(seconds, 3),
                  'settings': {'augmentation': cfg.augmentation_strategy,
                               'data_path': 'device batched' if fast else
                               f'DataLoader+PIL, {cfg.num_workers} workers',
                               'channels_last': fast and self.device.type == 'cuda',
                               'threads': torch.get_num_threads(), **settings}}
        emit(record)

    def ratios(self, preset, variants):
        for (p, kind, step, variant), rate in list(self.rates.items()):
            base = self.rates.get((p, kind, step, 'faithful'))
            if p == preset and variant != 'faithful' and base:
                emit({'figure': 'speedup', 'preset': p, 'of': kind, 'step': step,
                      'variant': variant, 'ratio': round(rate / base, 2)})


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'cpu ({os.cpu_count()} cores)'


def emit(record):
    print(json.dumps(record), flush=True)


def data_figure_steps(args):
    return max(args.steps, 10 if args.quick else 20)


def measure_step(name, preset, step, variant, datasets, report, device, args):
    fast = variant != 'faithful'
    cfg = step_config(preset, step, fast, args)
    train, _, neighbors = datasets
    loader = make_train_loader(cfg, train, step, device, neighbors if step == 'scan' else None)
    views = 2  # every step reads two views of each image
    # A DataLoader's workers run ahead by 2 batches each: warm up past that, then measure
    # enough batches that the producers, not a full queue, set the rate.
    data_steps, n = Steps(loader), data_figure_steps(args)
    consume(data_steps.take(args.warmup + 2 * cfg.num_workers), device)
    seconds = timed(device, lambda: consume(data_steps.take(n), device))
    report.figure('data', name, step, variant, cfg, n * cfg.batch_size, seconds, views=views)

    model = build_model(cfg, step, device, fast, args.compile and fast)
    run = train_runner(step, cfg, model, device)
    steps = Steps(loader)
    with faithful_precision(not fast):
        run(steps.take(args.warmup))
        seconds = timed(device, lambda: run(steps.take(args.steps)))
    report.figure('train', name, step, variant, cfg, args.steps * cfg.batch_size, seconds,
                  views=views, compiled=args.compile and fast)
    if args.profile:
        with faithful_precision(not fast):
            profile_step(name, step, variant, device, lambda: run(steps.take(args.steps)))


def profile_step(name, step, variant, device, fn, top=8):
    """Where the time of `fn` (some training steps) goes: the operators with the most self time,
    on the device for CUDA, else on the CPU, with their share of the total."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        timed(device, fn)
    key = 'self_device_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    ops = [e for e in profiler.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in ops)
    ops.sort(key=lambda e: getattr(e, key), reverse=True)
    emit({'figure': 'profile', 'preset': name, 'step': step, 'variant': variant,
          'time_on': device.type, 'total_ms': round(total / 1000, 1),
          'top': [{'op': e.key, 'ms': round(getattr(e, key) / 1000, 1),
                   'share': round(getattr(e, key) / total, 3), 'calls': e.count}
                  for e in ops[:top]]})


def measure_eval(name, preset, variant, datasets, report, device, args):
    """Forward passes over the validation transform, as every epoch's evaluation does."""
    fast = variant != 'faithful'
    cfg = step_config(preset, 'scan', fast, args)
    _, val, _ = datasets
    model = build_model(cfg, 'selflabel', device, fast, False)
    steps = Steps(make_eval_loader(cfg, val, device))
    with faithful_precision(not fast):
        predict_clusters(model, steps.take(args.warmup), device)
        seconds = timed(device, lambda: predict_clusters(model, steps.take(args.steps), device))
    report.figure('eval', name, 'eval', variant, cfg, args.steps * cfg.batch_size, seconds)


def measure_mining(name, preset, device, args):
    """Top-20 mining of normalised 128-d features of one epoch of train images (capped)."""
    n = min(preset.images['train'], args.mining_images)
    features = torch.nn.functional.normalize(torch.randn(n, 128, device=device), dim=1)
    seconds = {}
    for index in ('exact', 'ivf'):
        seconds[index] = timed(device, lambda: mine_nearest_neighbors(features, 20, index))
        emit({'figure': 'mining', 'preset': name, 'index': index, 'images': n, 'k': 20,
              'dim': 128, 'device': device_name(device), 'features_on': device.type,
              'seconds': round(seconds[index], 3)})
    # exact search grows with n^2: scale to the full train set where fewer were mined
    return seconds['exact'] * (preset.images['train'] / n) ** 2


def check_syncs(name, preset, datasets, device, args):
    """On CUDA: does the fast path make the host wait for the device (it should not)?"""
    if device.type != 'cuda':
        return
    train, val, neighbors = datasets
    for step in STEPS:
        cfg = step_config(preset, step, True, args)
        loader = make_train_loader(cfg, train, step, device, neighbors if step == 'scan' else None)
        batches = Steps(loader).take(2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                consume(batches, device)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        syncs = [str(w.message).splitlines()[0] for w in caught if 'synchron' in str(w.message)]
        emit({'figure': 'syncs', 'preset': name, 'step': step, 'count': len(syncs),
              'first': syncs[:3]})


def project(name, preset, report, mining_seconds, variants, args):
    """Wall time of the whole pipeline from the measured rates: every training epoch, every
    evaluation pass the scripts make (SCAN and self-label each epoch, the pretext kNN monitor
    every knn_every epochs, the embedding before mining) and exact mining (train)."""
    epochs = preset.epochs or {step: step_config(preset, step, False, args).epochs
                               for step in STEPS}
    images = preset.images
    for variant in variants:
        rate = {step: report.rates.get((name, 'train', step, variant)) for step in STEPS}
        eval_rate = report.rates.get((name, 'eval', 'eval', variant))
        if None in rate.values() or eval_rate is None:
            continue
        seconds = {step: epochs[step] * (images['pretext'] if step == 'pretext' else
                                         images['train']) / rate[step] for step in STEPS}
        monitor_passes = epochs['pretext'] // preset.knn_every + 1  # + the embedding to mine
        eval_images = ((epochs['scan'] + epochs['selflabel']) * images['val']
                       + monitor_passes * (images['train'] + images['val']))
        seconds['eval'] = eval_images / eval_rate
        seconds['mining'] = mining_seconds
        total = sum(seconds.values())
        emit({'figure': 'projection', 'preset': name, 'variant': variant, 'epochs': epochs,
              'images': images, 'seconds': {k: round(v, 1) for k, v in seconds.items()},
              'hours': round(total / 3600, 3)})


def run_preset(name, args, report, device):
    preset = PRESETS[name]
    datasets = build_datasets(name, preset, args)
    variants = ['faithful', 'fast'] + (['fast+compile'] if args.compile else [])
    for step in STEPS:
        for variant in variants:
            measure_step(name, preset, step, variant, datasets, report, device, args)
    for variant in variants:
        measure_eval(name, preset, variant, datasets, report, device, args)
    mining_seconds = measure_mining(name, preset, device, args)
    check_syncs(name, preset, datasets, device, args)
    report.ratios(name, variants)
    project(name, preset, report, mining_seconds, variants, args)


def get_args_parser():
    parser = argparse.ArgumentParser(description='SCAN throughput: faithful vs fast data path')
    parser.add_argument('--presets', default='digits,cifar-10,stl-10,imagenet',
                        help=f'comma-separated, from {list(PRESETS)}')
    parser.add_argument('--quick', action='store_true',
                        help='tiny batches, 1 warm-up and 2 measured steps (CPU smoke run)')
    parser.add_argument('--steps', type=int, default=None, help='measured steps (default 20)')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up steps (default 5)')
    parser.add_argument('--workers', type=int, default=None,
                        help='DataLoader workers of the faithful path (default: min(8, cores); '
                             'the digits configs keep theirs)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda, cuda:N')
    parser.add_argument('--compile', action='store_true', help='also measure torch.compile')
    parser.add_argument('--profile', action='store_true',
                        help='also profile each training step: the operators with the most time')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 with --quick on the "
                             "CPU, where tiny batches gain nothing from more and a shared CPU "
                             "makes them stall)")
    parser.add_argument('--mining_images', type=int, default=None,
                        help='features mined at most (default 50,000; 5,000 with --quick)')
    return parser


def main(args):
    args.steps = args.steps or (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    args.mining_images = args.mining_images or (5_000 if args.quick else 50_000)
    device = select_device(args.device)
    if args.threads or (args.quick and device.type == 'cpu'):
        torch.set_num_threads(args.threads or 1)
    silence_progress_bars()
    # the fast variant on CUDA is the speed recipe (precision: bf16); the faithful one stays fp32
    configure_backends(device, 'bf16' if device.type == 'cuda' else 'fp32')
    report = Report(device)
    for name in args.presets.split(','):
        torch.manual_seed(0)
        run_preset(name, args, report, device)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
