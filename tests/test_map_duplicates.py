"""The map, near-duplicates and outliers of an export (annotation/overview.py and the modules it
uses), on generated pictures with planted copies under hostile names, and the map view driven
in headless Chromium."""
import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from annotation.duplicates import Duplicates, group_pairs, similar_pairs
from annotation.embedding_map import map_coordinates, unit_square
from annotation.export import ExportRequest, prepare_export
from annotation.images import image_set
from annotation.outliers import outlier_scores
from annotation.overview import OverviewSettings
from data.image_folder import ImageFolderDataset, load_thumbnail
from tests.browser import open_page, start_chromium
from tests.hostile_files import HOSTILE_NAMES
from utils.config import ConfigError, load_config

ORIGINALS = 40
NAMES = [name for name in HOSTILE_NAMES if len(name) < 100][:6]  # bytes, legal on Linux


def random_picture(rng, side=96):
    """A picture of its own: smooth random colour blobs (independent pictures share nothing)."""
    grid = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((side + 32, side), Image.BICUBIC)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """ORIGINALS distinct pictures, then copies of three of them: an exact byte copy, a near
    copy (80%, JPEG 70, cropped by 4%) and a brightened one (+8%, JPEG 80), under hostile names.
    Returns (folder, {copy path: its original's path})."""
    root = str(tmp_path_factory.mktemp('dups'))
    folder = os.path.join(root, 'photos "and" <more>')
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(ORIGINALS):
        path = os.path.join(folder, f'picture_{i:03d}.png')
        random_picture(rng).save(path)
        paths.append(path)
    copies = {}
    exact = os.fsdecode(os.path.join(os.fsencode(folder), NAMES[0]))
    shutil.copyfile(paths[0], exact)
    copies[exact] = paths[0]
    image = Image.open(paths[1]).convert('RGB')
    small = image.resize((round(image.width * 0.8), round(image.height * 0.8)), Image.BICUBIC)
    w, h = small.size
    near = os.fsdecode(os.path.join(os.fsencode(folder), NAMES[1][:-4] + b'.jpg'))
    small.crop((2, 2, round(w * 0.96) + 2, round(h * 0.96) + 2)).save(near, quality=70)
    copies[near] = paths[1]
    bright = os.fsdecode(os.path.join(os.fsencode(folder), NAMES[2][:-4] + b'.jpg'))
    ImageEnhance.Brightness(Image.open(paths[2]).convert('RGB')).enhance(1.08).save(
        bright, quality=80)
    copies[bright] = paths[2]
    return folder, copies


@pytest.fixture(scope='module')
def dataset(folder):
    return ImageFolderDataset(folder[0])


def expected_groups(dataset, copies):
    """The set of frozensets of ids that must be grouped."""
    index = {p: i for i, p in enumerate(dataset.paths)}
    return {frozenset((index[c], index[o])) for c, o in copies.items()}


def test_exact_and_near_copies_are_grouped_and_distinct_pictures_are_not(folder, dataset):
    duplicates = Duplicates.of_images(image_set(dataset, 'photos'), 20)
    found = {frozenset(ids) for ids in duplicates.members()}
    assert found == expected_groups(dataset, folder[1])
    assert duplicates.summary() == {'groups': 3, 'images_in_groups': 6, 'extra_copies': 3,
                                    'images_with_an_exact_copy': 2}
    index = {p: i for i, p in enumerate(dataset.paths)}
    exact = [c for c, o in folder[1].items() if c.endswith('.png')][0]
    assert duplicates.exact[index[exact]] and duplicates.exact.sum() == 2
    # distance 0 keeps only identical codes: the exact copy, not the altered ones
    strict = {frozenset(ids) for ids in Duplicates.of_images(image_set(dataset, 'p'), 0).members()}
    assert strict == {frozenset((index[exact], index[folder[1][exact]]))}


def test_tiny_pictures_are_matched_by_content_only(tmp_path):
    """12 x 12 pictures that differ by a pixel each: no perceptual code tells such pictures
    apart, so only the exact copy is grouped."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    for i in range(6):
        pixels = base.copy()
        pixels[i, i] = 255 - pixels[i, i]
        Image.fromarray(pixels).save(tmp_path / f'tiny_{i}.png')
    shutil.copyfile(tmp_path / 'tiny_0.png', tmp_path / 'tiny_0 copy.png')
    dataset = ImageFolderDataset(str(tmp_path))
    members = Duplicates.of_images(image_set(dataset, 'tiny'), 20).members()
    assert [[os.path.basename(dataset.paths[i]) for i in ids] for ids in members] == \
        [['tiny_0 copy.png', 'tiny_0.png']]


def test_only_files_of_a_shared_size_are_hashed(tmp_path, monkeypatch):
    """An exact copy has the size of its original: a file of a size of its own is never read
    for its SHA-256 (and cannot be in an exact pair)."""
    import annotation.duplicates as duplicates_module
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40 + 8 * i, 3), dtype=np.uint8)).save(
            tmp_path / f'photo_{i}.png')
    shutil.copyfile(tmp_path / 'photo_2.png', tmp_path / 'photo_2 copy.png')
    hashed = []
    digest = duplicates_module.file_digest
    monkeypatch.setattr(duplicates_module, 'file_digest',
                        lambda path: hashed.append(os.path.basename(path)) or digest(path))
    dataset = ImageFolderDataset(str(tmp_path))
    duplicates = Duplicates.of_images(image_set(dataset, 'photos'), 20)
    assert sorted(hashed) == ['photo_2 copy.png', 'photo_2.png']
    assert [[os.path.basename(dataset.paths[i]) for i in ids] for ids in duplicates.members()] \
        == [['photo_2 copy.png', 'photo_2.png']] and duplicates.exact.sum() == 2


def test_pairs_and_groups_from_codes():
    codes = np.zeros((5, 24), np.uint8)
    codes[1, 0] = 0b111  # 3 bits from image 0
    codes[2, 0] = 0b111111  # 6 bits from 0, 3 from 1: joined through 1
    codes[3] = 255  # far from all
    codes[4, 5] = 0b1  # 1 bit from 0
    pairs = similar_pairs(codes, 3)
    assert {tuple(p) for p in pairs.tolist()} == {(0, 1), (1, 2), (0, 4)}
    assert group_pairs(pairs, 5).tolist() == [0, 0, 0, -1, 0]
    assert group_pairs(np.zeros((0, 2), np.int64), 3).tolist() == [-1, -1, -1]


def test_outliers_rank_the_odd_image_first():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    features = np.concatenate([centres[k] + rng.normal(size=(30, 16)) for k in range(3)]
                              + [rng.normal(size=(1, 16)) * 5 + 20])  # alone, far away
    confidences = np.concatenate([rng.uniform(0.8, 1.0, 90), [0.4]])
    scores = outlier_scores(confidences, features, k=5)
    assert scores.shape == (91,) and scores.min() >= 0 and scores.max() <= 1
    assert int(np.argmax(scores)) == 90 and scores[90] > 0.95
    assert outlier_scores(np.array([0.5]), features[:1]).tolist() == [0.0]


@pytest.mark.parametrize('n, method', [(1, 'pca'), (2, 'pca'), (10, 'pca'), (40, 'tsne')])
def test_map_has_a_point_per_image(n, method):
    features = np.random.default_rng(0).normal(size=(n, 8))
    coordinates, used = map_coordinates(features)
    assert used == method and coordinates.shape == (n, 2)
    assert np.isfinite(coordinates).all()
    square = unit_square(coordinates)
    assert square.min() >= 0 and square.max() <= 1


def test_map_keeps_clusters_apart():
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(size=(20, 8)) + 6 * np.eye(8)[k] for k in range(3)])
    coordinates, _ = map_coordinates(features, seed=0)
    centres = np.stack([coordinates[20 * k:20 * k + 20].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(coordinates[20 * k:20 * k + 20] - centres[k], axis=1).mean()
                 for k in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 2 * spread


def test_overview_keys_are_checked(tmp_path):
    env = tmp_path / 'env.yml'
    env.write_text(f'root_dir: {tmp_path}\n')
    for value, message in (('duplicate_distance=200', "overview_kwargs.duplicate_distance"),
                           ('map_method=mds', "overview_kwargs.map_method")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(str(env), 'configs/scan/scan_folder.yml',
                        [f'folder={tmp_path}', f'overview_kwargs.{value}'])
    cfg = load_config(str(env), 'configs/scan/scan_cifar10.yml')
    assert OverviewSettings.of_config(cfg) == OverviewSettings()  # defaults in the schema


# ------------------------------------------------------------------------------ the export

@pytest.fixture(scope='module')
def exported(folder, dataset, tmp_path_factory):
    """The export of the folder with made-up predictions and features (3 clusters)."""
    rng = np.random.default_rng(0)
    n = len(dataset.paths)
    probs = rng.dirichlet(np.ones(3) * 0.5, n)
    features = rng.normal(size=(n, 16)) + 4 * np.eye(16)[probs.argmax(axis=1)]
    out = str(tmp_path_factory.mktemp('export') / 'out')
    prepare_export(ExportRequest(out, image_folders=(folder[0],)), dataset, probs, folder[0],
                   'model.pth', features).write()
    return out


@pytest.mark.parametrize('held', [512 * 2**20, 0])
def test_each_picture_is_decoded_once_for_its_thumbnail_and_its_hash(folder, dataset, tmp_path,
                                                                    monkeypatch, held):
    """The duplicate search keeps the gallery's thumbnail it decoded (up to a memory cap): the
    gallery writes it without a second decode, and the same PNG as a decode of its own."""
    from annotation import gallery, images as images_module
    decoded = []

    def counted(path, side):
        decoded.append((path, side))
        return load_thumbnail(path, side)
    monkeypatch.setattr(images_module, 'load_thumbnail', counted)
    monkeypatch.setattr(images_module, 'KEPT_THUMBNAILS_BYTES', held)
    n = len(dataset.paths)
    probs = np.random.default_rng(0).dirichlet(np.ones(3), n)
    out = tmp_path / 'out'
    prepare_export(ExportRequest(str(out), image_folders=(folder[0],)), dataset, probs,
                   folder[0], 'model.pth').write()
    not_for_grids = [p for p, side in decoded if side != images_module.SHOWN_SIDE]
    assert sorted(not_for_grids) == sorted(dataset.paths * (1 if held else 2))
    assert {side for p, side in decoded if side != images_module.SHOWN_SIDE} == {
        gallery.THUMB_SIZE}
    for index in (0, n - 1):
        written = (out / gallery.thumbnail_path(index)).read_bytes()
        assert written == gallery.thumbnail_png(load_thumbnail(dataset.paths[index],
                                                               gallery.THUMB_SIZE))


def test_export_writes_map_duplicates_and_outliers(exported, folder, dataset):
    with open(os.path.join(exported, 'annotations.csv'), newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(dataset.paths) == ORIGINALS + 3
    assert all(np.isfinite([float(r['x']), float(r['y'])]).all() for r in rows)
    assert len({(r['x'], r['y']) for r in rows}) > ORIGINALS / 2  # not all on one spot
    groups = {}
    for i, row in enumerate(rows):
        if row['duplicate_group']:
            groups.setdefault(row['duplicate_group'], set()).add(i)
    assert {frozenset(g) for g in groups.values()} == expected_groups(dataset, folder[1])
    scores = [float(r['outlier_score']) for r in rows]
    assert min(scores) >= 0 and max(scores) <= 1 and len(set(scores)) > 10
    summary = json.load(open(os.path.join(exported, 'summary.json'), encoding='utf-8'))
    assert summary['duplicates']['groups'] == 3 and summary['duplicates']['extra_copies'] == 3
    assert summary['map']['method'] == 'tsne' and summary['map']['file'] == 'map.png'
    assert len(summary['outliers']['top']) == 20
    with Image.open(os.path.join(exported, 'map.png')) as image:
        assert image.format == 'PNG' and image.width > 300
    text = open(os.path.join(exported, 'gallery-data.js'), encoding='utf-8').read()
    data = json.loads(text[text.index('{'):text.rindex('}') + 1])
    assert len(data['map']['x']) == len(data['map']['y']) == len(rows)
    assert len(data['duplicate_groups']) == 3 and len(data['map']['colors']) == 3
    assert os.path.isfile(os.path.join(exported, 'map.js'))


# ------------------------------------------------------------------------------ the browser

def test_map_view_in_chromium(exported, tmp_path):
    driver = start_chromium(tmp_path, tmp_path / 'downloads')
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        open_page(driver, exported)
        canvas = driver.find_element(By.ID, 'map-canvas')
        assert canvas.size['width'] > 300 and canvas.size['height'] > 200
        painted = driver.execute_script("""
            const m = window.scanMap, f = m.fit(), c = document.getElementById('map-canvas');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return window.SCAN_GALLERY.tails.map((_, i) => {
              const [x, y] = m.toScreen(i, f), at = 4 * (Math.round(y) * c.width + Math.round(x));
              return d[at] + d[at + 1] + d[at + 2] < 3 * 250;
            }).filter(Boolean).length;""")
        assert painted == ORIGINALS + 3  # a painted point where every image is
        # hover a point: its thumbnail; click it: selected for "Move selected to" (the whole
        # canvas in view, clear of the sticky toolbar at the top: selenium's offsets are from
        # the centre of its visible part)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
        x, y = driver.execute_script("""
            const m = window.scanMap, f = m.fit(), [sx, sy] = m.toScreen(5, f);
            const box = document.getElementById('map-canvas').getBoundingClientRect();
            return [sx / m.view.ratio - box.width / 2, sy / m.view.ratio - box.height / 2];""")
        ActionChains(driver).move_to_element_with_offset(canvas, int(x), int(y)).perform()
        tip = driver.find_element(By.ID, 'map-tip')
        assert tip.is_displayed()
        assert tip.find_element(By.TAG_NAME, 'img').get_attribute('src').endswith(
            'thumbs/0000005.png')
        ActionChains(driver).click().perform()
        assert driver.execute_script("return [...window.scanGallery.state.selected]") == [5]
        assert driver.find_element(By.ID, 'selection').text == '1 image selected'
        # zoom with the wheel
        driver.execute_script("""document.getElementById('map-canvas').dispatchEvent(
            new WheelEvent('wheel', {deltaY: -300, clientX: 100, clientY: 100,
                                     bubbles: true, cancelable: true}))""")
        assert driver.execute_script("return window.scanMap.view.scale") > 1.5
        # duplicates: "Select all but one" selects the copies, then they move together
        groups = driver.find_elements(By.CSS_SELECTOR, '#duplicates .dup-group')
        assert len(groups) == 3
        groups[0].find_element(By.TAG_NAME, 'button').click()
        assert driver.find_element(By.ID, 'selection').text == '2 images selected'
        selected = driver.execute_script("return [...window.scanGallery.state.selected]")
        target = int(driver.find_element(By.ID, 'move-target').get_attribute('value'))
        driver.find_element(By.ID, 'move').click()
        assert driver.execute_script(
            "return arguments[0].map(i => window.scanGallery.currentCluster(i))",
            selected) == [target] * 2
        assert driver.find_element(By.ID, 'selection').text.startswith('No image selected')
        outliers = driver.find_elements(By.CSS_SELECTOR, '#outliers figure')
        assert len(outliers) == min(48, ORIGINALS + 3)
    finally:
        driver.quit()
