"""Top-k nearest neighbours by inner product of L2-normalised features.

faiss does the search: a flat (exact) index, on the GPU when this faiss build has GPU support,
or an IVF index for millions of images. When the features live on a CUDA device and faiss has no
GPU support, an exact blocked matrix product on that device keeps memory bounded.
"""
import math

import faiss
import numpy as np
import torch

from utils.errors import UserError


class DamagedNeighbors(UserError, ValueError):
    pass


def read_neighbors(path):
    """The top-k indices step 1 saved (N x k+1, column 0 the anchor); a truncated or foreign
    file is a message saying how to make it again."""
    why = None
    try:
        indices = np.load(path, allow_pickle=False)
        if indices.ndim != 2 or indices.dtype.kind not in 'iu' or indices.shape[1] < 2:
            why = f"holds {indices.dtype} {indices.shape}, not neighbour indices"
        elif indices.size and (indices.min() < 0 or indices.max() >= len(indices)):
            why = "holds indices of images that do not exist"
    except (OSError, ValueError, EOFError) as error:
        why = f"{type(error).__name__}: {str(error)[:200]}"
    if why:
        raise DamagedNeighbors(f"{path} is damaged ({why}): rerun simclr.py with the same "
                               f"config, which mines the neighbours again")
    return indices


def _faiss_gpu_available():
    return hasattr(faiss, 'StandardGpuResources') and faiss.get_num_gpus() > 0


def _blocked_topk_torch(features, k, block_rows):
    out = []
    for start in range(0, features.shape[0], block_rows):
        sims = features[start:start + block_rows] @ features.T
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out).cpu().numpy()


def build_ivf_index(dim, n, nlist=None, nprobe=16):
    nlist = nlist or max(1, int(4 * math.sqrt(n)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = min(nprobe, nlist)
    return index


def mine_nearest_neighbors(features, k, index_type='exact', nlist=None, nprobe=16,
                           block_rows=4096, backend='auto'):
    """Indices (N x k+1, int64) of each row's k+1 most similar rows, itself normally first.

    `features` (tensor or array) are L2-normalised here, so inner product = cosine similarity.
    backend 'auto' searches exactly with blocked matrix products on the features' device when
    they are on a GPU that faiss cannot use, else with faiss; 'torch' or 'faiss' force one.
    """
    k1 = k + 1
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    features = torch.nn.functional.normalize(features.float(), dim=1)
    n, dim = features.shape
    if k1 > n:
        raise ValueError(f"cannot mine {k} neighbours among {n} images; lower num_neighbors")
    if backend == 'auto':
        backend = 'torch' if features.is_cuda and not _faiss_gpu_available() else 'faiss'
    if index_type == 'exact' and backend == 'torch':
        return _blocked_topk_torch(features, k1, block_rows)
    x = np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32)
    if index_type == 'exact':
        index = faiss.IndexFlatIP(dim)
    elif index_type == 'ivf':
        index = build_ivf_index(dim, n, nlist, nprobe)
        index.train(x)
    else:
        raise ValueError(f"unknown index type '{index_type}', expected 'exact' or 'ivf'")
    if _faiss_gpu_available():
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(x)
    _, indices = index.search(x, k1)
    return indices.astype(np.int64)


def neighbor_accuracy(indices, targets):
    """Share of mined neighbours (column 0, the anchor, excluded) with the anchor's class,
    over anchors with a known label; None when there are no labels."""
    targets = np.asarray(targets)
    labelled = targets >= 0
    if not labelled.any():
        return None
    neighbor_targets = targets[indices[labelled, 1:]]
    return float((neighbor_targets == targets[labelled, None]).mean())


def recall_at_k(approx, exact):
    """Share of the exact neighbours (anchor column excluded) that the approximate search found."""
    hits = [len(set(a[1:]) & set(e[1:])) for a, e in zip(approx, exact)]
    return float(np.sum(hits)) / exact[:, 1:].size


def neighbor_accuracies(features, targets, ks=(1, 5, 20)):
    """{k: neighbor_accuracy of the top-k} for each k the images allow, from one search (the
    original's eval.py on a pretext model: its val memory bank, k = 1, 5, 20)."""
    ks = [k for k in ks if k < len(features)]
    if not ks:
        return {}
    indices = mine_nearest_neighbors(features, max(ks))
    return {k: neighbor_accuracy(indices[:, :k + 1], targets) for k in ks}
