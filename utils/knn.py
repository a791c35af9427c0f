"""Weighted k-nearest-neighbour classification of features (the pretext monitor), as the
original's memory bank does it: K = 100, each neighbour's vote exp(similarity / temperature)."""
import torch
import torch.nn.functional as F

KNN_K = 100  # the original's memory bank


@torch.no_grad()
def weighted_knn_predict(train_features, train_targets, query_features, num_classes=None,
                         k=KNN_K, temperature=0.1, block_rows=2048, exclude_self=False):
    """Each query votes with its k most similar labelled training features, weighted by
    exp(sim / T); unlabelled training rows (target -1) never vote.

    The votes are sized by the labels themselves (num_classes is only a lower bound), so any
    number of clusters works against any number of classes. exclude_self: the queries are the
    training rows in the same order (val is the train split): a query never votes for itself."""
    train_features = F.normalize(train_features.float(), dim=1)
    query_features = F.normalize(query_features.float(), dim=1)
    num_classes = max(num_classes or 0, int(train_targets.max()) + 1)
    unlabelled = train_targets < 0
    targets = train_targets.clamp(min=0)  # a masked row's vote weighs exp(-inf) = 0
    k = min(k, train_features.shape[0])
    predictions = []
    for start in range(0, query_features.shape[0], block_rows):
        sims = query_features[start:start + block_rows] @ train_features.T
        sims[:, unlabelled] = float('-inf')
        if exclude_self:
            rows = torch.arange(sims.shape[0], device=sims.device)
            sims[rows, rows + start] = float('-inf')
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(top_idx.shape[0], num_classes, device=sims.device)
        votes.scatter_add_(1, targets[top_idx], (top_sims / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def weighted_knn_accuracy(train_features, train_targets, query_features, query_targets,
                          num_classes=None, k=KNN_K, temperature=0.1, exclude_self=False):
    """Accuracy on the labelled queries; None without labels."""
    known = query_targets >= 0
    if not (train_targets >= 0).any() or not known.any():
        return None
    pred = weighted_knn_predict(train_features, train_targets, query_features, num_classes, k,
                                temperature, exclude_self=exclude_self)
    return float((pred[known] == query_targets[known]).float().mean())
