from models.backbones import BACKBONES, build_backbone
from models.heads import ClusteringModel, ContrastiveModel

__all__ = ['BACKBONES', 'build_backbone', 'ClusteringModel', 'ContrastiveModel']
