"""Figures: confusion matrix and prototype grid (matplotlib, written as PNG).

Class and cluster names are user text: they are drawn literally (no mathtext for '$' or '\\',
never TeX), with undecodable bytes as visible escapes."""
import io
import os
import warnings

import matplotlib

matplotlib.use('Agg')  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.checkpoint import atomic_write  # noqa: E402
from utils.text import visible_text  # noqa: E402

LITERAL = {'parse_math': False, 'usetex': False}


def _save(fig, path, layout=True, **kwargs):
    """Lay out (unless `layout` is False) and save: to a file path atomically, never through a
    link, or into a binary file object; a name in a script the font lacks is drawn as boxes,
    expected and not worth a warning per glyph."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Glyph .* missing from font')
        warnings.filterwarnings('ignore', message='Tight layout not applied')
        if layout:
            fig.tight_layout()
        buffer = io.BytesIO() if isinstance(path, (str, os.PathLike)) else path
        fig.savefig(buffer, **{'dpi': 120, 'format': 'png', **kwargs})
    plt.close(fig)
    if buffer is not path:
        atomic_write(path, lambda f: f.write(buffer.getvalue()), suffix='.png')


def _literal(names):
    return [visible_text(name) for name in names]


def confusion_matrix_figure(counts, row_names, column_names, path, title):
    """counts[true class, predicted (matched) class], shown row-normalised with the counts."""
    counts = np.asarray(counts)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n_rows, n_cols = counts.shape
    size = max(5.0, 0.45 * max(n_rows, n_cols) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(share, cmap='Blues', vmin=0, vmax=1)
    ax.set_xticks(range(n_cols), labels=_literal(column_names),
                  rotation=90 if n_cols > 10 else 45, ha='right' if n_cols <= 10 else 'center',
                  **LITERAL)
    ax.set_yticks(range(n_rows), labels=_literal(row_names), **LITERAL)
    ax.set_xlabel('predicted (cluster matched to a class)')
    ax.set_ylabel('true class')
    ax.set_title(visible_text(title), **LITERAL)
    if max(n_rows, n_cols) <= 30:
        for i in range(n_rows):
            for j in range(n_cols):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha='center', va='center', fontsize=7,
                            color='white' if share[i, j] > 0.5 else 'black')
    _save(fig, path)


def _mosaic(rows, n_cols):
    """One image of all rows: each picture centred in a square cell of the largest side, on
    white, with a small gap. Returns (mosaic, cell + gap)."""
    pictures = [[_rgb(p) for p in images] for images in rows]
    cell = max([max(p.shape[:2]) for images in pictures for p in images] or [1])
    step = cell + max(1, cell // 16)
    mosaic = np.full((len(rows) * step, n_cols * step, 3), 255, dtype=np.uint8)
    for i, images in enumerate(pictures):
        for j, picture in enumerate(images):
            h, w = picture.shape[:2]
            y, x = i * step + (cell - h) // 2, j * step + (cell - w) // 2
            mosaic[y:y + h, x:x + w] = picture
    return mosaic, step


def _rgb(picture):
    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    return picture[..., :3].astype(np.uint8)


def prototype_grid(rows, titles, path, suptitle=None):
    """rows: per cluster a list of HxWx3 uint8 images (most confident first); titles per row.
    `path`: a file name, or a binary file object (PNG is written). One picture of all cells
    with the titles beside their rows: a few axes-free draws, not one matplotlib axes per cell
    (which made an export's grids most of a re-export's time)."""
    n_rows = len(rows)
    n_cols = max(1, max((len(r) for r in rows), default=1))
    mosaic, step = _mosaic(rows, n_cols)
    fig = plt.figure(figsize=(1.2 * n_cols + 1.5, 1.3 * n_rows + 0.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic)
    ax.set_axis_off()
    for i, title in enumerate(titles):
        ax.text(-step * 0.1, i * step + step / 2, visible_text(title), ha='right', va='center',
                fontsize=8, **LITERAL)
    if suptitle:
        fig.suptitle(visible_text(suptitle), y=1.02, **LITERAL)
    _save(fig, path, layout=False, bbox_inches='tight', pad_inches=0.1)


def one_per_cluster_figure(images, titles, path, suptitle=None):
    """One image per cluster (HxWx3 uint8, or None for an empty cluster) in a square-ish grid."""
    n = max(1, len(images))
    n_cols = int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols + 0.4, 1.8 * n_rows + 0.6),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(images):
            if images[i] is not None:
                ax.imshow(images[i], interpolation='nearest')
            ax.set_title(visible_text(titles[i]), fontsize=7, **LITERAL)
    if suptitle:
        fig.suptitle(visible_text(suptitle), **LITERAL)
    _save(fig, path, format='png')
