"""Hostile folders: names of any bytes, files that decode into huge images, links, pipes and odd
formats. Each is used as an RGB image or skipped with its reason, never a traceback, and the
image folder is byte for byte unchanged afterwards."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFile

import scan
import selflabel
import simclr
from data.image_folder import (FolderError, ImageFolderDataset, ImageRejected, check_image,
                               load_rgb, load_thumbnail, path_from_printable, printable_path,
                               to_rgb)
from tests.folder_images import picture as kind_picture
from tests.hostile_files import (HOSTILE_NAMES, IS_ROOT, blank_png, encoded, picture, tree_digest,
                                 write, write_hostile_folder)
from tests.pipeline_run import ROOT, run_eval, run_step, write_config, write_env


def relative(path, folder):
    return os.fsencode(os.path.relpath(path, folder))


@pytest.fixture
def hostile(tmp_path):
    folder = str(tmp_path / 'hostile')
    cases = write_hostile_folder(folder, str(tmp_path / 'outside'))
    return folder, cases, tree_digest(folder)


# ----------------------------------------------------------------------------- the corpus

def test_every_hostile_file_loads_or_is_skipped_with_its_reason(hostile, capsys):
    folder, cases, before = hostile
    dataset = ImageFolderDataset(folder)
    loaded = {relative(p, folder): i for i, p in enumerate(dataset.paths)}
    skipped = {relative(p, folder): reason for p, reason in dataset.skipped}
    for case in cases:
        if not case.listed:
            assert case.name not in loaded and case.name not in skipped, case
        elif case.loads:
            image = dataset.load_image(loaded[case.name])
            assert (image.mode, image.size) == ('RGB', case.size), case
        else:
            assert case.reason in skipped[case.name], (case, skipped[case.name])
    assert len(loaded) + len(skipped) == sum(c.listed for c in cases)  # nothing else, no loss
    out = capsys.readouterr().out
    assert f"{len(loaded)} images, {len(skipped)} skipped:" in out
    assert 'bomb 12000x12000 1-bit.png: 12,000 x 12,000 = 144,000,000 pixels' in out
    assert '\x1b' not in out and 'new\nline' not in out  # names printed as text, one a line
    assert tree_digest(folder) == before


def test_hostile_names_are_kept_and_written_as_printable_text(hostile):
    folder, _, before = hostile
    dataset = ImageFolderDataset(folder)
    names = {relative(p, folder) for p in dataset.paths}
    assert set(HOSTILE_NAMES) <= names  # every legal name is used, none renamed or dropped
    for path, text in zip(dataset.paths, dataset.printable_paths):
        assert text.isprintable() and path_from_printable(text) == path
        text.encode('utf-8')  # strict: writable to any UTF-8 file
    by_name = dict(zip(map(os.path.basename, dataset.paths), dataset.printable_paths))
    assert by_name[os.fsdecode(b'latin-1 \xe9t\xe9.png')].endswith('latin-1 \\xe9t\\xe9.png')
    assert by_name[os.fsdecode(b'new\nline.png')].endswith('new\\x0aline.png')
    assert by_name['back\\slash \\x41.png'].endswith('back\\\\slash \\\\x41.png')
    assert by_name['café 😀.png'].endswith('café 😀.png')  # printable UTF-8: unchanged
    assert by_name['\u202ereversed.png'].endswith('\\xe2\\x80\\xaereversed.png')
    json.dumps(dataset.printable_paths, ensure_ascii=False).encode('utf-8')
    assert tree_digest(folder) == before


def test_printable_path_round_trips_every_byte():
    rng = np.random.default_rng(0)
    legal = [b for b in range(1, 256) if b != ord('/')]
    names = [bytes(rng.choice(legal, rng.integers(1, 40))) for _ in range(2000)]
    names += [bytes([b]) for b in legal] + [b'\\x41', b'\\\\x', b'\\', b'a\\xzz']
    for name in names:
        path = os.fsdecode(b'/some folder/' + name)
        text = printable_path(path)
        assert text.isprintable() and path_from_printable(text) == path, name
    assert printable_path('/photos/cat 1.jpg') == '/photos/cat 1.jpg'


def test_a_folder_whose_own_name_is_odd(tmp_path, capsys):
    root = os.path.join(os.fsencode(tmp_path), b'odd \xff\nfolder')
    with pytest.raises(FolderError, match=r'odd \\xff\\x0afolder does not exist'):
        ImageFolderDataset(os.fsdecode(root))
    os.makedirs(root)
    write(os.path.join(root, b'a.png'), encoded(picture(0), 'PNG'))
    assert len(ImageFolderDataset(os.fsdecode(root))) == 1
    assert 'Scanned 1 files in ' in capsys.readouterr().out


def test_labelled_tree_with_odd_class_folder_names(tmp_path):
    root = os.fsencode(tmp_path / 'tree')
    classes = [b'caf\xe9', b'new\nline', b'<b>"=1"']
    for k, name in enumerate(classes):
        os.makedirs(os.path.join(root, name))
        for i in range(2):
            write(os.path.join(root, name, HOSTILE_NAMES[k + i]), encoded(picture(i), 'PNG'))
    before = tree_digest(root)
    dataset = ImageFolderDataset(os.fsdecode(root))
    assert dataset.classes == ['<b>"=1"', 'caf\\xe9', 'new\\x0aline']  # sorted by real name
    for path, target in zip(dataset.paths, dataset.targets):
        folder = os.path.basename(os.path.dirname(path))
        assert dataset.classes[target] == printable_path(folder)
    assert tree_digest(root) == before


# ----------------------------------------------------------------------------- memory

@pytest.fixture
def bombs(tmp_path):
    paths = {'12000x12000.png': blank_png(12000, 12000), '20000x20000.png': blank_png(20000, 20000),
             '1000000x1.png': blank_png(1_000_000, 1)}
    for name, data in paths.items():
        write(str(tmp_path / name), data)
        assert len(data) < 100_000  # a few KB to decode into up to 400 MB
    return {name: str(tmp_path / name) for name in paths}


def test_huge_images_are_never_decoded(bombs, monkeypatch):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, 'load', lambda image: decoded.append(image.size))
    reasons = {name: check_image(path) for name, path in bombs.items()}
    assert reasons == {
        '12000x12000.png': (None, ('12,000 x 12,000 = 144,000,000 pixels, over the limit of '
                                   '89,478,485')),
        '20000x20000.png': (None, '400,000,000 pixels, over the limit of 89,478,485'),
        '1000000x1.png': (None, '1,000,000 x 1 pixels: aspect ratio 1:1,000,000, over 1:100')}
    for path in bombs.values():  # the loaders refuse them the same way (UserError, no traceback)
        with pytest.raises(ImageRejected, match='over'):
            load_rgb(path)
        with pytest.raises(ImageRejected, match='over'):
            load_thumbnail(path, 128)
    assert decoded == []


def test_peak_memory_does_not_grow_with_huge_images(bombs):
    """In a fresh process (its peak is its own): checking the files raises the peak resident
    memory by far less than decoding any one of them would (144 MB and more)."""
    code = ("import resource, sys\n"
            "from data.image_folder import check_image, load_thumbnail\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for path in sys.argv[1:]:\n"
            "    assert check_image(path)[0] is None\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    result = subprocess.run([sys.executable, '-c', code, *bombs.values()], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    growth_kb = int(result.stdout.split()[-1])
    assert growth_kb < 40 * 1024, growth_kb


def test_decompression_bomb_warning_is_not_shown(bombs, recwarn):
    assert check_image(bombs['12000x12000.png'])[0] is None  # 1.6x PIL's limit: it would warn
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


# ----------------------------------------------------------------------------- thumbnails

def test_thumbnails_of_a_large_jpeg_are_decoded_reduced(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (15, 20, 3)), np.ones((100, 100, 1))).astype(np.uint8)
    path = str(tmp_path / 'photo.jpg')
    Image.fromarray(smooth).save(path, quality=95)  # 2000 x 1500
    decoded = []
    real_load = ImageFile.ImageFile.load

    def load(image):
        decoded.append(image.size)
        return real_load(image)
    monkeypatch.setattr(ImageFile.ImageFile, 'load', load)
    thumb = load_thumbnail(path, 256)
    assert (thumb.mode, thumb.size) == ('RGB', (256, 192))
    assert set(decoded) == {(1000, 750)}  # half the full size, at least twice the thumbnail
    monkeypatch.undo()
    full = load_rgb(path)
    full.thumbnail((256, 256))
    assert np.abs(np.asarray(thumb, float) - np.asarray(full, float)).mean() < 3


def test_thumbnails_convert_every_mode_and_never_enlarge(hostile):
    folder, cases, before = hostile
    for case in cases:
        if case.loads and not case.name.startswith(b'link'):
            path = os.path.join(os.fsencode(folder), case.name)
            thumb = load_thumbnail(os.fsdecode(path), 256)
            expected = to_rgb(Image.open(path))
            expected.thumbnail((256, 256))
            assert thumb.mode == 'RGB' and thumb.size == expected.size, case
            assert np.array_equal(np.asarray(thumb), np.asarray(expected)), case
    assert tree_digest(folder) == before


# ----------------------------------------------------------------------------- links, access

def test_a_link_to_a_file_of_another_class_counts_once_where_the_file_is(tmp_path):
    for kind in ('cats', 'dogs'):
        os.makedirs(tmp_path / kind)
        write(str(tmp_path / kind / f'{kind}.png'), encoded(picture(0), 'PNG'))
    os.symlink(tmp_path / 'dogs' / 'dogs.png', tmp_path / 'cats' / 'a link.png')
    dataset = ImageFolderDataset(str(tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in dataset.paths] == ['cats/cats.png',
                                                                     'dogs/dogs.png']
    assert list(dataset.targets) == [0, 1]
    assert dataset.skipped == [(str(tmp_path / 'cats' / 'a link.png'),
                                'the same file as dogs/dogs.png (a link or hard link to it)')]


def test_a_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    write(str(tmp_path / 'a.png'), encoded(picture(0), 'PNG'))
    (tmp_path / 'locked').mkdir()
    real_scandir = os.scandir

    def scandir(path):  # what a folder without read permission does, also for root
        if os.fspath(path).endswith('locked'):
            raise PermissionError(13, 'Permission denied', os.fspath(path))
        return real_scandir(path)
    monkeypatch.setattr(os, 'scandir', scandir)
    dataset = ImageFolderDataset(str(tmp_path))
    assert dataset.skipped == [(str(tmp_path / 'locked'),
                                'folder cannot be listed: Permission denied')]


@pytest.mark.skipif(IS_ROOT, reason='permissions do not stop root')
def test_unreadable_file_and_folder(tmp_path):
    write(str(tmp_path / 'a.png'), encoded(picture(0), 'PNG'))
    write(str(tmp_path / 'secret.png'), encoded(picture(1), 'PNG'))
    (tmp_path / 'locked').mkdir()
    os.chmod(tmp_path / 'secret.png', 0)
    os.chmod(tmp_path / 'locked', 0)
    try:
        skipped = dict(ImageFolderDataset(str(tmp_path)).skipped)
    finally:
        os.chmod(tmp_path / 'locked', 0o755)
    assert skipped == {str(tmp_path / 'secret.png'): 'cannot be read: permission denied',
                       str(tmp_path / 'locked'): 'folder cannot be listed: Permission denied'}


# ----------------------------------------------------------------------------- end to end

OPTS = {'pretext': ['epochs=2', 'num_neighbors=5'], 'scan': ['epochs=2', 'num_neighbors=5'],
        'selflabel': ['epochs=1']}
CLASS_FOLDERS = (b'$checks -rf', b'disc \xff<b>', b'stripes\n"=1"')


def write_hostile_tree(root, per_class=8):
    """A labelled tree: one class folder of odd bytes per kind, images under hostile names, and
    (at the top, where they leave the tree labelled) a few files that must be skipped."""
    rng = np.random.default_rng(0)
    for k, (kind, folder) in enumerate(zip(('checks', 'disc', 'stripes'), CLASS_FOLDERS)):
        os.makedirs(os.path.join(root, folder))
        for i in range(per_class):
            name = HOSTILE_NAMES[(7 * k + i) % len(HOSTILE_NAMES)]
            image = Image.fromarray(kind_picture(kind, rng))
            write(os.path.join(root, folder, name), encoded(image, 'PNG'))
    write(os.path.join(root, b'bomb.png'), blank_png(12000, 12000))
    write(os.path.join(root, b'empty\xff.png'), b'')
    os.symlink(b'nowhere', os.path.join(root, b'broken\n.png'))


def test_pipeline_on_hostile_names(tmp_path):
    """The three steps and --annotate on a labelled tree of hostile names, then --predict on the
    whole hostile corpus: every image in the CSV under its printable path, the rest skipped."""
    root = os.fsencode(tmp_path / 'hostile tree')
    write_hostile_tree(root)
    corpus = str(tmp_path / 'corpus')
    write_hostile_folder(corpus, str(tmp_path / 'outside'))
    before = tree_digest(root), tree_digest(corpus)
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    opts = [f'folder={os.fsdecode(root)}', 'num_classes=3', 'batch_size=24']
    configs = {}
    for step, module in (('pretext', simclr), ('scan', scan), ('selflabel', selflabel)):
        configs[step] = write_config(str(tmp_path), step, base='folder')
        run_step(module, env, configs[step], *opts, *OPTS[step])
    out = tmp_path / 'annotations'
    run_eval(env, configs['selflabel'], '--annotate', str(out), '--opts', *opts)
    dataset = ImageFolderDataset(os.fsdecode(root))
    with open(out / 'annotations.csv', newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f))[1:]
    assert [r[0] for r in rows] == dataset.printable_paths  # every image, its path as text
    assert [path_from_printable(r[0]) for r in rows] == dataset.paths
    classes = ['$checks -rf', 'disc \\xff<b>', 'stripes\\x0a"=1"']
    assert [r[4] for r in rows] == [classes[t] for t in dataset.targets]
    summary = json.loads((out / 'summary.json').read_text(encoding='utf-8'))
    assert sorted(s['path'] for s in summary['skipped']) == ['bomb.png', 'broken\\x0a.png',
                                                             'empty\\xff.png']
    script = (out / 'gallery-data.js').read_text(encoding='utf-8')  # what the page shows
    gallery = json.loads(script[script.index('=') + 1:].rstrip(';\n'))
    assert 'disc \\xff<b>' in gallery['labels']
    assert any(h.replace('../', '').startswith('hostile%20tree/disc%20%FF%3Cb%3E/')
               for h in gallery['hrefs'])
    assert len(os.listdir(out / 'prototypes')) >= 1

    predicted = tmp_path / 'predicted'
    run_eval(env, configs['selflabel'], '--predict', corpus, '--annotate', str(predicted),
             '--opts', *opts)
    new = ImageFolderDataset(corpus)
    with open(predicted / 'annotations.csv', newline='', encoding='utf-8') as f:
        assert [r[0] for r in list(csv.reader(f))[1:]] == new.printable_paths
    summary = json.loads((predicted / 'summary.json').read_text(encoding='utf-8'))
    assert len(summary['skipped']) == len(new.skipped) > 10
    assert (tree_digest(root), tree_digest(corpus)) == before
