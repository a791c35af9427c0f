"""num_classes=auto: the number of clusters chosen from the data before SCAN trains
(docs/choosing-k.md).

The criterion is the eigengap of the kNN graph that step 1 mined (the neighbours SCAN trains on):
a graph of K groups with few edges between them has K eigenvalues of its normalised Laplacian
near 0, then a jump. K is where the jump lambda[K+1] - lambda[K] is largest in the range. It
needs no labels, no features and no training: one sparse eigendecomposition, seconds next to the
minutes of the step. scipy does the algebra; only the graph and the rule are written here.
"""
import json
import os
import time

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import eigsh

from utils.config import ConfigError
from utils.plots import plt  # the Agg backend: files only

DENSE_UP_TO = 1500  # below this many images a dense eigendecomposition is fast and exact


def neighbor_graph(neighbors):
    """Symmetric 0/1 adjacency of the mined neighbours (column 0, the image itself, dropped):
    an edge where either image lists the other."""
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
    if n <= DENSE_UP_TO or count >= n - 1:
        values = np.linalg.eigvalsh(normalised.toarray())[::-1][:count]
    else:
        start = np.random.default_rng(seed).standard_normal(n)  # reproducible choice
        values = eigsh(normalised, k=count, which='LA', v0=start, tol=1e-6,
                       return_eigenvectors=False)
    return np.sort(1 - values)


def eigengap_curve(eigenvalues, k_min, k_max):
    """{K: lambda[K+1] - lambda[K]} (1-based eigenvalues) for K in [k_min, k_max]."""
    return {k: float(eigenvalues[k] - eigenvalues[k - 1]) for k in range(k_min, k_max + 1)}


def check_range(k_range, num_images, where):
    """The largest K tried must not exceed the number of images."""
    if k_range[1] > num_images:
        raise ConfigError(f"{where}: key 'num_classes_range' is {list(k_range)}, but there are "
                          f"only {num_images} images: lower its maximum to {num_images} or less")


def choose_num_classes(neighbors, k_range):
    """(K, {K: eigengap}, seconds) from the mined neighbours (N x (1 + k) indices)."""
    started = time.time()
    k_min, k_max = k_range
    eigenvalues = laplacian_eigenvalues(neighbor_graph(neighbors), min(k_max + 1,
                                                                       len(neighbors)))
    k_max = min(k_max, len(eigenvalues) - 1)
    curve = eigengap_curve(eigenvalues, k_min, k_max)
    return max(curve, key=curve.get), curve, time.time() - started


def write_k_selection(out_dir, chosen, curve, seconds, k_range):
    """k_selection.json (the criterion per K) and k_selection.png in the step's folder."""
    os.makedirs(out_dir, exist_ok=True)
    record = {'num_classes': chosen, 'criterion': 'eigengap of the kNN graph (normalised '
              'Laplacian)', 'num_classes_range': list(k_range), 'seconds': round(seconds, 2),
              'eigengap': {str(k): v for k, v in curve.items()}}
    path = os.path.join(out_dir, 'k_selection.json')
    with open(path, 'w') as f:
        json.dump(record, f, indent=2)
    figure = os.path.join(out_dir, 'k_selection.png')
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(list(curve), list(curve.values()), marker='o', markersize=3)
    ax.axvline(chosen, color='tab:red', linestyle='--', label=f"K = {chosen}")
    ax.set(xlabel='number of clusters K', ylabel='eigengap: lambda[K+1] - lambda[K]',
           title=f"num_classes=auto chose K = {chosen} (the largest eigengap)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    plt.close(fig)
    return path, figure


def resolve_auto_num_classes(cfg, neighbors, write=True):
    """Step 2 with num_classes=auto: K from the first `num_neighbors` mined neighbours (those
    SCAN trains on), said on the console and written beside the step's model; cfg follows it."""
    where = cfg.config_files['exp']
    check_range(cfg.num_classes_range, len(neighbors), where)
    chosen, curve, seconds = choose_num_classes(neighbors[:, :cfg.num_neighbors + 1],
                                                cfg.num_classes_range)
    top = sorted(curve, key=curve.get, reverse=True)[:3]
    print(f"num_classes=auto: K={chosen} chosen in {seconds:.1f}s, the largest eigengap of the "
          f"kNN graph for K in {list(cfg.num_classes_range)} (next: " +
          ', '.join(f"K={k} {curve[k]:.4f}" for k in top[1:]) + f"; K={chosen} {curve[chosen]:.4f})",
          flush=True)
    if write:
        json_path, figure = write_k_selection(cfg.paths.scan_dir, chosen, curve, seconds,
                                              cfg.num_classes_range)
        print(f"criterion per K: {json_path}\nfigure: {figure}", flush=True)
    cfg.num_classes = chosen
    return chosen
