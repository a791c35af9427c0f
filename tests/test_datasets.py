"""Datasets read from generated files in their real on-disk formats (no network: downloads are
served from a local http.server)."""
import functools
import http.server
import os
import shutil
import socket
import threading

import numpy as np
import pytest
from PIL import Image
from torchvision import datasets

from data.cifar import CIFAR10, CIFAR20
from data.download import ChecksumError, DatasetUnavailable
from data.image_folder import FolderError, ImageFolderDataset, scan_folder
from data.imagenet import ImageNetSubset, read_class_list
from data.stl import STL10
from tests.fake_datasets import (mode_images, patch_checksums, write_bad_files, write_cifar10,
                                 write_cifar100, write_imagenet, write_jpeg, write_stl10)


# ---------------------------------------------------------------- generated benchmark files

@pytest.fixture(scope='module')
def cifar10_files(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp('cifar10'))


@pytest.fixture(scope='module')
def cifar100_files(tmp_path_factory):
    return write_cifar100(tmp_path_factory.mktemp('cifar100'))


@pytest.fixture(scope='module')
def stl10_files(tmp_path_factory):
    return write_stl10(tmp_path_factory.mktemp('stl10'))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(monkeypatch):
    """serve(folder) -> base URL of a local HTTP server for that folder."""
    for var in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY',
                'ALL_PROXY'):
        monkeypatch.delenv(var, raising=False)
    servers = []

    def start(folder):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f'http://127.0.0.1:{server.server_port}'
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{s.getsockname()[1]}'


# ---------------------------------------------------------------- CIFAR

def test_cifar10_values(monkeypatch, cifar10_files):
    written = cifar10_files
    patch_checksums(monkeypatch, datasets.CIFAR10, written, url=closed_port_url())
    train = CIFAR10(written.folder, train=True)
    test = CIFAR10(written.folder, train=False)
    assert len(train) == 100 and len(test) == 20
    assert train.data.shape == (100, 32, 32, 3) and train.data.dtype == np.uint8
    assert train.data.flags['C_CONTIGUOUS']
    assert train.targets.dtype == np.int64
    np.testing.assert_array_equal(train.data, written.images['train'])
    np.testing.assert_array_equal(train.targets, written.labels['train'])
    np.testing.assert_array_equal(test.data, written.images['test'])
    assert train.classes == written.classes
    # one pixel at a known (row, column, channel) catches transposition bugs
    image, row, col, channel = 37, 3, 29, 2
    value = written.images['train'][image, row, col, channel]
    assert train.data[image, row, col, channel] == value
    sample = train[image]
    assert sample['image'].size == (32, 32) and sample['image'].mode == 'RGB'
    assert sample['image'].getpixel((col, row))[channel] == value
    assert sample['target'] == written.labels['train'][image] and sample['index'] == image


def test_cifar20_coarse_labels(monkeypatch, cifar100_files):
    written = cifar100_files
    patch_checksums(monkeypatch, datasets.CIFAR100, written)
    train, test = CIFAR20(written.folder, train=True), CIFAR20(written.folder, train=False)
    assert len(train) == 40 and len(test) == 20
    assert train.classes == written.classes and len(train.classes) == 20
    np.testing.assert_array_equal(train.targets, written.labels['train'])
    np.testing.assert_array_equal(test.targets, written.labels['test'])
    assert train.targets.dtype == np.int64 and train.targets.max() < 20
    assert np.any(train.targets != written.extra['fine']['train'])  # not the fine labels
    np.testing.assert_array_equal(train.data, written.images['train'])
    assert train[5]['image'].getpixel((7, 1)) == tuple(written.images['train'][5, 1, 7])


def test_download_extract_and_load(monkeypatch, tmp_path, serve, cifar10_files):
    written = cifar10_files
    patch_checksums(monkeypatch, datasets.CIFAR10, written, url=serve(written.folder))
    root = tmp_path / 'empty'
    dataset = CIFAR10(str(root), train=False)
    assert (root / 'cifar-10-python.tar.gz').is_file()
    assert (root / 'cifar-10-batches-py' / 'test_batch').is_file()
    np.testing.assert_array_equal(dataset.data, written.images['test'])
    np.testing.assert_array_equal(dataset.targets, written.labels['test'])


def test_stl10_download(monkeypatch, tmp_path, serve, stl10_files):
    patch_checksums(monkeypatch, datasets.STL10, stl10_files, url=serve(stl10_files.folder))
    dataset = STL10(str(tmp_path / 'stl'), split='test')
    np.testing.assert_array_equal(dataset.data, stl10_files.images['test'])


def test_downloaded_archive_checksum_mismatch(monkeypatch, tmp_path, serve, cifar10_files):
    written = cifar10_files
    patch_checksums(monkeypatch, datasets.CIFAR10, written, url=serve(written.folder))
    monkeypatch.setattr(datasets.CIFAR10, 'tgz_md5', '0' * 32)
    root = tmp_path / 'empty'
    with pytest.raises(ChecksumError) as error:
        CIFAR10(str(root))
    message = str(error.value)
    assert str(root / 'cifar-10-python.tar.gz') in message
    assert '0' * 32 in message and written.archive_md5 in message


def test_extracted_file_checksum_mismatch(monkeypatch, tmp_path, serve, cifar10_files):
    written = cifar10_files
    patch_checksums(monkeypatch, datasets.CIFAR10, written, url=serve(written.folder))
    train_list = [list(entry) for entry in datasets.CIFAR10.train_list]
    train_list[2][1] = 'f' * 32
    monkeypatch.setattr(datasets.CIFAR10, 'train_list', train_list)
    with pytest.raises(ChecksumError) as error:
        CIFAR10(str(tmp_path / 'empty'))
    message = str(error.value)
    assert os.path.join('cifar-10-batches-py', 'data_batch_3') in message
    assert 'f' * 32 in message and written.md5['data_batch_3'] in message


def test_offline_error_says_what_to_do(monkeypatch, tmp_path, cifar10_files):
    url = closed_port_url()
    patch_checksums(monkeypatch, datasets.CIFAR10, cifar10_files, url=url)
    root = tmp_path / 'empty'
    with pytest.raises(DatasetUnavailable) as error:
        CIFAR10(str(root))
    message = str(error.value)
    for part in ('CIFAR-10', str(root), 'cifar-10-python.tar.gz', cifar10_files.archive_md5,
                 f'{url}/cifar-10-python.tar.gz', 'then rerun'):
        assert part in message
    assert 'refused' in message.lower()  # the underlying reason


def test_offline_notes_a_corrupt_local_archive(monkeypatch, tmp_path, cifar10_files):
    patch_checksums(monkeypatch, datasets.CIFAR10, cifar10_files, url=closed_port_url())
    root = tmp_path / 'partial'
    root.mkdir()
    archive = root / 'cifar-10-python.tar.gz'
    archive.write_bytes(open(cifar10_files.archive, 'rb').read()[:1000])
    with pytest.raises(DatasetUnavailable, match='incomplete or corrupt'):
        CIFAR10(str(root))


def test_archive_put_in_place_by_hand_loads_offline(monkeypatch, tmp_path, cifar10_files):
    patch_checksums(monkeypatch, datasets.CIFAR10, cifar10_files, url=closed_port_url())
    root = tmp_path / 'manual'
    root.mkdir()
    shutil.copy(cifar10_files.archive, root)
    assert len(CIFAR10(str(root))) == 100


def test_download_disabled(monkeypatch, tmp_path, cifar10_files):
    patch_checksums(monkeypatch, datasets.CIFAR10, cifar10_files)
    with pytest.raises(DatasetUnavailable, match='download=False'):
        CIFAR10(str(tmp_path), download=False)


# ---------------------------------------------------------------- STL-10

def test_stl10_splits(monkeypatch, stl10_files):
    written = stl10_files
    patch_checksums(monkeypatch, datasets.STL10, written)
    train = STL10(written.folder, split='train')
    assert train.data.shape == (10, 96, 96, 3) and train.data.dtype == np.uint8
    assert train.data.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(train.data, written.images['train'])
    np.testing.assert_array_equal(train.targets, written.labels['train'])  # 1..10 on disk
    assert train.targets.dtype == np.int64 and train.classes == written.classes
    image, row, col, channel = 4, 5, 90, 1
    value = written.images['train'][image, row, col, channel]
    assert train.data[image, row, col, channel] == value
    assert train[image]['image'].getpixel((col, row))[channel] == value

    test = STL10(written.folder, split='test')
    np.testing.assert_array_equal(test.data, written.images['test'])
    np.testing.assert_array_equal(test.targets, written.labels['test'])

    unlabeled = STL10(written.folder, split='unlabeled')
    np.testing.assert_array_equal(unlabeled.data, written.images['unlabeled'])
    assert list(unlabeled.targets) == [-1] * 4 and not unlabeled.has_labels

    both = STL10(written.folder, split='train+unlabeled')
    assert len(both) == 14
    np.testing.assert_array_equal(both.data[10:], written.images['unlabeled'])
    assert list(both.targets) == list(written.labels['train']) + [-1] * 4
    with pytest.raises(ValueError, match='splits'):
        STL10(written.folder, split='val')


# ---------------------------------------------------------------- ImageNet

def test_subset_lists_keep_names_with_spaces():
    wnids, names = read_class_list('imagenet_100')
    assert len(wnids) == len(names) == 100 and len(set(wnids)) == 100
    assert names[0] == 'robin, American robin, Turdus migratorius'
    assert len(read_class_list('imagenet_200')[0]) == 200


def test_imagenet_50(tmp_path):
    wnids, names = read_class_list('imagenet_50')
    write_imagenet(tmp_path, wnids)
    write_imagenet(tmp_path, ['n99999999'])  # a class outside the list is ignored
    dataset = ImageNetSubset(str(tmp_path), 'imagenet_50', split='train')
    assert len(dataset) == 50 and dataset.classes == names and dataset.classes[0] == 'Dipper'
    assert dataset.targets.dtype == np.int64
    for path, target in zip(dataset.paths, dataset.targets):
        assert os.path.basename(os.path.dirname(path)) == wnids[target]  # list order
    sample = dataset[3]
    # resized to 256 (shorter side) inside the dataset, before any transform, as the original
    assert sample['image'].mode == 'RGB' and sample['image'].size == (256, 256)
    assert sample['path'] == dataset.paths[3]


def test_imagenet_resizes_the_shorter_side_to_256_before_the_transform(tmp_path):
    os.makedirs(tmp_path / 'val' / 'n01')
    Image.new('RGB', (300, 150), (10, 20, 30)).save(tmp_path / 'val' / 'n01' / 'a.JPEG')
    seen = []
    dataset = ImageNetSubset(str(tmp_path), 'imagenet', split='val',
                             transform=lambda image: seen.append(image.size) or image)
    dataset[0]
    assert seen == [(512, 256)]


def test_imagenet_missing_class_folders(tmp_path):
    wnids, _ = read_class_list('imagenet_50')
    write_imagenet(tmp_path, wnids[7:])
    with pytest.raises(DatasetUnavailable) as error:
        ImageNetSubset(str(tmp_path), 'imagenet_50')
    message = str(error.value)
    assert '7 of the 50' in message and wnids[0] in message and wnids[6] not in message


def test_imagenet_missing_root(tmp_path):
    root = tmp_path / 'nowhere'
    with pytest.raises(DatasetUnavailable) as error:
        ImageNetSubset(str(root), 'imagenet_100', split='val')
    message = str(error.value)
    assert str(root / 'val') in message and 'cannot be downloaded' in message
    assert os.path.join('train', 'n01440764') in message  # the layout to build


def test_imagenet_all_classes(tmp_path):
    write_imagenet(tmp_path, ['n02', 'n01', 'n03'], split='val', per_class=2)
    dataset = ImageNetSubset(str(tmp_path), 'imagenet', split='val')
    assert dataset.classes == ['n01', 'n02', 'n03']
    assert list(dataset.targets) == [0, 0, 1, 1, 2, 2]


# ---------------------------------------------------------------- a user's image folder

def folder_state(folder):
    return sorted((os.path.relpath(os.path.join(root, f), folder),
                   os.stat(os.path.join(root, f)).st_size,
                   os.stat(os.path.join(root, f)).st_mtime_ns)
                  for root, _, files in os.walk(folder) for f in files)


def test_flat_folder(tmp_path):
    for i, size in enumerate([8, 10, 30]):
        write_jpeg(str(tmp_path / f'img{i}.jpg'), size=size)
    dataset = ImageFolderDataset(str(tmp_path))
    assert len(dataset) == 3 and not dataset.is_labelled and dataset.classes is None
    assert list(dataset.targets) == [-1] * 3 and dataset.targets.dtype == np.int64
    assert dataset.paths == sorted(dataset.paths) and all(os.path.isabs(p) for p in dataset.paths)
    assert dataset.median_size == (10, 10) and dataset.data is None and dataset.skipped == []
    assert dataset[1]['path'] == dataset.paths[1] and dataset[1]['image'].size == (10, 10)


def test_nested_unlabeled_folder(tmp_path):
    write_jpeg(str(tmp_path / 'top.jpg'))  # an image at the top: not a class tree
    write_jpeg(str(tmp_path / 'a' / 'x.jpg'))
    write_jpeg(str(tmp_path / 'b' / 'deep' / 'y.jpg'))
    dataset = ImageFolderDataset(str(tmp_path))
    assert len(dataset) == 3 and not dataset.is_labelled
    only_one = tmp_path / 'one'
    write_jpeg(str(only_one / 'a' / 'x.jpg'))
    write_jpeg(str(only_one / 'a' / 'y.jpg'))
    assert not ImageFolderDataset(str(only_one)).is_labelled  # one sub-folder is not classes


def test_labelled_tree(tmp_path):
    write_jpeg(str(tmp_path / 'dog' / 'd1.jpg'))
    write_jpeg(str(tmp_path / 'cat' / 'c1.jpg'))
    write_jpeg(str(tmp_path / 'cat' / 'deeper' / 'c2.jpg'))
    write_jpeg(str(tmp_path / '.thumbnails' / 't.jpg'))  # hidden: ignored
    write_jpeg(str(tmp_path / 'cat' / '.hidden.jpg'))
    (tmp_path / 'README.txt').write_text('not an image, does not make the tree unlabeled')
    dataset = ImageFolderDataset(str(tmp_path))
    assert dataset.is_labelled and dataset.classes == ['cat', 'dog']
    names = [os.path.relpath(p, tmp_path) for p in dataset.paths]
    assert names == [os.path.join('cat', 'c1.jpg'), os.path.join('cat', 'deeper', 'c2.jpg'),
                     os.path.join('dog', 'd1.jpg')]
    assert list(dataset.targets) == [0, 0, 1] and dataset.has_labels
    assert [os.path.basename(p) for p, _ in dataset.skipped] == ['README.txt']


def test_bad_files_are_skipped_and_reported(tmp_path, capsys):
    for i in range(3):
        write_jpeg(str(tmp_path / f'good{i}.jpg'))
    hints = write_bad_files(str(tmp_path))
    before = folder_state(tmp_path)
    dataset = ImageFolderDataset(str(tmp_path))
    for i in range(len(dataset)):
        dataset[i]
    assert folder_state(tmp_path) == before  # nothing written, moved or deleted
    assert [os.path.basename(p) for p in dataset.paths] == ['good0.jpg', 'good1.jpg', 'good2.jpg']
    skipped = {os.path.basename(path): reason for path, reason in dataset.skipped}
    assert sorted(skipped) == sorted(hints)
    for name, hint in hints.items():
        assert hint in skipped[name], (name, skipped[name])
    out = capsys.readouterr().out
    assert f'Scanned 7 files in {tmp_path}: 3 images, 4 skipped:' in out
    assert all(name in out for name in hints)


def test_long_skip_list_is_cut(tmp_path, capsys):
    write_jpeg(str(tmp_path / 'good.jpg'))
    for i in range(25):
        (tmp_path / f'bad{i:02d}.jpg').write_bytes(b'junk')
    dataset = ImageFolderDataset(str(tmp_path))
    out = capsys.readouterr().out
    assert len(dataset.skipped) == 25 and '... and 5 more' in out
    assert 'bad19.jpg' in out and 'bad20.jpg' not in out


def test_every_mode_converts_to_rgb(tmp_path):
    cases = mode_images()
    for name, image, _ in cases:
        image.save(tmp_path / name)
    dataset = ImageFolderDataset(str(tmp_path))
    assert dataset.skipped == []
    by_name = {os.path.basename(p): i for i, p in enumerate(dataset.paths)}
    for name, image, expected in cases:
        with Image.open(tmp_path / name) as stored:
            assert stored.mode == image.mode, name  # the file really holds that mode
        loaded = dataset.load_image(by_name[name])
        assert loaded.mode == 'RGB', name
        assert [loaded.getpixel((x, 0)) for x in range(len(expected))] == expected, name


def test_folder_errors(tmp_path):
    with pytest.raises(FolderError, match='does not exist'):
        ImageFolderDataset(str(tmp_path / 'missing'))
    a_file = tmp_path / 'file.jpg'
    write_jpeg(str(a_file))
    with pytest.raises(FolderError, match='not a folder'):
        ImageFolderDataset(str(a_file))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FolderError, match=f'no readable image in {empty}'):
        ImageFolderDataset(str(empty))
    junk = tmp_path / 'junk'
    write_bad_files(str(junk))
    with pytest.raises(FolderError, match='all 4 files were skipped'):
        ImageFolderDataset(str(junk))


def test_scan_is_cached_per_folder(tmp_path, capsys):
    write_jpeg(str(tmp_path / 'a.jpg'))
    write_jpeg(str(tmp_path / 'b.jpg'))
    first = ImageFolderDataset(str(tmp_path))
    second = ImageFolderDataset(str(tmp_path) + os.sep)  # same folder, spelt differently
    assert scan_folder(str(tmp_path)) is scan_folder(os.path.abspath(str(tmp_path) + os.sep))
    assert capsys.readouterr().out.count('Scanned') == 1
    assert second.paths == first.paths and second.paths is not first.paths
