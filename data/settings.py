"""Image settings left open in a config (folder configs): size, resize, backbone."""
from data import build_dataset
from models import auto_backbone_name
from utils.config import ConfigError


def folder_image_size(median_size):
    """(crop size, resize) for a folder from its median image size: tiny images keep (about)
    their size, larger ones are scaled down to what a CPU-trainable network handles."""
    short = min(median_size)
    if short <= 32:
        size = max(16, short)
        return size, size
    return 32, 36


def complete_image_settings(cfg):
    t, a = cfg.transformation_kwargs, cfg.augmentation_kwargs
    if t.crop_size is None:
        if cfg.train_db_name != 'folder':
            raise ConfigError(f"{cfg.config_files['exp']}: key 'transformation_kwargs.crop_size' "
                              f"is required for dataset '{cfg.train_db_name}'")
        t.crop_size, t.resize = folder_image_size(build_dataset(cfg, 'train').median_size)
        if a.resize is None:
            a.resize = t.resize
    a.crop_size = a.crop_size or t.crop_size
    a.random_resized_crop.size = a.random_resized_crop.size or a.crop_size
    if cfg.backbone == 'auto':
        cfg.backbone = auto_backbone_name(t.crop_size)
    return cfg
