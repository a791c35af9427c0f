"""NT-Xent (SimCLR) loss; under DDP the negatives come from the global batch."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import all_gather_with_grad, get_rank


class SimCLRLoss(nn.Module):
    """As the original (SupContrast's form), one-sided: the anchors are the first views only;
    `symmetric=True` (opt-in) makes the second views anchors too, as in the SimCLR paper."""

    def __init__(self, temperature, symmetric=False):
        super().__init__()
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, features):
        """features: b x 2 x d, L2-normalised; the two views of each image are positives.

        Each anchor's candidates are the 2B - 1 other views of the global batch (B = b x world
        size), the other view of its own image being the positive; the loss is the mean over
        the anchors of -log softmax(anchor . candidates / temperature) at the positive.
        """
        b = features.shape[0]
        view1 = all_gather_with_grad(features[:, 0])
        view2 = all_gather_with_grad(features[:, 1])
        big_b = view1.shape[0]
        candidates = torch.cat([view1, view2], dim=0)                   # 2B x d
        local = get_rank() * b + torch.arange(b, device=features.device)
        anchors, self_idx, positive_idx = features[:, 0], local, local + big_b
        if self.symmetric:
            anchors = torch.cat([features[:, 0], features[:, 1]], dim=0)
            self_idx, positive_idx = (torch.cat([local, local + big_b]),
                                      torch.cat([local + big_b, local]))
        logits = (anchors @ candidates.T / self.temperature).float()
        logits[torch.arange(len(anchors), device=features.device), self_idx] = float('-inf')
        return F.cross_entropy(logits, positive_idx)
