"""SCAN loss: neighbours should agree, and the clusters should all be used."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import all_reduce_sum_with_grad, get_world_size

EPS = 1e-8


def entropy(probs):
    """Entropy of a probability vector (or of each row of a matrix), natural log."""
    probs = probs.clamp_min(EPS)
    return -(probs * probs.log()).sum(dim=-1)


class SCANLoss(nn.Module):
    def __init__(self, entropy_weight=5.0):
        super().__init__()
        self.entropy_weight = entropy_weight

    def forward(self, anchor_logits, neighbor_logits):
        """Returns (total, consistency, entropy); total = consistency - w * entropy.

        consistency: binary cross-entropy of <p(anchor), p(neighbour)> against 1;
        entropy: of the mean anchor prediction over the (global, under DDP) batch.
        """
        anchor_probs = F.softmax(anchor_logits.float(), dim=1)
        neighbor_probs = F.softmax(neighbor_logits.float(), dim=1)
        similarity = (anchor_probs * neighbor_probs).sum(dim=1)
        consistency = F.binary_cross_entropy(similarity.clamp(EPS, 1.0),
                                             torch.ones_like(similarity))
        count = torch.tensor(float(anchor_probs.shape[0]), device=anchor_probs.device)
        mean_probs = all_reduce_sum_with_grad(anchor_probs.sum(dim=0)) / (count * get_world_size())
        entropy_loss = entropy(mean_probs)
        total = consistency - self.entropy_weight * entropy_loss
        return total, consistency, entropy_loss
