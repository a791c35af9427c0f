"""The preprocessing of a pretrained timm backbone: image size, interpolation, mean and std
from the model's own pretrained configuration (timm.data.resolve_data_config), wherever the
experiment config leaves them null.

The validation transform is then timm's eval transform: Resize(floor(crop / crop_pct),
interpolation), CenterCrop(crop), Normalize(mean, std); tests check it against
timm.data.create_transform.
"""
import math

from timm.data import resolve_data_config
from timm.models import get_pretrained_cfg

from utils.config import timm_model_name


def timm_data_config(backbone):
    """timm's data config of `timm/<model name>`: input_size, interpolation, mean, std, crop_pct."""
    pretrained_cfg = get_pretrained_cfg(timm_model_name(backbone))
    return resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})


def apply_timm_data_config(cfg):
    """Fill what the config leaves null (crop_size, resize, interpolation, mean, std, in the
    validation transform and the augmentation) from the backbone's pretrained configuration."""
    data = timm_data_config(cfg.backbone)
    t, a = cfg.transformation_kwargs, cfg.augmentation_kwargs
    if t.crop_size is None:
        t.crop_size = data['input_size'][-1]
    if t.resize is None:  # timm's eval transform: scale_size = floor(img_size / crop_pct)
        t.resize = math.floor(t.crop_size / data['crop_pct'])
    t.interpolation = t.interpolation or data['interpolation']
    for kw in (t, a):
        kw.normalize.mean = kw.normalize.mean or list(data['mean'])
        kw.normalize.std = kw.normalize.std or list(data['std'])
    return cfg
