"""The original SCAN's cluster prototypes: one image per cluster."""
import numpy as np


def original_prototypes(probs, features, topk=10):
    """{cluster: index of its prototype}: of the cluster's `topk` most confident members, the
    one whose feature is nearest (L2) to their mean, as the original's get_prototypes picks it.
    An empty cluster has none; one with fewer members uses those it has (the original's fills
    the rest with other images)."""
    probs, features = np.asarray(probs), np.asarray(features, dtype=np.float64)
    clusters, confidence = probs.argmax(axis=1), probs.max(axis=1)
    prototypes = {}
    for k in range(probs.shape[1]):
        members = np.flatnonzero(clusters == k)
        if members.size == 0:
            continue
        top = members[np.argsort(-confidence[members], kind='stable')[:topk]]
        selected = features[top]
        distances = np.linalg.norm(selected - selected.mean(axis=0), axis=1)
        prototypes[k] = int(top[np.argmin(distances)])
    return prototypes
