"""An easy generated image dataset: simple shapes at random positions, as a labelled folder.

Position and brightness vary a lot, so k-means on raw pixels mixes the classes up, while a
network trained with crops and translations should tell the shapes apart.
"""
import os

import numpy as np
from PIL import Image

SIZE = 16
SHAPES = ('hbar', 'vbar', 'square', 'cross', 'diagonal')


def draw(shape, rng):
    img = np.zeros((SIZE, SIZE), np.float32)
    s = 7
    y, x = rng.integers(0, SIZE - s + 1, size=2)
    if shape == 'hbar':
        img[y + s // 2 - 1:y + s // 2 + 1, x:x + s] = 1
    elif shape == 'vbar':
        img[y:y + s, x + s // 2 - 1:x + s // 2 + 1] = 1
    elif shape == 'square':
        img[y:y + s, x:x + s] = 1
        img[y + 1:y + s - 1, x + 1:x + s - 1] = 0
    elif shape == 'cross':
        img[y + s // 2, x:x + s] = 1
        img[y:y + s, x + s // 2] = 1
    elif shape == 'diagonal':
        for i in range(s):
            img[y + i, x + i] = 1
    img *= rng.uniform(0.6, 1.0)
    img += rng.uniform(0, 0.15, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_shapes(folder, per_class=60, seed=0, labelled=True):
    """Write per_class PNGs of each shape; returns {relative path: class index}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for c, shape in enumerate(SHAPES):
        sub = os.path.join(folder, shape) if labelled else folder
        os.makedirs(sub, exist_ok=True)
        for i in range(per_class):
            path = os.path.join(sub, f'{shape}_{i:03d}.png')
            Image.fromarray(draw(shape, rng)).save(path)
            truth[os.path.relpath(path, folder)] = c
    return truth


def shape_arrays(per_class=60, seed=0):
    rng = np.random.default_rng(seed)
    images = [draw(s, rng) for s in SHAPES for _ in range(per_class)]
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    return np.stack(images), labels
