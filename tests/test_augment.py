"""The faithful augmentations against the original's definitions (reference/SCAN.md): Cutout's
side lengths and hole placement, shear about the top-left corner, unrounded translation, the
sign flips of the geometric ops."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare

import data.augment as augment
from data import batched_augment as B
from data.augment import STRONG_OPS, Cutout, RandomStrongOps

OPS = {name: op for name, op, _, _ in STRONG_OPS}


def hole_sides(cutout, size=64, draws=3200):
    """Side of the hole of each call, its centre held in the middle of the image."""
    sides = []
    image = torch.ones(3, size, size)
    for _ in range(draws):
        zeros = (cutout(image) == 0).all(dim=0)
        sides.append(int(zeros.any(dim=0).sum()))
    return np.array(sides)


@pytest.mark.parametrize('flag', [True, False])
def test_cutout_side_is_drawn_from_1_to_length_whatever_random_says(monkeypatch, flag):
    monkeypatch.setattr(np.random, 'randint', lambda high: high // 2)  # centre in the middle
    random.seed(0)
    sides = hole_sides(Cutout(n_holes=1, length=16, random=flag))
    # length L uniform in 1..16, side 2 * (L // 2): 0 (L=1), 2 (L=2,3), ..., 14 (L=14,15), 16 (L=16)
    values = np.arange(0, 17, 2)
    expected = np.array([1] + [2] * 7 + [1]) / 16 * len(sides)
    counts = np.array([(sides == v).sum() for v in values])
    assert counts.sum() == len(sides)
    assert chisquare(counts, expected).pvalue > 1e-3


def test_cutout_hole_is_c_minus_half_to_c_plus_half(monkeypatch):
    centres = iter([10, 3])  # y, then x
    monkeypatch.setattr(np.random, 'randint', lambda high: next(centres))
    monkeypatch.setattr(random, 'randint', lambda low, high: 5)  # length 5 -> half 2
    out = Cutout(n_holes=1, length=16)(torch.ones(1, 20, 20))
    rows, cols = torch.nonzero(out[0] == 0, as_tuple=True)
    assert sorted(set(rows.tolist())) == [8, 9, 10, 11]   # [10 - 2, 10 + 2)
    assert sorted(set(cols.tolist())) == [1, 2, 3, 4]     # [3 - 2, 3 + 2)


def test_cutout_is_clipped_at_the_border(monkeypatch):
    centres = iter([0, 19])
    monkeypatch.setattr(np.random, 'randint', lambda high: next(centres))
    monkeypatch.setattr(random, 'randint', lambda low, high: 8)
    out = Cutout(n_holes=1, length=16)(torch.ones(1, 20, 20))
    rows, cols = torch.nonzero(out[0] == 0, as_tuple=True)
    assert sorted(set(rows.tolist())) == [0, 1, 2, 3] and sorted(set(cols.tolist())) == [15, 16,
                                                                                           17, 18,
                                                                                           19]


def test_batched_cutout_sides_follow_the_same_law():
    torch.manual_seed(0)
    zeros = (B.cutout(torch.ones(3200, 1, 64, 64), 1, 16) == 0)[:, 0]
    rows, cols = zeros.any(dim=2), zeros.any(dim=1)
    touching = rows[:, 0] | rows[:, -1] | cols[:, 0] | cols[:, -1]
    sides = cols.sum(dim=1).numpy()[~touching.numpy()]
    assert (rows.sum(dim=1) == cols.sum(dim=1))[~touching].all()  # squares
    assert set(np.unique(sides).tolist()) == set(range(0, 17, 2))  # 2 * (length // 2)
    assert (sides == 0).sum() / 3200 == pytest.approx(1 / 16, abs=0.015)  # length 1


def line_image(column=10, size=32):
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:, column] = 255
    return Image.fromarray(pixels)


def line_columns(image):
    pixels = np.asarray(image)[..., 0]
    return [int(np.argmax(row)) if row.max() else None for row in pixels]


def test_shear_x_is_about_the_top_left_corner():
    # PIL's (1, v, 0, 0, 1, 0): output (x, y) takes input (x + v y, y): row 0 stays, row 30
    # moves left by 3 (a centre shear would keep the middle row and move row 0 right)
    columns = line_columns(OPS['shear_x'](line_image(), 0.1))
    assert columns[0] == 10 and columns[30] == 7


def test_shear_y_is_about_the_top_left_corner():
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[10, :] = 255
    out = np.asarray(OPS['shear_y'](Image.fromarray(pixels), 0.1))[..., 0]
    assert int(np.argmax(out[:, 0])) == 10 and int(np.argmax(out[:, 30])) == 7


def test_translate_is_v_times_the_size_unrounded():
    # v * W = 3.2 pixels, not rounded: output x takes input x + 3.2 (centres: x + 0.5 + 3.2)
    assert line_columns(OPS['translate_x'](line_image(), 0.1))[5] == 7
    assert line_columns(OPS['translate_x'](line_image(), -0.1))[5] == 13


def test_geometric_ops_flip_their_sign_half_the_time(monkeypatch):
    seen = {'shear_x': [], 'color': []}

    def recorder(name):
        return lambda img, v: seen[name].append(v) or img
    monkeypatch.setattr(augment, 'STRONG_OPS', [('shear_x', recorder('shear_x'), 0.0, 0.1),
                                                ('color', recorder('color'), 0.05, 0.95)])
    random.seed(0)
    ops = RandomStrongOps(2)
    for _ in range(2000):
        ops(None)
    shear, color = np.array(seen['shear_x']), np.array(seen['color'])
    assert (shear < 0).mean() == pytest.approx(0.5, abs=0.04)
    assert np.abs(shear).max() <= 0.1 and color.min() >= 0.05  # colour ops never flip


def test_batched_geometric_ops_flip_their_sign_half_the_time():
    torch.manual_seed(0)
    ids, magnitudes = B.draw_strong_ops(20000, 1)
    for name in ('rotate', 'shear_x', 'translate_y'):
        v = magnitudes[ids == B.STRONG_NAMES.index(name)]
        assert (v < 0).float().mean().item() == pytest.approx(0.5, abs=0.05), name
    assert (magnitudes[ids == B.STRONG_NAMES.index('solarize')] >= 0).all()
