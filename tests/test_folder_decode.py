"""The one-pass folder load: each file is decoded once to check it and make its working copy,
JPEGs at a reduced scale never below twice the target; the check is as strict as without a size."""
import os

import numpy as np
import pytest
import torchvision.transforms as T
from PIL import Image, ImageFile

from data import image_folder
from data.image_folder import ImageFolderDataset, load_rgb, resized_shape
from tests.fake_datasets import write_bad_files
from tests.hostile_files import tree_digest, write_hostile_folder


@pytest.fixture(autouse=True)
def fresh_scans():
    image_folder.forget_scans()
    yield
    image_folder.forget_scans()


def smooth_jpeg(path, size=(2000, 1500), seed=0):
    """A JPEG of large smooth blocks: reduced-scale decoding changes it little."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size[1] // 100, size[0] // 100, 3))
    Image.fromarray(np.kron(blocks, np.ones((100, 100, 1))).astype(np.uint8)).save(path,
                                                                                   quality=95)


def count_decodes(monkeypatch):
    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(image):
        if image.tile:  # not yet decoded (later calls return the decoded pixels)
            decoded.append((os.path.basename(image.filename), image.size))
        return real_load(image)
    monkeypatch.setattr(ImageFile.ImageFile, 'load', load)
    return decoded


def test_each_file_is_decoded_once_at_a_reduced_scale(tmp_path, monkeypatch):
    for i in range(3):
        smooth_jpeg(str(tmp_path / f'{i}.jpg'), seed=i)
    Image.new('RGB', (30, 20), (9, 8, 7)).save(tmp_path / 'small.png')
    decoded = count_decodes(monkeypatch)
    dataset = ImageFolderDataset(str(tmp_path), resize=224)
    names = [name for name, _ in decoded]
    assert sorted(names) == ['0.jpg', '1.jpg', '2.jpg', 'small.png']  # once each, check included
    # 2000 x 1500 -> 298 x 224: draft at 1/2 (1000 x 750), never below 2 x (298 x 224)
    assert {size for name, size in decoded if name.endswith('.jpg')} == {(1000, 750)}
    assert dataset.images is not None and dataset.images[3].shape == (224, 336, 3)
    monkeypatch.undo()
    resize = T.Resize(224, interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    for i in range(3):
        full = np.asarray(resize(load_rgb(dataset.paths[i])), float)
        copy = np.asarray(dataset.load_image(i), float)
        assert copy.shape == full.shape == (224, 298, 3)
        assert np.abs(copy - full).mean() < 2  # reduced-scale decoding is close to the full one


def test_working_copy_shape_is_the_full_sizes_even_when_the_draft_rounds(tmp_path):
    smooth_jpeg(str(tmp_path / 'odd.jpg'), size=(2000, 1500))
    Image.open(tmp_path / 'odd.jpg').crop((0, 0, 1999, 1433)).save(tmp_path / 'odd.jpg')
    dataset = ImageFolderDataset(str(tmp_path), resize=97)
    assert dataset.data.shape[1:3] == resized_shape(1999, 1433, 97)


def test_one_pass_skips_the_same_files_for_the_same_reasons(tmp_path):
    folder = str(tmp_path / 'hostile')
    write_hostile_folder(folder, str(tmp_path / 'outside'))
    write_bad_files(os.path.join(folder, 'bad'))
    before = tree_digest(folder)
    checked = ImageFolderDataset(folder)
    image_folder.forget_scans()
    one_pass = ImageFolderDataset(folder, resize=20)
    assert one_pass.paths == checked.paths and one_pass.skipped == checked.skipped
    assert any('truncated' in reason for _, reason in one_pass.skipped)
    assert len(one_pass.images) == len(one_pass.paths)
    assert tree_digest(folder) == before


def test_over_the_budget_during_the_check_reads_from_disk(tmp_path, monkeypatch, capsys):
    for i in range(4):
        Image.new('RGB', (40, 40), (i, 2 * i, 3 * i)).save(tmp_path / f'{i}.png')
    monkeypatch.setattr(image_folder, 'WORKING_COPY_BUDGET', 2 * 20 * 20 * 3)
    dataset = ImageFolderDataset(str(tmp_path), resize=20)
    assert dataset.data is None and dataset.images is None
    out = capsys.readouterr().out
    assert '4 images' in out and 'over the' in out and 'read from disk' in out
    assert np.asarray(dataset.load_image(3))[0, 0].tolist() == [3, 6, 9]


def test_a_second_size_reuses_the_check(tmp_path, capsys):
    for i in range(3):
        Image.new('RGB', (40, 30), (i, 0, 0)).save(tmp_path / f'{i}.png')
    first = ImageFolderDataset(str(tmp_path))
    second = ImageFolderDataset(str(tmp_path), resize=15)
    assert capsys.readouterr().out.count('Scanned 3 files') == 1
    assert second.paths == first.paths and second.data.shape == (3, 15, 20, 3)


def test_square_copies_are_one_array_equal_to_the_centre_crop(tmp_path):
    for i, size in enumerate([(50, 40), (33, 61), (40, 40)]):
        rgb = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / f'{i}.png')
    plain = ImageFolderDataset(str(tmp_path), resize=20)
    square = ImageFolderDataset(str(tmp_path), resize=20, square=True)
    assert plain.data is None and square.data.shape == (3, 20, 20, 3)
    crop = T.CenterCrop(20)
    for i in range(3):
        assert np.array_equal(np.asarray(square.load_image(i)),
                              np.asarray(crop(plain.load_image(i))))


def test_fast_augmentation_crops_a_folder_square_for_the_fast_path(tmp_path):
    from easydict import EasyDict

    from data import build_dataset
    from data.device_loader import use_fast_path
    for i, size in enumerate([(50, 40), (33, 61)]):
        Image.new('RGB', size, (i, 0, 0)).save(tmp_path / f'{i}.png')
    cfg = EasyDict(train_db_name='folder', val_db_name='folder', folder=str(tmp_path),
                   transformation_kwargs={'resize': 16}, fast_augmentation=True)
    dataset = build_dataset(cfg, 'train')
    assert dataset.data.shape == (2, 16, 16, 3) and use_fast_path(cfg, dataset)


def test_later_processes_reuse_the_check_of_unchanged_files(tmp_path, monkeypatch, capsys):
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i in range(3):
        smooth_jpeg(str(folder / f'{i}.jpg'), size=(400, 300), seed=i)
    write_bad_files(str(folder / 'bad'))
    record = str(tmp_path / 'outputs' / 'folder-check.json')
    first = ImageFolderDataset(str(folder), resize=32, record=record)
    image_folder.write_check_record(first.folder, record)
    expected = first.data.copy()
    image_folder.forget_scans()  # a new process: step 2
    decoded = count_decodes(monkeypatch)
    again = ImageFolderDataset(str(folder), resize=32, record=record)
    assert decoded == [] and 'files unchanged since checked' in capsys.readouterr().out
    assert again.paths == first.paths and again.skipped == first.skipped
    assert again.median_size == first.median_size
    assert np.array_equal(np.asarray(again.load_image(2)), expected[2])  # alone, from its file
    assert len(decoded) == 1
    assert np.array_equal(again.data, expected) and len(decoded) == 4  # all, when asked
    smooth_jpeg(str(folder / '1.jpg'), size=(200, 300), seed=9)  # edited: checked again
    os.utime(folder / '1.jpg', ns=(1, 1))
    image_folder.forget_scans()
    decoded.clear()
    changed = ImageFolderDataset(str(folder), resize=32, record=record)
    assert [name for name, _ in decoded] == ['1.jpg']
    assert changed.data is None and changed.images[1].shape == (48, 32, 3)
