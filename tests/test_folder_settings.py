"""Folder configs: automatic sizes and backbone, the checks made before any training, and the
in-memory working copies of the images."""
import os

import numpy as np
import pytest
import torchvision.transforms as T
import yaml
from PIL import Image

import data.image_folder as image_folder
import simclr
from data.augment import build_augmentation, build_val_transform
from data.image_folder import FolderError, ImageFolderDataset
from data.settings import complete_image_settings, folder_image_size
from tests.folder_images import folder_state, write_pattern_folder
from tests.pipeline_run import folder_outputs, write_env
from utils.config import ConfigError, load_config
from utils.runtime import get_args_parser

CONFIGS = ('configs/pretext/simclr_folder.yml', 'configs/scan/scan_folder.yml',
           'configs/selflabel/selflabel_folder.yml')


def write_images(folder, n, size=(8, 8), mode='L', seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        shape = (size[1], size[0]) + (() if mode == 'L' else (3,))
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
            os.path.join(folder, f'{i:03d}.png'))


def completed(tmp_path, folder, config=CONFIGS[0], opts=()):
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    cfg = load_config(env, config, [f'folder={folder}', *opts])
    return complete_image_settings(cfg)


@pytest.mark.parametrize('median, expected', [
    ((8, 8), (16, 16)), ((28, 28), (28, 28)), ((32, 40), (32, 32)), ((12, 30), (16, 16)),
    ((640, 480), (32, 36)), ((33, 33), (32, 36))])
def test_size_policy(median, expected):
    assert folder_image_size(median) == expected


@pytest.mark.parametrize('config', CONFIGS)
def test_tiny_grey_images(tmp_path, config):
    folder = tmp_path / 'digits'
    write_images(folder, 30)
    cfg = completed(tmp_path, folder, config, ['num_neighbors=5'] if 'selflabel' not in config
                    else [])
    t, a = cfg.transformation_kwargs, cfg.augmentation_kwargs
    assert (t.crop_size, t.resize, a.crop_size, a.resize) == (16, 16, 16, 16)
    assert cfg.backbone == 'small' and a.cutout_kwargs.length == 8
    assert a.cutout_kwargs.n_holes == 0  # no Cutout below 32 px (docs/folder-quality.md)
    assert a.random_resized_crop.size == 16
    assert cfg.batch_size == 30  # lowered to the number of images
    assert cfg.folder == str(folder) and cfg.num_classes == 10
    assert cfg.paths.pretext_dir == os.path.join(folder_outputs(tmp_path / 'outputs', folder),
                                                 'pretext')


def test_photos_are_scaled_down(tmp_path):
    folder = tmp_path / 'photos'
    write_images(folder, 25, size=(120, 90), mode='RGB')
    cfg = completed(tmp_path, folder, opts=['num_neighbors=5'])
    t = cfg.transformation_kwargs
    assert (t.crop_size, t.resize, cfg.backbone) == (32, 36, 'small')
    assert cfg.augmentation_kwargs.cutout_kwargs.length == 16
    assert cfg.augmentation_kwargs.cutout_kwargs.n_holes == 1  # CIFAR's Cutout at 32 px
    assert cfg.criterion_kwargs.symmetric  # the folder configs' SimCLR loss
    dataset = ImageFolderDataset(str(folder), transform=build_val_transform(cfg))
    assert tuple(dataset[0]['image'].shape) == (3, 32, 32)
    augmented = build_augmentation(cfg)(dataset.load_image(0))
    assert tuple(augmented.shape) == (3, 32, 32)


def test_explicit_settings_win(tmp_path):
    folder = tmp_path / 'photos'
    write_images(folder, 25, size=(120, 90), mode='RGB')
    cfg = completed(tmp_path, folder, opts=[
        'num_neighbors=5', 'transformation_kwargs.crop_size=64',
        'transformation_kwargs.resize=72', 'backbone=small', 'batch_size=8'])
    assert (cfg.transformation_kwargs.crop_size, cfg.backbone, cfg.batch_size) == (64, 'small', 8)


@pytest.mark.parametrize('n, opts, message', [
    (4, ['num_classes=5'], "has 4 readable image(s), fewer than num_classes=5"),
    (20, [], "has 20 readable image(s), not more than num_neighbors=20"),
    (5, ["num_neighbors=4"], "not more than num_neighbors_val=5"),
])
def test_too_few_images_stop_before_training(tmp_path, n, opts, message):
    folder = tmp_path / f'few{n}'
    write_images(folder, n)
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    args = get_args_parser('test').parse_args(
        ['--config_env', env, '--config_exp', CONFIGS[0], '--opts', f'folder={folder}',
         'num_classes=3', *opts])
    with pytest.raises(FolderError) as error:
        simclr.main(args)
    assert message in str(error.value) and str(folder) in str(error.value)
    assert not os.path.exists(os.path.join(folder_outputs(tmp_path / 'outputs', folder),
                                           'pretext', 'checkpoint.pth.tar'))


def test_selflabel_has_no_neighbour_check(tmp_path):
    folder = tmp_path / 'small'
    write_images(folder, 12)
    cfg = completed(tmp_path, folder, CONFIGS[2], ['num_classes=3'])
    assert 'num_neighbors' not in cfg and cfg.batch_size == 12


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FolderError, match='does not exist'):
        completed(tmp_path, tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FolderError, match='no readable image'):
        completed(tmp_path, tmp_path / 'empty')
    with pytest.raises(ConfigError, match="key 'folder' must name the image folder"):
        load_config(write_env(str(tmp_path), tmp_path / 'outputs'), CONFIGS[0], [])


def test_outputs_inside_the_image_folder_are_refused(tmp_path):
    folder = tmp_path / 'images'
    write_images(folder, 30)
    env = folder / 'env.yml'  # root_dir 'outputs' relative to it: inside the images
    env.write_text(yaml.safe_dump({'root_dir': 'outputs', 'data_dir': 'datasets'}))
    cfg = load_config(str(env), CONFIGS[0], [f'folder={folder}', 'num_neighbors=5'])
    with pytest.raises(ConfigError, match='inside the image folder'):
        complete_image_settings(cfg)


def test_bad_files_are_listed_before_training(tmp_path, capsys):
    folder = tmp_path / 'mixed'
    write_pattern_folder(str(folder), 10)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
    (folder / 'sub').mkdir()
    (folder / 'sub' / 'notes.md').write_text('hello')
    before = folder_state(folder)
    cfg = completed(tmp_path, folder, opts=['num_neighbors=5', 'num_classes=3'])
    out = capsys.readouterr().out
    assert 'Scanned 32 files' in out and '30 images, 2 skipped' in out
    assert 'broken.jpg' in out and os.path.join('sub', 'notes.md') in out
    assert cfg.backbone == 'small' and folder_state(folder) == before


# ----------------------------------------------------------------------------- working copies

def test_working_copies_equal_resizing_in_the_transform(tmp_path):
    folder = tmp_path / 'mixed sizes'
    write_images(folder, 6, size=(50, 40), mode='RGB')
    write_images(folder / 'more', 3, size=(33, 61), mode='RGB', seed=1)
    plain = ImageFolderDataset(str(folder))
    resized = ImageFolderDataset(str(folder), resize=36)
    assert resized.images is not None and plain.data is None  # sizes differ: a list in memory
    resize = T.Resize(36, interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    for i in range(len(plain)):
        expected = np.asarray(resize(plain.load_image(i)))
        got = resized.load_image(i)
        assert np.array_equal(np.asarray(got), expected)
        assert np.array_equal(np.asarray(resize(got)), expected)  # the transform's is a no-op
    assert min(resized.load_image(0).size) == 36


def test_working_copies_of_one_size_are_one_array(tmp_path):
    folder = tmp_path / 'same'
    write_images(folder, 5, size=(8, 8))
    dataset = ImageFolderDataset(str(folder), resize=16)
    assert dataset.data.shape == (5, 16, 16, 3) and not dataset.data.flags.writeable
    assert dataset.load_image(2).size == (16, 16)


def test_over_the_memory_budget_images_are_read_from_disk(tmp_path, monkeypatch, capsys):
    folder = tmp_path / 'big'
    write_images(folder, 4, size=(40, 40), mode='RGB')
    in_memory = ImageFolderDataset(str(folder), resize=20)
    assert in_memory.data is not None
    monkeypatch.setattr(image_folder, 'WORKING_COPY_BUDGET', 100)
    image_folder.working_copies.cache_clear()
    from_disk = ImageFolderDataset(str(folder), resize=20)
    assert from_disk.data is None and from_disk.images is None  # copies made when first asked
    assert 'over the' in capsys.readouterr().out
    for i in range(4):
        assert np.array_equal(np.asarray(from_disk.load_image(i)),
                              np.asarray(in_memory.load_image(i)))
