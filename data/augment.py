"""Image transforms: `standard`, `simclr`, the strong `ours`, and the validation transform.

Built from torchvision transforms; the RandAugment-style op list of SCAN ("ours": n ops drawn
with replacement, each with a uniformly random magnitude) and Cutout are written here because
torchvision's RandAugment uses one fixed magnitude and RandomErasing draws rectangles by area
inside the image, neither matching the published augmentation.
"""
import math
import random

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image


def _identity(img, v):
    return img


def _shear_x(img, v):
    return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0,
                     shear=[math.degrees(math.atan(v)), 0.0])


def _shear_y(img, v):
    return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0,
                     shear=[0.0, math.degrees(math.atan(v))])


def _translate_x(img, v):
    return TF.affine(img, angle=0.0, translate=[round(v * img.size[0]), 0], scale=1.0, shear=[0.0])


def _translate_y(img, v):
    return TF.affine(img, angle=0.0, translate=[0, round(v * img.size[1])], scale=1.0, shear=[0.0])


# (name, op(img, magnitude), min magnitude, max magnitude), as published.
STRONG_OPS = [
    ('identity', _identity, 0, 1),
    ('autocontrast', lambda img, v: TF.autocontrast(img), 0, 1),
    ('equalize', lambda img, v: TF.equalize(img), 0, 1),
    ('rotate', lambda img, v: TF.rotate(img, v), -30, 30),
    ('solarize', lambda img, v: TF.solarize(img, v), 0, 256),
    ('color', lambda img, v: TF.adjust_saturation(img, v), 0.05, 0.95),
    ('contrast', lambda img, v: TF.adjust_contrast(img, v), 0.05, 0.95),
    ('brightness', lambda img, v: TF.adjust_brightness(img, v), 0.05, 0.95),
    ('sharpness', lambda img, v: TF.adjust_sharpness(img, v), 0.05, 0.95),
    ('shear_x', _shear_x, -0.1, 0.1),
    ('shear_y', _shear_y, -0.1, 0.1),
    ('translate_x', _translate_x, -0.1, 0.1),
    ('translate_y', _translate_y, -0.1, 0.1),
    ('posterize', lambda img, v: TF.posterize(img, int(v)), 4, 8),
]


class RandomStrongOps:
    """Apply `n` ops drawn with replacement from STRONG_OPS, each with a random magnitude."""

    def __init__(self, n):
        self.n = n

    def __call__(self, img):
        for _, op, low, high in random.choices(STRONG_OPS, k=self.n):
            img = op(img, low + (high - low) * random.random())
        return img


class Cutout:
    """Zero `n_holes` squares of side `length` (random in [1, length] if `random`) centred
    anywhere in the image (clipped at the borders), on a normalised C x H x W tensor."""

    def __init__(self, n_holes=1, length=16, random=True):
        self.n_holes, self.length, self.random = n_holes, length, random

    def __call__(self, img):
        h, w = img.shape[1:]
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            length = np.random.randint(1, self.length + 1) if self.random else self.length
            y, x = np.random.randint(h), np.random.randint(w)
            y1, y2 = max(0, y - length // 2), min(h, y + length // 2 + length % 2)
            x1, x2 = max(0, x - length // 2), min(w, x + length // 2 + length % 2)
            mask[y1:y2, x1:x2] = 0
        return img * mask


def _normalize(kw):
    return [T.ToTensor(), T.Normalize(mean=kw.normalize.mean, std=kw.normalize.std)]


def _resize(size, interpolation=None):
    mode = T.InterpolationMode(interpolation or 'bilinear')
    return [T.Resize(size, interpolation=mode, antialias=True)] if size else []


def _flip(kw):
    return [T.RandomHorizontalFlip()] if kw.horizontal_flip else []


def build_augmentation(cfg, strategy=None):
    """The training transform of a step (`augmentation_strategy` unless `strategy` is given)."""
    kw = cfg.augmentation_kwargs
    strategy = strategy or cfg.augmentation_strategy
    crop = kw.crop_size or cfg.transformation_kwargs.crop_size
    if strategy in ('standard', 'simclr'):
        rrc = kw.random_resized_crop
        ops = [T.RandomResizedCrop(rrc.size or crop, scale=tuple(rrc.scale), antialias=True)]
        ops += _flip(kw)
        if strategy == 'simclr':
            cj = kw.color_jitter
            ops += [T.RandomApply([T.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue)],
                                  p=kw.color_jitter_random_apply.p),
                    T.RandomGrayscale(p=kw.random_grayscale.p)]
        return T.Compose(ops + _normalize(kw))
    if strategy == 'ours':
        ops = _resize(kw.resize) + _flip(kw) + [T.RandomCrop(crop, pad_if_needed=True),
                                                RandomStrongOps(kw.num_strong_augs)]
        ck = kw.cutout_kwargs
        return T.Compose(ops + _normalize(kw) + [Cutout(ck.n_holes, ck.length, ck.random)])
    raise ValueError(f"unknown augmentation strategy '{strategy}'")


def build_val_transform(cfg):
    kw = cfg.transformation_kwargs
    return T.Compose(_resize(kw.resize, kw.get('interpolation')) + [T.CenterCrop(kw.crop_size)]
                     + _normalize(kw))


def denormalize(images, cfg):
    """Normalised batch -> images in [0, 1] for figures."""
    kw = cfg.transformation_kwargs.normalize
    mean = torch.tensor(kw.mean).view(1, -1, 1, 1)
    std = torch.tensor(kw.std).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0, 1)


def to_pil(array):
    return Image.fromarray(np.asarray(array))
