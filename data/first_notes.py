"""What step 1 tells a person before it trains: the image size and backbone it chose (and why,
for `backbone: auto`), whether training from scratch on this folder is likely to give features
that group by colour and texture, and where the full list of skipped files is."""
import os

from data import build_dataset
from utils.checkpoint import atomic_write_text
from utils.config import is_timm_backbone
from utils.distributed import is_main_process
from utils.run_warnings import warn
from utils.text import plural, printable_path, printable_relpath

SMALL_FOLDER = 10_000  # SCAN's benchmarks train step 1 on 50,000 images or more
SKIPPED_LIST = 'skipped-files.txt'
PRETRAINED_HINT = ("a pretrained backbone groups by what images show: bash scripts/run_folder.sh "
                   "FOLDER NUM_CLASSES --pretrained WEIGHTS (docs/first-folder.md)")


def size_text(cfg, median):
    """'images of median size 320x240, resized to 36 px (shorter side) and cropped to 32x32'."""
    t = cfg.transformation_kwargs
    where = 'images' if median is None else f"images of median size {median[0]}x{median[1]}"
    resize = f"resized to {t.resize} px (shorter side) and " if t.resize else ''
    return f"{where}, {resize}cropped to {t.crop_size}x{t.crop_size}"


def report_image_settings(cfg, backbone_was_auto):
    """Notes and warnings of step 1 (rank 0), kept in the pretext folder's warnings.json."""
    if not is_main_process():
        return
    step_dir = cfg.paths.pretext_dir
    dataset = build_dataset(cfg, 'train') if cfg.train_db_name == 'folder' else None
    size = size_text(cfg, dataset.median_size if dataset is not None else None)
    if is_timm_backbone(cfg.backbone):
        warn(step_dir, 'pretext', f"{size}, for the pretrained {cfg.backbone} (its own "
                                  f"preprocessing where the config leaves it null)", kind='note')
    else:
        why = (f" (backbone: auto chooses it for {cfg.transformation_kwargs.crop_size} px crops: "
               f"a small CNN up to 32 px, ResNet-18 above)" if backbone_was_auto else '')
        warn(step_dir, 'pretext', f"{size}; backbone {cfg.backbone}{why}", kind='note')
    if dataset is None:
        return
    write_skipped_list(step_dir, dataset)
    if is_timm_backbone(cfg.backbone) or cfg.pretrained_weights:
        return
    shrunk = min(dataset.median_size) > cfg.transformation_kwargs.crop_size
    reasons = ([f"only {plural(len(dataset), 'image')}"] if len(dataset) < SMALL_FOLDER else []) \
        + ([f"photos shrunk to {cfg.transformation_kwargs.crop_size} px"] if shrunk else [])
    if reasons:
        warn(step_dir, 'pretext', f"training from scratch on {' and '.join(reasons)}: such "
                                  f"features tend to group images by colour and texture rather "
                                  f"than by what they show; {PRETRAINED_HINT}")


def write_skipped_list(step_dir, dataset):
    """Every skipped file with its reason in <pretext>/skipped-files.txt (the scan prints the
    first ones only); its path is said."""
    skipped = getattr(dataset, 'skipped', [])
    path = os.path.join(step_dir, SKIPPED_LIST)
    if not skipped:
        if os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
        return
    lines = [f"{printable_relpath(p, dataset.folder)}: {reason}\n" for p, reason in skipped]
    atomic_write_text(path, ''.join(lines))
    print(f"{plural(len(skipped), 'file')} skipped in {printable_path(dataset.folder)}, all "
          f"listed in {path}", flush=True)
