"""Image settings left open in a config (folder configs): size, resize, backbone; and the checks
that a folder of images can be trained on at all, made before any training starts."""
import os

from easydict import EasyDict

from data import build_dataset
from data.image_folder import FolderError
from utils.config import ConfigError, check_k_range, dotted_items, is_timm_backbone
from utils.paths import is_inside
from utils.text import plural

MIN_SIZE = 16  # tiny images (8x8 icons, digits) are upsampled to this: crops need room
PHOTO_SIZE, PHOTO_RESIZE = 32, 36  # larger images: CIFAR's size, what two CPU cores can train


def auto_backbone_name(image_size):
    """Pick a backbone for images of a given (crop) size: small, CIFAR-like, or larger.

    'small' up to 32 pixels: a ResNet-18 at 32x32 trains about 15x slower, hours on a CPU for a
    few thousand images; choose it explicitly (backbone: resnet18_cifar) on a GPU."""
    if image_size <= 32:
        return 'small'
    if image_size <= 64:
        return 'resnet18_cifar'
    if image_size <= 128:
        return 'resnet18_stl'
    return 'resnet50'


def folder_image_size(median_size):
    """(crop size, resize) for a folder from its median image size: tiny images keep (about)
    their size, larger ones are scaled down to what a CPU-trainable network handles."""
    short = min(median_size)
    if short <= PHOTO_SIZE:
        size = max(MIN_SIZE, short)
        return size, size
    return PHOTO_SIZE, PHOTO_RESIZE


def fit_cutout_to_crop(cutout, crop_size):
    """Cutout for an automatic crop size: at most half the side (CIFAR's 16 at 32 pixels), and
    none below 32 pixels, where it cost the digits (16x16) 5-9 points of ACC in 3 seeds of 3."""
    if crop_size < PHOTO_SIZE:
        cutout.n_holes = 0
    cutout.length = min(cutout.length, max(1, crop_size // 2))


def check_folder(cfg, dataset):
    """Errors that would otherwise surface mid-run; a batch larger than the folder is lowered."""
    n, where = len(dataset), cfg.config_files['exp']
    outputs = os.path.dirname(cfg.paths.pretext_dir)
    if is_inside(outputs, cfg.folder):
        raise ConfigError(f"outputs would go to {outputs}, inside the image folder {cfg.folder}; "
                          f"nothing is written there: set root_dir in {cfg.config_files['env']} "
                          f"to a folder outside it")
    if cfg.num_classes == 'auto':
        check_k_range(cfg.num_classes_range, n, where)
    elif n < cfg.num_classes:
        raise FolderError(f"{cfg.folder} has {plural(n, 'readable image')}, fewer than num_classes="
                          f"{cfg.num_classes} ({where}): add images or lower it with "
                          f"--opts num_classes=N")
    for key in ('num_neighbors', 'num_neighbors_val'):
        if key in cfg and n <= cfg[key]:
            raise FolderError(f"{cfg.folder} has {plural(n, 'readable image')}, not more than {key}="
                              f"{cfg[key]} ({where}): each image needs that many other images as "
                              f"neighbours; add images or lower it with --opts {key}=N")
    if cfg.batch_size > n:
        print(f"batch_size {cfg.batch_size} is more than the {n} images of {cfg.folder}: "
              f"using batch_size {n}")
        cfg.batch_size = n


def complete_image_settings(cfg):
    t, a = cfg.transformation_kwargs, cfg.augmentation_kwargs
    if is_timm_backbone(cfg.backbone):  # sizes and statistics of the pretrained model
        from data.timm_preprocessing import apply_timm_data_config  # timm only where needed

        apply_timm_data_config(cfg)
    dataset = None
    if cfg.train_db_name == 'folder':
        dataset = build_dataset(cfg, 'train')  # scans (once per process) and reports bad files
        check_folder(cfg, dataset)
    if t.crop_size is None:
        if dataset is None:
            raise ConfigError(f"{cfg.config_files['exp']}: key 'transformation_kwargs.crop_size' "
                              f"is required for dataset '{cfg.train_db_name}'")
        t.crop_size, t.resize = folder_image_size(dataset.median_size)
        fit_cutout_to_crop(a.cutout_kwargs, t.crop_size)
    if dataset is not None and a.resize is None:  # photos of any size: resize before cropping
        a.resize = t.resize
    a.crop_size = a.crop_size or t.crop_size
    a.random_resized_crop.size = a.random_resized_crop.size or a.crop_size
    if cfg.backbone == 'auto':
        cfg.backbone = auto_backbone_name(t.crop_size)
    return cfg


def use_training_transform(cfg, trained, source):
    """Eval preprocesses images as the model's training run did: the transform settings (crop
    size, resize, normalisation) come from `trained`, the config saved in the model file
    `source` (None for the original code's files, which hold none); values that the eval config
    asks for in vain are reported."""
    saved = trained.get('transformation_kwargs') if isinstance(trained, dict) else None
    if not saved:
        return cfg  # a model file without its config: the eval config's settings
    asked, used = dotted_items(cfg.transformation_kwargs), dotted_items(saved)
    ignored = [f"transformation_kwargs.{key}={asked.get(key)!r} (the model's: {used.get(key)!r})"
               for key in sorted(set(asked) | set(used)) if asked.get(key) != used.get(key)]
    if ignored:
        print(f"eval uses the transform the model {source} was trained with; ignored from the "
              f"eval config: " + ', '.join(ignored), flush=True)
    cfg.transformation_kwargs = EasyDict(saved)
    return cfg
