"""Batched forward passes over a dataset without gradients: features, predictions."""
import numpy as np
import torch
import torch.nn.functional as F

from utils.device import autocast, to_device
from utils.progress import progress


@torch.no_grad()
def compute_features(forward, loader, device, desc='embed'):
    """Run `forward` (images -> vectors) over a loader; returns (float32 N x D tensor, targets).

    Rows come back in dataset order (the loader must not shuffle)."""
    outputs, targets = [], []
    for batch in progress(loader, desc=desc, leave=False):
        with autocast(device):
            out = forward(to_device(batch['image'], device))
        outputs.append(out.float())
        targets.append(batch['target'])
    return torch.cat(outputs), torch.cat(targets).to(device)


@torch.no_grad()
def predict_clusters(model, loader, device, desc='predict'):
    """Per head: probabilities (N x C); plus backbone features and targets, as numpy arrays."""
    model.eval()
    probs, features, targets = None, [], []
    for batch in progress(loader, desc=desc, leave=False):
        with autocast(device):
            out = model(to_device(batch['image'], device), forward_pass='return_all')
        head_probs = [F.softmax(o.float(), dim=1).cpu() for o in out['output']]
        probs = [[] for _ in head_probs] if probs is None else probs
        for store, p in zip(probs, head_probs):
            store.append(p)
        features.append(out['features'].float().cpu())
        targets.append(batch['target'])
    return {'probs': [torch.cat(p).numpy() for p in probs],
            'features': torch.cat(features).numpy(),
            'targets': torch.cat(targets).numpy().astype(np.int64)}
