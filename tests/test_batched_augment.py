"""The fast data path: batched augmentations against the faithful per-image ones (exactly where
an op is deterministic, in distribution where it is random) and the device loaders against the
DataLoader paths (keys, shapes, lengths, sampling, reproducibility), on the CPU."""
import colorsys
import os
import random

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from scipy.stats import chisquare, ks_2samp, kstest
from torch.utils.data import DataLoader

import data.device_loader as device_loader
import data.loaders as data_loaders
from data import batched_augment as B
from data.augment import STRONG_OPS, build_augmentation, build_val_transform
from data.base import ImageDataset
from data.loaders import set_loader_epoch
from data.settings import complete_image_settings
from utils.config import load_config

CPU = torch.device('cpu')
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
EXPERIMENTS = {'pretext': 'pretext/simclr_digits.yml', 'scan': 'scan/scan_digits.yml',
               'selflabel': 'selflabel/selflabel_digits.yml'}
# Unit normalisation: outputs are pixel values in [0, 1].
UNIT = ['augmentation_kwargs.normalize.mean=[0,0,0]', 'augmentation_kwargs.normalize.std=[1,1,1]',
        'transformation_kwargs.normalize.mean=[0,0,0]',
        'transformation_kwargs.normalize.std=[1,1,1]']


def config(kind, size=16, *opts):
    cfg = load_config(os.path.join(CONFIGS, 'env.yml'), os.path.join(CONFIGS, EXPERIMENTS[kind]),
                      [f'transformation_kwargs.crop_size={size}',
                       f'augmentation_kwargs.crop_size={size}', *opts])
    return complete_image_settings(cfg)


def simclr_config(size, *opts):
    """The published CIFAR SimCLR augmentation at `size`."""
    return config('pretext', size, f'augmentation_kwargs.random_resized_crop.size={size}',
                  'augmentation_kwargs.random_resized_crop.scale=[0.2,1.0]',
                  'augmentation_kwargs.horizontal_flip=true',
                  'augmentation_kwargs.color_jitter.saturation=0.4',
                  'augmentation_kwargs.color_jitter.hue=0.1',
                  'augmentation_kwargs.random_grayscale.p=0.2', *opts)


def pattern(size=32, seed=0):
    """A colourful uint8 H x W x 3 image with gradients, edges and some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    image = np.stack([(xx * 8) % 256, (yy * 7 + 40) % 256, (xx + yy) * 4 % 256], -1)
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def batch_of(*images):
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def from_pil(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


# ---------------------------------------------------------------- RandomResizedCrop, flips

def test_resized_crop_params_follow_torchvision():
    torch.manual_seed(0)
    n, scale = 3000, (0.2, 1.0)
    top, left, h, w = B.resized_crop_params(n, 32, 32, scale)
    ratio = list(T.RandomResizedCrop(32).ratio)  # torchvision's default, as the faithful path
    ref = np.array([T.RandomResizedCrop.get_params(torch.zeros(3, 32, 32), list(scale), ratio)
                    for _ in range(n)])
    ours = torch.stack([top, left, h, w], 1).numpy()
    assert ((ours[:, 0] + ours[:, 2] <= 32) & (ours[:, 1] + ours[:, 3] <= 32)).all()
    for name, f in [('area', lambda p: p[:, 2] * p[:, 3]), ('aspect', lambda p: p[:, 3] / p[:, 2]),
                    ('centre x', lambda p: p[:, 1] + p[:, 3] / 2)]:
        assert ks_2samp(f(ours), f(ref)).statistic < 0.05, name


def test_resized_crop_fallback_is_torchvision_central_crop():
    wide = torch.zeros(3, 16, 40)  # no crop of area 1 fits the ratio range: always the fallback
    expected = T.RandomResizedCrop.get_params(wide, [1.0, 1.0], list(T.RandomResizedCrop(8).ratio))
    got = B.resized_crop_params(50, 16, 40, (1.0, 1.0))
    assert all((g == e).all() for g, e in zip(got, expected))


def test_resized_crop_matches_pil_resize():
    image = pattern()
    boxes = torch.tensor([[0, 0, 32, 32], [3, 7, 20, 17], [10, 2, 15, 22], [5, 5, 27, 14]])
    flip = torch.tensor([False, True, False, True])
    out = B.resized_crop(batch_of(*[image] * 4), *boxes.T, 32, flip)
    for k, (top, left, h, w) in enumerate(boxes.tolist()):
        ref = TF.resized_crop(Image.fromarray(image), top, left, h, w, [32, 32], antialias=True)
        ref = from_pil(TF.hflip(ref) if flip[k] else ref).float() / 255
        assert (out[k] - ref).abs().max() <= 1.01 / 255  # PIL rounds to 8 bits


@pytest.mark.parametrize('horizontal_flip', [True, False])
def test_flip_rate(horizontal_flip):
    # scale 1: every crop is the whole image, so each output is the image or its mirror
    cfg = simclr_config(16, 'augmentation_kwargs.random_resized_crop.scale=[1.0,1.0]',
                        'augmentation_kwargs.color_jitter_random_apply.p=0',
                        'augmentation_kwargs.random_grayscale.p=0',
                        f'augmentation_kwargs.horizontal_flip={str(horizontal_flip).lower()}',
                        *UNIT)
    image = batch_of(pattern(16))
    torch.manual_seed(0)
    out = B.build_batched_augmentation(cfg)(image.repeat(400, 1, 1, 1)) * 255
    same = (out - image.float()).abs().amax(dim=(1, 2, 3)) < 1e-3
    mirrored = (out - image.flip(-1).float()).abs().amax(dim=(1, 2, 3)) < 1e-3
    assert (same | mirrored).all()
    expected = 0.5 if horizontal_flip else 0.0
    assert abs(mirrored.float().mean().item() - expected) < 0.08


# ---------------------------------------------------------------- colour

@pytest.mark.parametrize('name', ['brightness', 'contrast', 'saturation', 'hue'])
def test_colour_ops_take_one_factor_per_image(name):
    images = B.to_unit(batch_of(pattern(16, 1), pattern(16, 2), pattern(16, 3)))
    factors = torch.tensor([-0.08, 0.03, 0.1]) if name == 'hue' else torch.tensor([0.6, 1.0, 1.4])
    ours = getattr(B, f'adjust_{name}')(images.clone(), factors)
    ref = getattr(TF, f'adjust_{name}')
    for k, f in enumerate(factors.tolist()):
        assert torch.allclose(ours[k], ref(images[k], f), atol=1e-5)


def jitter_factors(name, value):
    """The factors color_jitter drew for 400 images with only op `name` on, read back from
    images where each op is invertible: two flat colours (a contrast to measure), no clipping."""
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[:, 0], image[:, 1] = (150, 60, 30), (30, 90, 140)
    images = B.to_unit(batch_of(image)).repeat(400, 1, 1, 1)
    kwargs = dict(brightness=0, contrast=0, saturation=0, hue=0)
    torch.manual_seed(0)
    out = B.color_jitter(images.clone(), **{**kwargs, name: value})
    x, y = images[:, :, 0, 0], out[:, :, 0, 0]
    if name == 'brightness':
        return (y / x)[:, 0]
    if name == 'contrast':
        return ((y - out[:, :, 0, 1]) / (x - images[:, :, 0, 1]))[:, 0]
    grey = (x * torch.tensor([0.2989, 0.587, 0.114])).sum(1, keepdim=True)
    if name == 'saturation':
        return ((y - grey) / (x - grey))[:, 0]
    hue = [colorsys.rgb_to_hsv(*p)[0] for p in (x[0].tolist(), *y.tolist())]
    return (torch.tensor(hue[1:]) - hue[0] + 0.5) % 1 - 0.5


@pytest.mark.parametrize('name,value,low,high', [('brightness', 0.4, 0.6, 1.4),
                                                 ('contrast', 0.4, 0.6, 1.4),
                                                 ('saturation', 0.4, 0.6, 1.4),
                                                 ('hue', 0.1, -0.1, 0.1)])
def test_colour_jitter_factors_follow_torchvision(name, value, low, high):
    factors = jitter_factors(name, value).numpy()
    assert low - 1e-4 <= factors.min() and factors.max() <= high + 1e-4
    assert kstest((factors - low) / (high - low), 'uniform').statistic < 0.08


def test_simclr_colour_statistics_match_pil_path():
    cfg = simclr_config(32)
    image = pattern()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    faithful = build_augmentation(cfg)
    ref = torch.stack([faithful(Image.fromarray(image)) for _ in range(300)])
    ours = B.build_batched_augmentation(cfg)(batch_of(image).repeat(300, 1, 1, 1))
    for stat in (lambda x: x.mean(dim=(2, 3)), lambda x: x.std(dim=(2, 3))):
        a, b = stat(ours), stat(ref)  # 300 x 3
        tolerance = 4 * torch.sqrt(a.var(0) / len(a) + b.var(0) / len(b)) + 0.02
        assert ((a.mean(0) - b.mean(0)).abs() < tolerance).all()
        assert ((a.std(0) - b.std(0)).abs() < 0.2 * b.std(0) + 0.02).all()


def test_grayscale_rate():
    cfg = simclr_config(16, 'augmentation_kwargs.color_jitter_random_apply.p=0', *UNIT)
    torch.manual_seed(0)
    out = B.build_batched_augmentation(cfg)(batch_of(pattern(16)).repeat(500, 1, 1, 1))
    grey = (out - out.mean(dim=1, keepdim=True)).abs().amax(dim=(1, 2, 3)) < 1e-6
    assert abs(grey.float().mean().item() - 0.2) < 0.06


# ---------------------------------------------------------------- strong ops ("ours")

PIL_OPS = {name: (op, low, high) for name, op, low, high in STRONG_OPS}


def strong_against_pil(name, fractions):
    """Apply op `name` with magnitudes at `fractions` of its range to three images, batched
    and with the PIL op; returns the absolute pixel differences."""
    op, low, high = PIL_OPS[name]
    images = [pattern(32, 1), pattern(32, 2), np.random.default_rng(3).integers(
        0, 256, (32, 32, 3), dtype=np.uint8)]
    magnitudes = torch.tensor([low + f * (high - low) for f in fractions], dtype=torch.float64)
    ids = torch.full((3,), B.STRONG_NAMES.index(name))
    ours = B.apply_strong_op(batch_of(*images), ids, magnitudes)
    ref = torch.stack([from_pil(op(Image.fromarray(x), float(v)))
                       for x, v in zip(images, magnitudes)])
    return (ours.int() - ref.int()).abs()


@pytest.mark.parametrize('name', ['autocontrast', 'equalize', 'solarize', 'color', 'contrast',
                                  'brightness', 'sharpness', 'posterize'])
def test_strong_pixel_ops_match_pil(name):
    assert strong_against_pil(name, [0.13, 0.52, 0.87]).max() <= 1


@pytest.mark.parametrize('name', ['rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y'])
def test_strong_geometric_ops_match_pil(name):
    # nearest sampling: a pixel mapped exactly between two source pixels may round the other way
    assert (strong_against_pil(name, [0.11, 0.61, 0.93]) > 0).float().mean() < 0.01


def test_strong_op_choices_and_magnitudes():
    torch.manual_seed(0)
    ids, magnitudes = B.draw_strong_ops(7000, 4)
    counts = torch.bincount(ids.flatten(), minlength=len(STRONG_OPS)).numpy()
    assert chisquare(counts).pvalue > 1e-3
    for k, (name, _, low, high) in enumerate(STRONG_OPS):
        v = magnitudes[ids == k]
        assert low <= v.min() and v.max() <= high, name
        assert abs(v.mean().item() - (low + high) / 2) < 0.05 * (high - low), name


def test_cutout_holes_match_faithful():
    # no ops, unit normalisation and an image with no zero: zeros are exactly the hole
    cfg = config('scan', 16, 'augmentation_kwargs.num_strong_augs=0',
                 'augmentation_kwargs.cutout_kwargs.n_holes=1', *UNIT)
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    faithful = build_augmentation(cfg)
    ref = torch.stack([faithful(Image.fromarray(image)) for _ in range(400)])
    ours = B.build_batched_augmentation(cfg)(batch_of(image).repeat(400, 1, 1, 1))
    holes = [(x == 0).all(dim=1).sum(dim=(1, 2)).numpy() for x in (ours, ref)]
    # lengths 1 to 8: hole sides 2 * (length // 2), 0 to 8
    assert holes[0].min() == holes[1].min() == 0 and holes[0].max() == holes[1].max() == 64
    assert ks_2samp(*holes).statistic < 0.1


def test_random_crop_pads_like_torchvision():
    image = batch_of(pattern(12))  # smaller than the crop: padded by 4 on each side, then cropped
    padded = T.Pad(4)(image[0])
    torch.manual_seed(0)
    out = B.random_crop(image.repeat(200, 1, 1, 1), 16)
    offsets = set()
    for crop in out:
        matches = [(i, j) for i in range(5) for j in range(5)
                   if torch.equal(crop, padded[:, i:i + 16, j:j + 16])]
        assert matches
        offsets.update(matches)
    assert len(offsets) == 25


@pytest.mark.parametrize('resize', [None, 20])
def test_val_transform_matches_faithful(resize):
    # center crop 12 of 16 (exact), or resize 24 -> 20 first (torch's antialiased bilinear
    # against PIL's: within a grey level or two)
    cfg = config('selflabel', 12, f'transformation_kwargs.resize={resize or "null"}', *UNIT)
    images = [pattern(24 if resize else 16, 4), pattern(24 if resize else 16, 5)]
    ours = B.build_batched_val_transform(cfg)(batch_of(*images))
    ref = torch.stack([build_val_transform(cfg)(Image.fromarray(x)) for x in images])
    assert ours.shape == ref.shape == (2, 3, 12, 12)
    assert (ours - ref).abs().max() <= (2.01 if resize else 0.01) / 255


# ---------------------------------------------------------------- loaders

class CodedImages(ImageDataset):
    """Image i is uniformly grey with level i: a pixel tells which image it came from."""

    def __init__(self, n=70, size=16):
        super().__init__()
        levels = np.arange(n, dtype=np.uint8)
        self.data = np.repeat(levels, size * size * 3).reshape(n, size, size, 3)
        self.targets = np.arange(n) % 10


def neighbors_of(n, k=5):
    return np.stack([np.arange(n)] + [(np.arange(n) + 7 * c) % n for c in range(1, k + 1)], 1)


def loaders(kind, dataset):
    """(fast loader, faithful DataLoader) of a step for a dataset; SCAN draws from the first
    3 of the 6 mined columns."""
    made = []
    for fast in ('true', 'false'):
        opts = ['num_neighbors=2'] if kind == 'scan' else []
        cfg = config(kind, 16, 'batch_size=16', f'fast_augmentation={fast}', 'num_workers=0',
                     *opts)
        neighbors = neighbors_of(len(dataset)) if kind == 'scan' else None
        made.append(device_loader.make_train_loader(cfg, dataset, kind, CPU, neighbors))
    return made


@pytest.mark.parametrize('kind', ['pretext', 'scan', 'selflabel'])
def test_train_loader_gives_the_dataloader_batches(kind):
    fast, faithful = loaders(kind, CodedImages())
    assert isinstance(fast, device_loader.DeviceLoader) and isinstance(faithful, DataLoader)
    assert len(fast) == len(faithful) == 70 // 16  # last partial batch dropped
    ours, ref = next(iter(fast)), next(iter(faithful))
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key].shape == ref[key].shape and ours[key].dtype == ref[key].dtype, key
    if kind == 'pretext':  # two independent views
        assert not torch.equal(ours['image'], ours['image_augmented'])
    if kind == 'selflabel':  # the weak view is the validation transform
        val = build_val_transform(config('selflabel'))
        weak = [val(Image.fromarray(fast.make_batch.data.images[i].permute(1, 2, 0).numpy()))
                for i in ours['index']]
        assert torch.allclose(ours['image'], torch.stack(weak), atol=1e-6)


def test_eval_loader_in_order_with_val_transform():
    dataset = CodedImages()
    cfg = config('scan', 16, 'batch_size=16', 'fast_augmentation=true')
    loader = device_loader.make_eval_loader(cfg, dataset, CPU)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert torch.equal(torch.cat([b['index'] for b in batches]), torch.arange(70))
    dataset.transform = build_val_transform(cfg)
    assert torch.allclose(batches[4]['image'][-1], dataset[69]['image'], atol=1e-6)


def test_every_index_once_per_epoch():
    fast, _ = loaders('pretext', CodedImages(64))
    index = torch.cat([b['index'] for b in fast])
    assert sorted(index.tolist()) == list(range(64))


def test_scan_neighbors_are_candidates():
    dataset = CodedImages()
    fast, _ = loaders('scan', dataset)
    fast.make_batch.augment = lambda x: x.float()  # identity: pixels name the images
    allowed = neighbors_of(len(dataset))[:, :3]
    columns = []
    for batch in [b for _ in range(5) for b in fast]:
        neighbor = batch['neighbor'][:, 0, 0, 0].long().numpy()
        rows = allowed[batch['index'].numpy()]
        assert np.array_equal(batch['possible_neighbors'].numpy(), rows)
        assert (batch['anchor'][:, 0, 0, 0].long() == batch['index']).all()
        hits = rows == neighbor[:, None]
        assert hits.any(axis=1).all()
        columns += hits.argmax(axis=1).tolist()
    assert chisquare(np.bincount(columns, minlength=3)).pvalue > 1e-3


def test_same_seed_same_batches():
    fast, _ = loaders('selflabel', CodedImages())

    def epoch(seed):
        torch.manual_seed(seed)
        return [b['image_augmented'] for b in fast]
    first, again, other = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_ddp_ranks_share_one_permutation(monkeypatch):
    monkeypatch.setattr(data_loaders, 'is_distributed', lambda: True)
    monkeypatch.setattr(data_loaders, 'get_world_size', lambda: 2)
    shards = {}
    for epoch in (0, 1):
        for rank in (0, 1):
            monkeypatch.setattr(data_loaders, 'get_rank', lambda: rank)
            fast, _ = loaders('pretext', CodedImages(64))
            set_loader_epoch(fast, epoch)
            torch.manual_seed(rank)  # the scripts seed each rank differently
            batches = list(fast)
            assert len(fast) == len(batches) == 4 and len(batches[0]['index']) == 8
            shards[epoch, rank] = torch.cat([b['index'] for b in batches]).tolist()
        assert sorted(shards[epoch, 0] + shards[epoch, 1]) == list(range(64))
    assert shards[0, 0] != shards[1, 0]  # set_epoch reshuffles


def test_falls_back_without_a_data_array():
    dataset = CodedImages()
    dataset.data = None
    dataset.load_image = lambda i: Image.new('RGB', (16, 16), (i, i, i))
    cfg = config('pretext', 16, 'fast_augmentation=true', 'batch_size=16')
    assert isinstance(device_loader.make_train_loader(cfg, dataset, 'pretext', CPU), DataLoader)
    with pytest.raises(ValueError, match='no `data` array'):
        device_loader.DeviceImages(dataset, CPU)


def test_training_step_keeps_its_threads():
    # batches are made on one CPU thread; what the caller runs between them has all of them
    fast, _ = loaders('pretext', CodedImages())
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in fast:
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
