"""Clustering metrics: Hungarian-matched accuracy, NMI, ARI, AMI, top-5, per-class precision and
recall."""
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (adjusted_mutual_info_score, adjusted_rand_score,
                             normalized_mutual_info_score)


def confusion_counts(predictions, targets, num_clusters, num_classes):
    """counts[cluster, class]."""
    counts = np.zeros((num_clusters, num_classes), dtype=np.int64)
    np.add.at(counts, (predictions, targets), 1)
    return counts


def hungarian_match(predictions, targets, num_clusters, num_classes):
    """Cluster -> class mapping that maximises the number of agreeing samples.

    Returns a dict; with more clusters than classes, unmatched clusters map to -1.
    """
    counts = confusion_counts(predictions, targets, num_clusters, num_classes)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    mapping = {c: -1 for c in range(num_clusters)}
    mapping.update({int(r): int(c) for r, c in zip(rows, cols)})
    return mapping


def cluster_metrics(predictions, targets, num_classes, probs=None):
    """ACC/NMI/ARI/AMI (and top-5 when `probs` is given) on the samples with a known label.
    Any number of clusters against any number of classes (labels only evaluate): Hungarian
    on the rectangular counts; `mapping` names every cluster, -1 for those left unmatched."""
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    known = targets >= 0
    predictions, targets = predictions[known], targets[known]
    # fewer clusters than classes (a chosen or asked-for K): every class still counts
    num_classes = int(max(num_classes, targets.max() + 1 if len(targets) else 0))
    num_clusters = int(max(num_classes, predictions.max() + 1 if len(predictions) else 0,
                           np.shape(probs)[1] if probs is not None else 0))
    mapping = hungarian_match(predictions, targets, num_clusters, num_classes)
    matched = np.array([mapping[p] for p in predictions])
    result = {
        'acc': float((matched == targets).mean()),
        'nmi': float(normalized_mutual_info_score(targets, predictions)),
        'ari': float(adjusted_rand_score(targets, predictions)),
        'ami': float(adjusted_mutual_info_score(targets, predictions)),
        'mapping': mapping,
        'num_samples': int(len(targets)),
    }
    if probs is not None:
        probs = np.asarray(probs)[known]
        top5 = np.argsort(-probs, axis=1)[:, :5]
        top5_classes = np.vectorize(lambda c: mapping.get(int(c), -1))(top5)
        result['acc_top5'] = float((top5_classes == targets[:, None]).any(axis=1).mean())
    return result


def per_class_precision_recall(matched_predictions, targets, num_classes):
    """Per class: precision and recall of the matched cluster predictions."""
    rows = []
    for c in range(num_classes):
        predicted, actual = matched_predictions == c, targets == c
        tp = int((predicted & actual).sum())
        rows.append({'class': c,
                     'precision': tp / int(predicted.sum()) if predicted.any() else 0.0,
                     'recall': tp / int(actual.sum()) if actual.any() else 0.0,
                     'support': int(actual.sum())})
    return rows


def labelled_metrics(probs, targets, num_classes):
    """Hungarian ACC, NMI, ARI, AMI, top-5 of one head's probabilities; None without labels."""
    targets = np.asarray(targets)
    if not (targets >= 0).any():
        return None
    metrics = cluster_metrics(probs.argmax(axis=1), targets, num_classes, probs=probs)
    return {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami', 'acc_top5')}


def non_empty_clusters(probs):
    return int(len(np.unique(probs.argmax(axis=1))))


def many_to_one_accuracy(predictions, targets, num_clusters, num_classes):
    """Accuracy with each cluster mapped to its majority class, several clusters to one class
    allowed: how more clusters than classes (overclustering) is scored."""
    counts = confusion_counts(predictions, targets, num_clusters, num_classes)
    return float(counts.max(axis=1).sum() / max(int(counts.sum()), 1))
