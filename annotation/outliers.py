"""Outlier scores: images that belong to no cluster, from what the pipeline already has.

An image is odd when the model is unsure of its cluster (low confidence) and when it is far from
its nearest neighbours among the exported images (low mean cosine similarity of the features,
mined as step 1 mines neighbours). Each is turned into a rank in [0, 1] (1: the least confident,
the most isolated) so that neither scale dominates, and the score is their mean: 1.0 is the
least confident and most isolated image of the export.
"""
import numpy as np

from annotation.embedding_map import normalized


def neighbor_similarity(features, k):
    """Per image, the mean cosine similarity to its k nearest other images (1.0 when alone)."""
    from utils.mining import mine_nearest_neighbors  # torch and faiss: only when computed

    n = len(features)
    if n < 2:
        return np.ones(n, np.float32)
    k = min(k, n - 1)
    features = normalized(features)
    indices = mine_nearest_neighbors(features, k, backend='faiss')
    similarity = np.einsum('nd,nkd->nk', features, features[indices])
    others = indices != np.arange(n)[:, None]  # itself is normally first, not always (copies)
    similarity = np.where(others, similarity, -np.inf)
    return np.sort(similarity, axis=1)[:, ::-1][:, :k].mean(axis=1)


def outlier_scores(confidences, features, k=10):
    """Per image, in [0, 1]: the mean of its ranks by lack of confidence and by isolation."""
    from scipy.stats import rankdata

    n = len(confidences)
    if n < 2:
        return np.zeros(n, np.float32)
    unsure = (rankdata(-np.asarray(confidences)) - 1) / (n - 1)
    isolated = (rankdata(-neighbor_similarity(features, k)) - 1) / (n - 1)
    return ((unsure + isolated) / 2).astype(np.float32)


def top_outliers(scores, count):
    """The ids of the `count` highest scores, highest first (ties by id)."""
    return np.argsort(-scores, kind='stable')[:count]
