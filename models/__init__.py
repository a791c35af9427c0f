from models.backbones import BACKBONES, auto_backbone_name, build_backbone
from models.heads import ClusteringModel, ContrastiveModel

__all__ = ['BACKBONES', 'auto_backbone_name', 'build_backbone', 'ClusteringModel',
           'ContrastiveModel']
