"""Weighted k-nearest-neighbour classification of features (the pretext monitor)."""
import torch
import torch.nn.functional as F


@torch.no_grad()
def weighted_knn_predict(train_features, train_targets, query_features, num_classes, k=200,
                         temperature=0.1, block_rows=2048):
    """Each query votes with its k most similar training features, weighted by exp(sim / T)."""
    train_features = F.normalize(train_features.float(), dim=1)
    query_features = F.normalize(query_features.float(), dim=1)
    k = min(k, train_features.shape[0])
    predictions = []
    for start in range(0, query_features.shape[0], block_rows):
        sims = query_features[start:start + block_rows] @ train_features.T
        top_sims, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(top_idx.shape[0], num_classes, device=sims.device)
        votes.scatter_add_(1, train_targets[top_idx], (top_sims / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def weighted_knn_accuracy(train_features, train_targets, query_features, query_targets,
                          num_classes, k=200, temperature=0.1):
    labelled = train_targets >= 0
    if not labelled.any() or not (query_targets >= 0).any():
        return None
    pred = weighted_knn_predict(train_features[labelled], train_targets[labelled],
                                query_features, num_classes, k, temperature)
    known = query_targets >= 0
    return float((pred[known] == query_targets[known]).float().mean())
