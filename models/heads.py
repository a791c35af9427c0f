"""The two models built on a backbone: contrastive (step 1) and clustering (steps 2 and 3)."""
import torch.nn as nn
import torch.nn.functional as F


class ContrastiveModel(nn.Module):
    """Backbone + projection head; the output is L2-normalised for the NT-Xent loss."""

    def __init__(self, backbone, head='mlp', features_dim=128):
        super().__init__()
        self.backbone = backbone['backbone']
        dim = backbone['dim']
        if head == 'linear':
            self.contrastive_head = nn.Linear(dim, features_dim)
        elif head == 'mlp':
            self.contrastive_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(),
                                                  nn.Linear(dim, features_dim))
        else:
            raise ValueError(f"unknown head '{head}', expected 'mlp' or 'linear'")

    def forward(self, x):
        return F.normalize(self.contrastive_head(self.backbone(x)), dim=1)


class ClusteringModel(nn.Module):
    """Backbone + `nheads` linear cluster heads; forward returns one logits tensor per head."""

    def __init__(self, backbone, nclusters, nheads=1):
        super().__init__()
        if nheads < 1:
            raise ValueError(f"nheads must be at least 1, got {nheads}")
        self.backbone = backbone['backbone']
        self.backbone_dim = backbone['dim']
        self.nheads = nheads
        self.cluster_head = nn.ModuleList([nn.Linear(self.backbone_dim, nclusters)
                                           for _ in range(nheads)])

    def freeze_backbone(self):
        """Only the cluster heads train (update_cluster_head_only)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def forward(self, x, forward_pass='default'):
        if forward_pass == 'default':
            features = self.backbone(x)
            return [head(features) for head in self.cluster_head]
        if forward_pass == 'backbone':
            return self.backbone(x)
        if forward_pass == 'head':
            return [head(x) for head in self.cluster_head]
        if forward_pass == 'return_all':
            features = self.backbone(x)
            return {'features': features, 'output': [head(features) for head in self.cluster_head]}
        raise ValueError(f"invalid forward pass '{forward_pass}'")


def heads_on_features(model):
    """A ClusteringModel with an identity backbone that shares `model`'s cluster heads: fed with
    cached backbone features it trains the very heads that `model` (backbone included) saves."""
    heads = ClusteringModel({'backbone': nn.Identity(), 'dim': model.backbone_dim},
                            model.cluster_head[0].out_features, model.nheads)
    heads.cluster_head = model.cluster_head
    return heads
