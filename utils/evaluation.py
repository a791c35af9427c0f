"""Evaluation shared by scan.py, selflabel.py and eval.py."""
import numpy as np
import torch
import torch.nn.functional as F

from losses import entropy
from utils.metrics import cluster_metrics


@torch.no_grad()
def scan_head_losses(probs_per_head, neighbor_indices):
    """SCAN loss of each head on the validation neighbours, as the published evaluation computes
    it: consistency over every (anchor, mined neighbour) pair minus the entropy of the mean
    prediction (weight 1). The lowest total picks the head; no labels are involved."""
    neighbor_indices = torch.as_tensor(neighbor_indices, dtype=torch.long)
    anchors = torch.arange(len(neighbor_indices)).view(-1, 1).expand_as(neighbor_indices)
    results = []
    for probs in probs_per_head:
        probs = torch.as_tensor(probs, dtype=torch.float32)
        similarity = (probs[anchors.reshape(-1)] * probs[neighbor_indices.reshape(-1)]).sum(1)
        consistency = F.binary_cross_entropy(similarity.clamp(1e-7, 1.0),
                                             torch.ones_like(similarity)).item()
        ent = entropy(probs.mean(dim=0)).item()
        results.append({'total': consistency - ent, 'consistency': consistency, 'entropy': ent})
    return results


def lowest_loss_head(head_losses):
    totals = [h['total'] for h in head_losses]
    return int(np.argmin(totals)), float(np.min(totals))


def labelled_metrics(probs, targets, num_classes):
    """Hungarian ACC, NMI, ARI, top-5 of one head's probabilities; None without labels."""
    targets = np.asarray(targets)
    if not (targets >= 0).any():
        return None
    metrics = cluster_metrics(probs.argmax(axis=1), targets, num_classes, probs=probs)
    return {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'acc_top5')}


def non_empty_clusters(probs):
    return int(len(np.unique(probs.argmax(axis=1))))
