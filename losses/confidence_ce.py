"""Self-labeling loss: cross-entropy on confident pseudo-labels, class-balanced."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.distributed import all_reduce_sum, get_world_size


class ConfidenceBasedCE(nn.Module):
    def __init__(self, threshold=0.99, apply_class_balancing=True):
        super().__init__()
        self.threshold = threshold
        self.apply_class_balancing = apply_class_balancing

    def forward(self, weak_logits, strong_logits):
        """Returns (loss, number of confident samples in the global batch).

        Pseudo-labels are the argmax of the weak view where its max probability exceeds the
        threshold. With class balancing each confident sample is weighted by the inverse
        frequency of its pseudo-label among the confident samples, and the loss is the weighted
        mean (as F.cross_entropy with `weight`). When no sample is confident the loss is None
        and the caller skips the batch.
        """
        probs = F.softmax(weak_logits.detach().float(), dim=1)
        max_prob, target = probs.max(dim=1)
        mask = max_prob > self.threshold
        num_classes = weak_logits.shape[1]
        counts = all_reduce_sum(torch.bincount(target[mask], minlength=num_classes).float())
        n_confident = int(counts.sum().item())
        if n_confident == 0:
            return None, 0
        if self.apply_class_balancing:
            class_weight = torch.where(counts > 0, n_confident / counts.clamp_min(1),
                                       torch.zeros_like(counts))
        else:
            class_weight = torch.ones_like(counts)
        sample_weight = class_weight[target[mask]]
        per_sample = F.cross_entropy(strong_logits[mask].float(), target[mask], reduction='none')
        # Normalise by the global weight sum; DDP averages gradients over ranks, hence * world.
        total_weight = all_reduce_sum(sample_weight.sum())
        loss = (sample_weight * per_sample).sum() * get_world_size() / total_weight
        if not mask.any():
            loss = loss + 0.0 * strong_logits.sum()  # keep this rank in the DDP graph
        return loss, n_confident
