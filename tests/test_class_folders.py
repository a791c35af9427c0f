"""--export-folders (issue 23, point 6): the clusters as an ImageNet-style tree that
torchvision's ImageFolder loads, links by default and copies on request, folder names safe and
reversible, the originals never touched, nothing written through a link, a rerun replacing
only what it made."""
import os
import urllib.parse

import pytest
import torchvision

from annotation.class_folders import folder_name, write_tree
from annotation.names import AnnotationError
from tests.folder_images import folder_state, write_pattern_folder
from tests.pipeline_run import run_eval, trained_pattern_folder

NAMES = {0: 'cats', 1: 'a/b: c%?', 2: '.hidden '}


@pytest.mark.parametrize('name', ['cats', 'a/b: c%?', '.hidden ', '..', 'café 猫',
                                  'tab\there', 'x\\y<z>|"*'])
def test_folder_names_are_safe_and_reversible(name):
    folder = folder_name(name)
    assert urllib.parse.unquote(folder) == name
    assert not set(folder) & set('/\\<>:"|?*\t') and not folder.startswith('.')
    assert not folder.endswith((' ', '.'))


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / 'photos'
    truth = write_pattern_folder(str(folder), 4)
    paths = sorted(truth)
    clusters = [i % 3 for i in range(len(paths))]
    return folder, paths, clusters


def test_links_load_with_imagefolder_and_originals_stay(images, tmp_path):
    folder, paths, clusters = images
    before = folder_state(str(folder))
    dest = tmp_path / 'classes'
    summary = write_tree(str(dest), paths, clusters, NAMES, image_folders=[str(folder)])
    assert summary.startswith('class folders: 12 images in 3 folders under ')
    tree = torchvision.datasets.ImageFolder(str(dest))
    assert sorted(urllib.parse.unquote(c) for c in tree.classes) == sorted(NAMES.values())
    assert len(tree) == 12 and tree[0][0].size == (12, 12)
    for path, target in tree.samples:
        assert os.path.islink(path)
        original = os.readlink(path)
        cluster = clusters[paths.index(original)]
        assert urllib.parse.unquote(tree.classes[target]) == NAMES[cluster]
    assert folder_state(str(folder)) == before


def test_copies_and_a_rerun_replace_only_what_was_made(images, tmp_path):
    folder, paths, clusters = images
    dest = tmp_path / 'classes'
    write_tree(str(dest), paths, clusters, NAMES, copy=True)
    copies = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs
              if not f.startswith('.')]
    assert len(copies) == 12 and not any(os.path.islink(c) for c in copies)
    mine = dest / 'cats' / 'my notes.txt'
    mine.write_text('mine')
    write_tree(str(dest), paths, [0] * len(paths), {0: 'everything'})
    # cats/ stays for the user's file (ImageFolder then needs allow_empty)
    tree = torchvision.datasets.ImageFolder(str(dest), allow_empty=True)
    assert tree.classes == ['cats', 'everything'] and len(tree) == 12
    assert mine.read_text() == 'mine' and os.listdir(dest / 'cats') == ['my notes.txt']
    assert not (dest / folder_name('a/b: c%?')).exists()


def test_a_changed_entry_stops_the_rerun_before_anything_is_removed(images, tmp_path):
    folder, paths, clusters = images
    dest = tmp_path / 'classes'
    write_tree(str(dest), paths, clusters, NAMES)
    link = next((dest / 'cats').iterdir())
    link.unlink()
    link.write_bytes(b'the user put a file here')
    with pytest.raises(AnnotationError, match='changed since the last export'):
        write_tree(str(dest), paths, [0] * len(paths), {0: 'cats'})
    assert link.read_bytes() == b'the user put a file here'
    assert len(list((dest / 'cats').iterdir())) == 4


def test_refused_destinations(images, tmp_path):
    folder, paths, clusters = images
    with pytest.raises(AnnotationError, match='inside an image folder'):
        write_tree(str(folder / 'out'), paths, clusters, NAMES, image_folders=[str(folder)])
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (tmp_path / 'link').symlink_to(elsewhere)
    with pytest.raises(AnnotationError, match='is a link'):
        write_tree(str(tmp_path / 'link'), paths, clusters, NAMES)
    (elsewhere / 'x.txt').write_text('x')
    with pytest.raises(AnnotationError, match='not an earlier class-folder export'):
        write_tree(str(elsewhere), paths, clusters, NAMES)


def test_a_link_in_place_of_a_class_folder_is_never_followed(images, tmp_path):
    folder, paths, clusters = images
    dest, target = tmp_path / 'classes', tmp_path / 'target'
    dest.mkdir()
    target.mkdir()
    write_tree(str(dest), paths, clusters, NAMES)
    manifest = (dest / '.scan-class-folders.json').read_text()
    for entry in (dest / 'cats').iterdir():
        entry.unlink()
    (dest / 'cats').rmdir()
    (dest / 'cats').symlink_to(target)
    with pytest.raises(AnnotationError, match='are links'):
        write_tree(str(dest), paths, clusters, NAMES)
    assert os.listdir(target) == [] and (dest / '.scan-class-folders.json').read_text() == manifest


def test_eval_exports_the_named_clusters_as_folders(tmp_path):
    env, opts = trained_pattern_folder(tmp_path)
    names = tmp_path / 'names.yml'
    names.write_text('0: "red/discs"\n1: stripes\n2: checks\n')
    results = run_eval(env, 'configs/scan/scan_folder.yml', '--annotate', str(tmp_path / 'ann'),
                       '--names', str(names), '--export-folders', str(tmp_path / 'tree'),
                       '--copy-images', '--opts', *opts)
    tree = torchvision.datasets.ImageFolder(str(tmp_path / 'tree'))
    sizes = results['cluster_sizes']
    expected = {n: s for n, s in zip(['red/discs', 'stripes', 'checks'], sizes) if s}
    counts = {urllib.parse.unquote(c): sum(t == i for _, t in tree.samples)
              for i, c in enumerate(tree.classes)}
    assert counts == expected
    assert not any(os.path.islink(p) for p, _ in tree.samples)
