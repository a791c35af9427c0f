"""num_classes=auto: the number of clusters chosen from step 1's features before SCAN trains
(docs/choosing-k.md).

The criterion is a self-consistent eigengap of the kNN graph. A graph of K groups with few edges
between them has K eigenvalues of its normalised Laplacian near 0, then a jump, and K is where
the jump is largest. On contrastive features the answer depends on the graph's neighbourhood
size: with 20 neighbours (what SCAN mines) sub-groups inside a class (two ways of writing a 7)
are loosely linked and the eigengap reads 2-3x too many clusters; with neighbourhoods about a
class wide it reads the classes. So each K in the range is tested with neighbourhoods sized to
K clusters (N / (1.5 K) neighbours): K is consistent when that graph's largest eigengap is at K.
Of the consistent K, the one whose gap stands out most (largest gap / second largest) wins.
It needs no labels and no training: one kNN search and a few dozen sparse eigendecompositions
on at most MAX_IMAGES images, seconds to a minute next to the minutes-to-hours of the step.
scipy and faiss do the algebra and the search; only the graph and the rule are written here.
"""
import io
import json
import os
import time

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import eigsh

from utils.checkpoint import atomic_write, atomic_write_text
from utils.config import check_k_range
from utils.mining import mine_nearest_neighbors
from utils.plots import plt  # the Agg backend: files only

MAX_IMAGES = 4000  # a random sample of a larger dataset keeps the cost flat (classes keep share)
CLASS_WIDTHS = 1.5  # neighbours per image: N / (CLASS_WIDTHS * K), about 2/3 of a class
MIN_NEIGHBORS, MAX_NEIGHBORS = 5, 300


def neighbor_graph(neighbors):
    """Symmetric 0/1 adjacency of mined neighbours (column 0, the image itself, dropped): an
    edge where either image lists the other."""
    n, k = neighbors.shape
    rows = np.repeat(np.arange(n), k - 1)
    adjacency = sparse.csr_matrix((np.ones(rows.size), (rows, neighbors[:, 1:].ravel())),
                                  shape=(n, n))
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    return adjacency


def laplacian_eigenvalues(adjacency, count, seed=0):
    """The `count` smallest eigenvalues of the normalised Laplacian I - D^-1/2 A D^-1/2,
    ascending (the largest of D^-1/2 A D^-1/2, which Lanczos finds fast)."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = sparse.diags(1 / np.sqrt(np.maximum(degree, 1e-12)))
    normalised = scale @ adjacency @ scale
    n = adjacency.shape[0]
    if n <= 300 or count >= n - 1:
        values = np.linalg.eigvalsh(normalised.toarray())[::-1][:count]
    else:
        start = np.random.default_rng(seed).standard_normal(n)  # reproducible choice
        values = eigsh(normalised, k=count, which='LA', v0=start, tol=1e-6,
                       return_eigenvectors=False)
    return np.sort(1 - values)


def largest_eigengap(neighbors, k_min, k_max):
    """(K with the largest gap lambda[K+1] - lambda[K], that gap / the second largest)."""
    eigenvalues = laplacian_eigenvalues(neighbor_graph(neighbors), k_max + 1)
    gaps = eigenvalues[k_min:k_max + 1] - eigenvalues[k_min - 1:k_max]
    order = np.argsort(gaps)[::-1]
    return int(order[0] + k_min), float(gaps[order[0]] / max(gaps[order[1]], 1e-12))


def choose_num_classes(features, k_range, seed=0):
    """(K, {K: (neighbours used, K that graph reads, its gap margin)}, seconds) from features
    (N x D, any scale: normalised here)."""
    started = time.time()
    features = np.asarray(features, dtype=np.float32)
    if len(features) > MAX_IMAGES:
        keep = np.random.default_rng(seed).choice(len(features), MAX_IMAGES, replace=False)
        features = features[np.sort(keep)]
    n = len(features)
    k_min, k_max = k_range[0], min(k_range[1], n - 2)
    most = int(min(MAX_NEIGHBORS, n - 1))
    neighbors = mine_nearest_neighbors(features, most, backend='faiss')
    readings, table = {}, {}
    for k in range(k_min, k_max + 1):
        width = int(np.clip(round(n / (CLASS_WIDTHS * k)), MIN_NEIGHBORS, most))
        if width not in readings:
            readings[width] = largest_eigengap(neighbors[:, :width + 1], k_min, k_max)
        table[k] = (width, *readings[width])
    consistent = [k for k, (_, read, _) in table.items() if read == k]
    if consistent:
        chosen = max(consistent, key=lambda k: table[k][2])
    else:  # no K reads itself: the closest reading
        chosen = min(table, key=lambda k: (abs(table[k][1] - k), -table[k][2]))
    return chosen, table, time.time() - started


def write_k_selection(out_dir, chosen, table, seconds, k_range):
    """k_selection.json (the criterion per K) and k_selection.png in the step's folder."""
    os.makedirs(out_dir, exist_ok=True)
    record = {'num_classes': chosen, 'criterion': 'self-consistent eigengap of the kNN graph '
              '(docs/choosing-k.md)', 'num_classes_range': list(k_range),
              'seconds': round(seconds, 2),
              'per_k': {str(k): {'neighbors': w, 'graph_reads': read, 'gap_margin': round(m, 4),
                                 'consistent': read == k}
                        for k, (w, read, m) in table.items()}}
    path = os.path.join(out_dir, 'k_selection.json')
    atomic_write_text(path, json.dumps(record, indent=2))  # never through a link
    figure = os.path.join(out_dir, 'k_selection.png')
    ks = list(table)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(ks, [table[k][1] for k in ks], marker='o', markersize=3, label='K the graph reads')
    top.plot(ks, ks, color='grey', linestyle=':', label='consistent (reads K)')
    top.set(ylabel='largest eigengap at', title=f"num_classes=auto chose K = {chosen}")
    top.legend()
    consistent = [k for k in ks if table[k][1] == k]
    bottom.bar(consistent, [table[k][2] for k in consistent], color='tab:blue')
    bottom.set(xlabel='K (neighbourhoods sized for K clusters)',
               ylabel='gap / second gap (consistent K)')
    for ax in (top, bottom):
        ax.axvline(chosen, color='tab:red', linestyle='--')
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format='png')
    plt.close(fig)
    atomic_write(figure, lambda f: f.write(buffer.getvalue()), suffix='.png')
    return path, figure


def resolve_auto_num_classes(cfg, features, write=True):
    """Step 2 with num_classes=auto: K from step 1's features of the train images, said on the
    console and written beside the step's model; cfg follows it."""
    check_k_range(cfg.num_classes_range, len(features), cfg.config_files['exp'])
    chosen, table, seconds = choose_num_classes(features, cfg.num_classes_range, cfg.seed)
    consistent = [k for k, (_, read, _) in table.items() if read == k]
    print(f"num_classes=auto: K={chosen} chosen in {seconds:.1f}s from K in "
          f"{list(cfg.num_classes_range)} (self-consistent eigengap; consistent: " +
          ', '.join(f"K={k} margin {table[k][2]:.2f}" for k in consistent) + ')', flush=True)
    if write:
        json_path, figure = write_k_selection(cfg.paths.scan_dir, chosen, table, seconds,
                                              cfg.num_classes_range)
        print(f"criterion per K: {json_path}\nfigure: {figure}", flush=True)
    cfg.num_classes = chosen
    return chosen
