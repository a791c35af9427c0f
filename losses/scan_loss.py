"""SCAN loss: neighbours should agree, and the clusters should all be used."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import all_reduce_sum_with_grad, get_world_size

EPS = 1e-8


def entropy(probs):
    """Entropy of a probability vector (or of each row of a matrix), natural log."""
    probs = probs.clamp_min(EPS)
    return -(probs * probs.log()).sum(dim=-1)


def bce_against_one(similarity):
    """torch's binary cross-entropy of similarities against 1; a sum of products of
    probabilities may round to just above 1, which it refuses: clamped there (the gradient
    passes unchanged at and below 1)."""
    return F.binary_cross_entropy(similarity.clamp(max=1.0), torch.ones_like(similarity))


class SCANLoss(nn.Module):
    def __init__(self, entropy_weight=5.0):
        super().__init__()
        self.entropy_weight = entropy_weight

    def forward(self, anchor_logits, neighbor_logits):
        """Returns (total, consistency, entropy); total = consistency - w * entropy.

        consistency: binary cross-entropy of <p(anchor), p(neighbour)> against 1, as torch's
        BCELoss (the original's): the log is clamped at -100, so a pair with similarity 0 costs
        100 and still has a gradient; entropy: of the mean anchor prediction over the (global,
        under DDP) batch, probabilities clamped at 1e-8.
        """
        anchor_probs = F.softmax(anchor_logits.float(), dim=1)
        neighbor_probs = F.softmax(neighbor_logits.float(), dim=1)
        similarity = (anchor_probs * neighbor_probs).sum(dim=1)
        consistency = bce_against_one(similarity)
        count = torch.tensor(float(anchor_probs.shape[0]), device=anchor_probs.device)
        mean_probs = all_reduce_sum_with_grad(anchor_probs.sum(dim=0)) / (count * get_world_size())
        entropy_loss = entropy(mean_probs)
        total = consistency - self.entropy_weight * entropy_loss
        return total, consistency, entropy_loss


@torch.no_grad()
def scan_head_losses(probs_per_head, neighbor_indices):
    """SCAN loss of each head on the validation neighbours, as the published evaluation computes
    it: consistency (torch's BCE, as in training) over every (anchor, mined neighbour) pair, the
    anchor itself included where mining put it among its neighbours, minus the entropy of the
    mean prediction (weight 1). The lowest total picks the head; no labels are involved."""
    neighbor_indices = torch.as_tensor(neighbor_indices, dtype=torch.long)
    anchors = torch.arange(len(neighbor_indices)).view(-1, 1).expand_as(neighbor_indices)
    results = []
    for probs in probs_per_head:
        probs = torch.as_tensor(probs, dtype=torch.float32)
        similarity = (probs[anchors.reshape(-1)] * probs[neighbor_indices.reshape(-1)]).sum(1)
        consistency = bce_against_one(similarity).item()
        ent = entropy(probs.mean(dim=0)).item()
        results.append({'total': consistency - ent, 'consistency': consistency, 'entropy': ent})
    return results


def lowest_loss_head(head_losses):
    totals = [h['total'] for h in head_losses]
    return int(np.argmin(totals)), float(np.min(totals))
