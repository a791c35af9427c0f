"""Generated folders of easily separable images for the folder pipeline tests.

Three kinds of 12x12 picture, each with its own colour and pattern (a disc, horizontal stripes,
a checkerboard), with random positions, phases and noise, saved in a mix of file formats and PIL
modes (RGB, grey, RGBA, palette, 16-bit grey), so that loading and converting is exercised too.
"""
import os

import numpy as np
from PIL import Image

KINDS = ('disc', 'stripes', 'checks')
COLOURS = {'disc': (230, 60, 40), 'stripes': (40, 200, 60), 'checks': (50, 80, 230)}
SIZE = 12


def pattern(kind, rng, size=SIZE):
    """A float image in [0, 1], size x size, of one kind."""
    y, x = np.mgrid[:size, :size].astype(np.float64)
    if kind == 'disc':
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        mask = (y - cy) ** 2 + (x - cx) ** 2 <= rng.uniform(2.5, 4.0) ** 2
    elif kind == 'stripes':
        mask = ((y + rng.integers(0, 4)) // 2) % 2 == 0
    else:
        phase = rng.integers(0, 4, 2)
        mask = (((y + phase[0]) // 3) + ((x + phase[1]) // 3)) % 2 == 0
    return np.clip(mask * 0.85 + 0.1 + rng.normal(0, 0.04, mask.shape), 0, 1)


def picture(kind, rng):
    """uint8 RGB array of one kind: the pattern in the kind's colour on a dark background."""
    value = pattern(kind, rng)[..., None]
    colour = np.asarray(COLOURS[kind], dtype=np.float64) / 255
    return (value * colour * 255).round().astype(np.uint8)


def save_in_mode(rgb, path, mode):
    """Save an RGB array as one of several modes/formats (the name's extension is replaced)."""
    base = os.path.splitext(path)[0]
    image = Image.fromarray(rgb)
    if mode == 'jpeg':
        image.save(base + '.jpg', quality=95)
        return base + '.jpg'
    if mode == 'grey':
        image = image.convert('L')
    elif mode == 'rgba':
        image = image.convert('RGBA')
    elif mode == 'palette':
        image = image.convert('P', palette=Image.Palette.ADAPTIVE, colors=64)
    elif mode == 'grey16':
        grey = np.asarray(image.convert('L'), dtype=np.uint16) * 257
        image = Image.frombytes('I;16', image.size, grey.astype('<u2').tobytes())
    image.save(base + '.png')
    return base + '.png'


MODES = ('rgb', 'jpeg', 'rgb', 'grey', 'rgba', 'palette', 'grey16', 'rgb')


def write_pattern_folder(folder, per_kind, seed=0, labelled=False, prefix='img'):
    """Write per_kind pictures of each kind into folder (flat, or one sub-folder per kind);
    returns {absolute path: kind}."""
    rng = np.random.default_rng(seed)
    truth = {}
    order = [kind for kind in KINDS for _ in range(per_kind)]
    rng.shuffle(order)  # file names say nothing of the kind
    for i, kind in enumerate(order):
        where = os.path.join(folder, kind) if labelled else folder
        os.makedirs(where, exist_ok=True)
        path = save_in_mode(picture(kind, rng), os.path.join(where, f"{prefix}_{i:03d}.png"),
                            MODES[i % len(MODES)])
        truth[os.path.abspath(path)] = kind
    return truth


def folder_state(folder):
    """Every file under folder with its size and modification time: to show nothing changed."""
    return sorted((os.path.relpath(os.path.join(root, f), folder),
                   os.stat(os.path.join(root, f)).st_size,
                   os.stat(os.path.join(root, f)).st_mtime_ns)
                  for root, _, files in os.walk(folder) for f in files)
