"""NT-Xent (SimCLR) loss; under DDP the negatives come from the global batch."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import all_gather_with_grad, get_rank


class SimCLRLoss(nn.Module):
    def __init__(self, temperature):
        super().__init__()
        self.temperature = temperature

    def forward(self, features):
        """features: b x 2 x d, L2-normalised; the two views of each image are positives.

        Both views act as anchors; each anchor's candidates are the 2B - 1 other views of the
        global batch (B = b x world size), the other view of its own image being the positive.
        """
        b = features.shape[0]
        view1 = all_gather_with_grad(features[:, 0])
        view2 = all_gather_with_grad(features[:, 1])
        big_b = view1.shape[0]
        candidates = torch.cat([view1, view2], dim=0)                   # 2B x d
        anchors = torch.cat([features[:, 0], features[:, 1]], dim=0)    # 2b x d
        logits = anchors @ candidates.T / self.temperature              # 2b x 2B
        local = get_rank() * b + torch.arange(b, device=features.device)
        self_idx = torch.cat([local, local + big_b])
        positive_idx = torch.cat([local + big_b, local])
        rows = torch.arange(2 * b, device=features.device)
        logits = logits.float()
        logits[rows, self_idx] = float('-inf')
        return F.cross_entropy(logits, positive_idx)
