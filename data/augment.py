"""Image transforms: `standard`, `simclr`, the strong `ours`, and the validation transform.

Built from torchvision transforms; the RandAugment-style op list of SCAN ("ours": n ops drawn
with replacement, each with a uniformly random magnitude) and Cutout are written here because
torchvision's RandAugment uses one fixed magnitude and RandomErasing draws rectangles by area
inside the image, neither matching the published augmentation. The geometric ops are PIL's
affine transforms with the original's matrices: torchvision's shear is about the image centre
and rounds translations, the original's shear is about the top-left corner.
"""
import random

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image


def _identity(img, v):
    return img


def _affine(img, matrix):
    """PIL's affine transform: output pixel (x, y) takes the input at matrix . (x, y, 1)
    (nearest, zero fill), as the original's ops call it."""
    return img.transform(img.size, Image.AFFINE, matrix)


def _shear_x(img, v):
    return _affine(img, (1, v, 0, 0, 1, 0))


def _shear_y(img, v):
    return _affine(img, (1, 0, 0, v, 1, 0))


def _translate_x(img, v):
    return _affine(img, (1, 0, v * img.size[0], 0, 1, 0))


def _translate_y(img, v):
    return _affine(img, (1, 0, 0, 0, 1, v * img.size[1]))


# (name, op(img, magnitude), min magnitude, max magnitude), as published and in the original's
# order (a seed draws the same ops: shear_y comes last, after posterize).
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
    ('translate_x', _translate_x, -0.1, 0.1),
    ('translate_y', _translate_y, -0.1, 0.1),
    ('posterize', lambda img, v: TF.posterize(img, int(v)), 4, 8),
    ('shear_y', _shear_y, -0.1, 0.1),
]


# The original's rotate, shear and translate flip the sign of their magnitude with probability 0.5.
SIGN_FLIPPED = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')


class RandomStrongOps:
    """Apply `n` ops drawn with replacement from STRONG_OPS, each with a random magnitude (its
    sign flipped with probability 0.5 for the SIGN_FLIPPED ops), drawn as the original does."""

    def __init__(self, n):
        self.n = n

    def __call__(self, img):
        for name, op, low, high in random.choices(STRONG_OPS, k=self.n):
            v = low + (high - low) * random.random()
            if name in SIGN_FLIPPED and random.random() > 0.5:
                v = -v
            img = op(img, v)
        return img


class Cutout:
    """The original's Cutout on a normalised C x H x W tensor: one side length drawn from
    1..length per call (`random` is accepted and, as there, not read), then `n_holes` squares
    [c - side//2, c + side//2) around uniform centres, clipped at the borders, set to zero."""

    def __init__(self, n_holes=1, length=16, random=True):
        self.n_holes, self.length, self.random = n_holes, length, random

    def __call__(self, img):
        h, w = img.shape[1:]
        side = random.randint(1, self.length)
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            mask[max(0, y - side // 2):y + side // 2, max(0, x - side // 2):x + side // 2] = 0
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
