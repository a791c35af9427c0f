"""The annotation export without a trained model: a generated folder, made-up predictions.

Names and text that must survive every writer, the output folder that must never lose a file the
export did not write, and corrections files checked line by line."""
import csv
import hashlib
import io
import json
import os

import numpy as np
import pytest
import yaml

from annotation.corrections import read_rows
from annotation.export import ExportRequest, prepare_export
from annotation.gallery import data_script
from annotation.images import match_names
from annotation.names import AnnotationError, names_yaml, read_names, yaml_string
from annotation.outfolder import MANIFEST
from annotation.tables import csv_text, from_cell
from data.image_folder import ImageFolderDataset
from tests.folder_images import folder_state, write_pattern_folder
from tests.lock_holder import hold_lock
from utils.lock import LOCK_NAME, FolderLocked
from utils.plots import confusion_matrix_figure, prototype_grid
from utils.text import printable_path, visible_text

TRICKY_NAMES = [
    'yes', 'null', '1e3', '~', ' leading spaces', 'trailing ', 'a: b', '# not a comment',
    'x # y', 'line\nbreak', 'tab\there', '"double"', "it's", 'back\\slash', '$x^2$ \\alpha',
    '<script>alert(1)</script>', 'café 猫 🐈', '\x85next line', 'ls\u2028ps\u2029', '\x7fdel',
    '\ufeffbom', '- dash', '=SUM(A1)', '&anchor', '*alias', '!tag', '%dir', '@at', '{a: 1}',
    '[1]', '|', '>', '---', '...', 'crlf\r\n', 'e\u0301', 'caf\\xe9 (undecodable byte)']


def read_csv(path):
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    return rows


def tree_of_files(folder):
    """{relative path: sha256} of every file under folder, links not followed."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                found[os.path.relpath(path, folder)] = hashlib.sha256(
                    open(path, 'rb').read()).hexdigest()
    return found


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """A labelled folder of 4 classes (one more than the 3 clusters) and its predictions."""
    folder = str(tmp_path_factory.mktemp('images') / 'photos')
    write_pattern_folder(folder, 4, labelled=True)
    write_pattern_folder(os.path.join(folder, 'extra class'), 2, seed=5, prefix='x')
    dataset = ImageFolderDataset(folder)
    probs = np.random.default_rng(0).dirichlet(np.ones(3) * 0.5, len(dataset.paths))
    return dataset, probs


def export(out, images, **request):
    dataset, probs = images
    request.setdefault('image_folders', (dataset.folder,))
    prepared = prepare_export(ExportRequest(str(out), **request), dataset, probs,
                              dataset.folder, 'model.pth')
    return prepared.write()


# ------------------------------------------------------------------------------ names and text

def test_names_yaml_reads_back_identically(tmp_path):
    names = dict(enumerate(TRICKY_NAMES))
    path = tmp_path / 'names.yml'
    path.write_text(names_yaml(names), encoding='utf-8')
    assert yaml.safe_load(path.read_text(encoding='utf-8')) == names
    assert read_names(str(path), len(names)) == names
    assert [line.split(':', 1)[0] for line in path.read_text().splitlines()
            if not line.startswith('#')] == [str(k) for k in names]  # only ids and names


def test_yaml_string_escapes_what_yaml_would_change():
    assert yaml_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert yaml_string('\u2028\x85\x7f') == '"\\u2028\\u0085\\u007f"'
    assert yaml_string('猫 🐈') == '"猫 🐈"'


def test_visible_text_shows_undecodable_bytes():
    name = b'caf\xe9 \xff.png'.decode('utf-8', 'surrogateescape')
    assert visible_text(name) == 'caf\\xe9 \\xff.png'
    assert visible_text(name).encode('utf-8')  # encodes anywhere
    assert visible_text('\ud800x') == '\\ud800x' and visible_text('plain é') == 'plain é'


@pytest.mark.parametrize('value', ['=1+1', '+1', '-1', '@SUM(A1)', '\tx', '\rx', "'=x", "'x",
                                   'plain', 'caf\u00e9 =x', ''])
def test_csv_cells_read_as_text_and_back(value):
    text = csv_text(['a'], [[value]])
    cell = next(csv.reader(io.StringIO(text[text.index('\n') + 1:], newline='')))[0]
    assert not cell.startswith(('=', '+', '-', '@', '\t', '\r'))
    assert from_cell(cell) == value


def test_figures_draw_markup_and_odd_bytes_literally(tmp_path):
    odd = ['$x^2$', '$unbalanced', '\\alpha \\', b'caf\xe9'.decode('utf-8', 'surrogateescape'),
           '<b>', '\x00']
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    prototype_grid([[image]] * len(odd), odd, str(tmp_path / 'grid.png'), '$title')
    confusion_matrix_figure(np.eye(len(odd), dtype=int), odd, odd, str(tmp_path / 'cm.png'),
                            '$ACC$ \\')
    assert (tmp_path / 'grid.png').stat().st_size > 1000 and (tmp_path / 'cm.png').exists()


def test_gallery_data_cannot_end_the_script():
    script = data_script({'tails': ['</script><script>alert(1)</script>', '\u2028', '猫']})
    assert '</script>' not in script and script.isascii()
    assert json.loads(script[script.index('=') + 1:].rstrip(';\n'))['tails'][2] == '猫'


# ------------------------------------------------------------ the export, names and predictions

def test_more_classes_than_clusters_are_named_and_exported(images, tmp_path):
    dataset, probs = images
    matched, metrics = match_names(dataset, probs)
    assert set(matched) <= {0, 1, 2} and len(dataset.classes) == 4 and metrics['acc'] <= 1
    export(tmp_path / 'out', images)
    rows = read_csv(tmp_path / 'out' / 'annotations.csv')
    assert list(rows[0]) == ['path', 'cluster', 'confidence', 'name', 'label', 'source', 'id',
                             'x', 'y', 'duplicate_group', 'outlier_score']
    assert {r['label'] for r in rows} == set(dataset.classes)
    assert [int(r['id']) for r in rows] == list(range(len(rows)))
    assert yaml.safe_load((tmp_path / 'out' / 'names.yml').read_text()).keys() == {0, 1, 2}


def test_hostile_class_and_file_names_survive(tmp_path):
    folder = tmp_path / 'hostile'
    write_pattern_folder(str(folder), 2, labelled=True)
    (folder / 'disc').rename(folder / '=cmd| <img src=x onerror=alert(1)> "q" $x$')
    odd = os.fsdecode(bytes(folder / 'stripes') + b'/caf\xe9 <b>.png')
    with open(odd, 'wb') as f:
        f.write((folder / 'checks' / os.listdir(folder / 'checks')[0]).read_bytes())
    dataset = ImageFolderDataset(str(folder))
    probs = np.full((len(dataset.paths), 3), 0.1)
    probs[np.arange(len(probs)), dataset.targets] = 0.8  # cluster k: class k
    out = tmp_path / 'out'
    export(out, (dataset, probs), image_folders=(str(folder),))
    rows = read_csv(out / 'annotations.csv')
    assert "'=cmd| <img src=x onerror=alert(1)> \"q\" $x$" in {r['name'] for r in rows}
    assert os.path.join(str(folder), 'stripes', 'caf\\xe9 <b>.png') in {r['path'] for r in rows}
    page = (out / 'index.html').read_text(encoding='utf-8')
    assert '<img src=x' not in page and '<b>' not in page
    data = (out / 'gallery-data.js').read_text(encoding='ascii')
    assert 'caf\\\\xe9 \\u003cb>.png' in data
    assert '%E9%20%3Cb%3E.png' in data  # the link holds the real bytes
    assert (out / 'prototypes' / 'cluster_000.png').stat().st_size > 1000


# ----------------------------------------------------------------- the output folder is the user's

def test_a_folder_holding_other_files_is_refused(images, tmp_path):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'index.html').write_text('my own page')
    (out / 'thumbs').mkdir()
    (out / 'thumbs' / '0000001.png').write_bytes(b'my video frame')
    before = tree_of_files(out)
    with pytest.raises(AnnotationError, match='not an earlier export.*--force'):
        export(out, images)
    with pytest.raises(AnnotationError, match='index.html, thumbs/0000001.png already exist'):
        export(out, images, force=True)  # forced: beside the user's files, never over them
    assert tree_of_files(out) == before


def test_force_writes_beside_the_users_files(images, tmp_path):
    out = tmp_path / 'shared'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')
    export(out, images, force=True)
    assert (out / 'notes.txt').read_text() == 'mine' and (out / 'annotations.csv').exists()
    export(out, images)  # now an earlier export: no --force needed
    assert (out / 'notes.txt').read_text() == 'mine'


def test_an_output_path_that_is_a_file_is_refused(images, tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(AnnotationError, match='is a file, not a folder'):
        export(tmp_path / 'file', images)


def test_rerun_replaces_only_its_own_unchanged_files(images, tmp_path):
    out = tmp_path / 'again'
    export(out, images)
    manifest = json.loads((out / MANIFEST).read_text())['files']
    assert 'annotations.csv' in manifest and 'thumbs/0000000.png' in manifest
    (out / 'thumbs' / '9999999.png').write_bytes(b'a frame of mine, named like ours')
    (out / 'my notes.txt').write_text('kept')
    export(out, images)
    assert (out / 'thumbs' / '9999999.png').read_bytes() == b'a frame of mine, named like ours'
    assert (out / 'my notes.txt').read_text() == 'kept'
    # a CSV edited in a spreadsheet is the user's now: refused, not replaced
    (out / 'annotations.csv').write_text('my edits')
    with pytest.raises(AnnotationError, match='annotations.csv already exist'):
        export(out, images)
    assert (out / 'annotations.csv').read_text() == 'my edits'


def test_a_second_export_into_the_folder_at_once_is_refused(images, tmp_path):
    out = tmp_path / 'busy'
    export(out, images)
    before = tree_of_files(out)
    holder = hold_lock(out)  # an export writing there now
    try:
        with pytest.raises(FolderLocked) as error:
            export(out, images)
    finally:
        holder.stdin.close()
        holder.wait()
    assert str(error.value).startswith(f"another run is writing {out} (pid {holder.pid} ")
    assert tree_of_files(out) == before  # nothing written by the refused export
    export(out, images)  # the holder is gone: the folder is free again
    assert not (out / LOCK_NAME).exists()


def test_a_killed_exports_lock_and_temporaries_go_and_nothing_else(images, tmp_path):
    out = tmp_path / 'killed'
    export(out, images)
    # what an export killed while writing leaves: its lock naming a dead process, temporaries
    (out / LOCK_NAME).write_text(json.dumps({'pid': 2 ** 22 + 1, 'host': 'gone', 'command': 'x'}))
    (out / '.partial-abc_1234').write_bytes(b'half a csv')
    (out / 'thumbs' / '.partial-k9z0y8x7').write_bytes(b'half a png')
    (out / '.partial-notes.txt').write_text('mine')  # not a name write() makes: kept
    export(out, images, force=True)
    assert not (out / '.partial-abc_1234').exists()
    assert not (out / 'thumbs' / '.partial-k9z0y8x7').exists()
    assert (out / '.partial-notes.txt').read_text() == 'mine'
    assert not (out / LOCK_NAME).exists()


def test_a_lock_file_of_the_users_is_never_taken_over(images, tmp_path):
    out = tmp_path / 'users lock'
    out.mkdir()
    (out / LOCK_NAME).write_text('my own .lock file')
    with pytest.raises(AnnotationError, match='already holds files that are not an earlier export'):
        export(out, images)
    with pytest.raises(AnnotationError, match=f'holds a file {LOCK_NAME} that this code did not'):
        export(out, images, force=True)
    assert tree_of_files(out) == {LOCK_NAME: hashlib.sha256(b'my own .lock file').hexdigest()}


def test_stale_files_of_an_earlier_export_go_if_unchanged(images, tmp_path):
    dataset, probs = images
    out = tmp_path / 'stale'
    export(out, images)
    n = len(dataset.paths)
    (out / 'thumbs' / f'{n - 1:07d}.png').write_bytes(b'changed by the user')
    fewer = ImageFolderDataset(os.path.join(dataset.folder, 'extra class'))
    prepare_export(ExportRequest(str(out), image_folders=(dataset.folder,)), fewer,
                   probs[:len(fewer.paths)], fewer.folder, 'model.pth').write()
    left = sorted(os.listdir(out / 'thumbs'))
    assert left == [f'{i:07d}.png' for i in range(len(fewer.paths))] + [f'{n - 1:07d}.png']


def test_a_symlinked_thumbs_folder_is_never_written_or_emptied(images, tmp_path):
    frames = tmp_path / 'video frames'
    frames.mkdir()
    for i in range(3):
        (frames / f'{i:07d}.png').write_bytes(b'frame %d' % i)
    before = tree_of_files(frames)
    out = tmp_path / 'out'
    export(out, images)
    # the user swaps our thumbs folder for a link to their frames; the manifest still lists
    # thumbs/0000000.png ... as ours
    for name in os.listdir(out / 'thumbs'):
        os.remove(out / 'thumbs' / name)
    (out / 'thumbs').rmdir()
    (out / 'thumbs').symlink_to(frames)
    with pytest.raises(AnnotationError, match='thumbs/0000000.png.*already exist'):
        export(out, images)
    assert tree_of_files(frames) == before


def test_an_image_folder_inside_the_output_is_never_touched(images, tmp_path):
    dataset, probs = images
    out = tmp_path / 'out'
    export(out, images)
    frames = out / 'thumbs'  # the user points --predict (or training) at our thumbs folder
    before = tree_of_files(frames)
    with pytest.raises(AnnotationError, match='thumbs/0000000.png.*image folders'):
        export(out, images, image_folders=(dataset.folder, str(frames)))
    assert tree_of_files(frames) == before


def test_a_forged_manifest_removes_nothing_outside(images, tmp_path):
    victim = tmp_path / 'victim.png'
    victim.write_bytes(b'precious')
    digest = hashlib.sha256(b'precious').hexdigest()
    out = tmp_path / 'out'
    out.mkdir()
    entry = {'size': 8, 'sha256': digest}
    (out / MANIFEST).write_text(json.dumps({
        'written_by': 'SCAN eval.py --annotate',
        'files': {'../victim.png': entry, str(victim): entry, 'thumbs/../../victim.png': entry,
                  'notes.txt': {'pending': True}}}))
    (out / 'notes.txt').write_text('not named as ours')
    export(out, images)
    assert victim.read_bytes() == b'precious' and (out / 'notes.txt').exists()


def test_an_edited_names_file_is_kept_and_used(images, tmp_path):
    out = tmp_path / 'named'
    export(out, images)
    (out / 'names.yml').write_text('1: "  my birds: yes"\n', encoding='utf-8')
    export(out, images)
    assert (out / 'names.yml').read_text() == '1: "  my birds: yes"\n'
    rows = read_csv(out / 'annotations.csv')
    assert {r['name'] for r in rows if r['cluster'] == '1'} == {'  my birds: yes'}
    assert json.loads((out / 'summary.json').read_text())['names_file'] == str(out / 'names.yml')
    other = tmp_path / 'other.yml'
    other.write_text('1: other\n')
    export(out, images, names_file=str(other))  # --names wins; the edited file stays
    assert {r['name'] for r in read_csv(out / 'annotations.csv') if r['cluster'] == '1'} == \
        {'other'}
    assert (out / 'names.yml').read_text() == '1: "  my birds: yes"\n'


# ------------------------------------------------------------------------------- corrections

def write_corrections(path, text):
    path.write_text(text, encoding='utf-8')
    return str(path)


def test_corrections_move_merge_and_count(images, tmp_path):
    dataset, probs = images
    model = probs.argmax(axis=1)
    first = int(np.flatnonzero(model == 0)[0])
    second = int(np.flatnonzero(model == 1)[0])
    merged = int((model == 2).sum())
    corrections = write_corrections(tmp_path / 'c.csv', (
        'id,path,from,to\n'
        f'{first},{printable_path(dataset.paths[first])},0,2\n'
        f',{printable_path(dataset.paths[second])},1,0\n'  # by path alone
        ',,2,1\n'))                                      # cluster 2 merged into 1
    out = tmp_path / 'out'
    export(out, images, corrections_file=corrections)
    rows = read_csv(out / 'annotations.csv')
    assert rows[first]['cluster'] == '1' and rows[first]['source'] == 'corrected'  # 0 -> 2 -> 1
    assert rows[second]['cluster'] == '0' and rows[second]['source'] == 'corrected'
    assert all(r['cluster'] == '1' and r['source'] == 'corrected'
               for r, k in zip(rows, model) if k == 2)
    assert sum(r['source'] == 'corrected' for r in rows) == merged + 2
    assert float(rows[first]['confidence']) == pytest.approx(probs[first, 1], abs=1e-4)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['corrections'] == {
        'file': corrections, 'moved_images': 2,
        'merged_clusters': [{'cluster': 2, 'into': 1, 'images': merged + 1}],
        'corrected_images': merged + 2}
    assert summary['clusters'][2]['merged_into'] == 1 and summary['clusters'][2]['size'] == 0
    assert not (out / 'prototypes' / 'cluster_002.png').exists()
    data = (out / 'gallery-data.js').read_text()
    assert '"merges":[[2,1]]' in data and f'[{first},2]' in data


@pytest.mark.parametrize('text, message', [
    ('path,from\nx,1\n', 'line 1: the header must name the columns id, path, from, to'),
    ('id,path,from,to\n,/nowhere.png,0,1\n', "line 2: '/nowhere.png' is not an image of this"),
    ('id,path,from,to\n\n999,/x.png,0,1\n', "line 3: no image has id '999'"),
    ('id,path,from,to\n0,/x.png,0,1\n', "line 2: image 0 is '"),
    ('id,path,from,to\n,,0,7\n', "line 2: `to` must be a cluster of the model (0 to 2), got '7'"),
    ('id,path,from,to\n,,x,1\n', "line 2: `from` must be a cluster of the model"),
    ('id,path,from,to\n,,1,1\n', "line 2: `from` and `to` are both cluster 1"),
    ('id,path,from,to\n,,1,2\n,,2,0\n,,0,1\n', "clusters are merged in a circle"),
    ('id,path,from,to\n,,1,2\n,,1,0\n', "line 3: cluster 1 is merged twice (also on line 2)"),
])
def test_bad_corrections_name_the_line_and_write_nothing(images, tmp_path, text, message):
    corrections = write_corrections(tmp_path / 'bad corrections.csv', text)
    out = tmp_path / 'out'
    with pytest.raises(AnnotationError) as error:
        export(out, images, corrections_file=corrections)
    assert str(error.value).startswith(corrections) and message in str(error.value)
    assert not out.exists()


def test_a_correction_from_the_wrong_cluster_or_twice_is_refused(images, tmp_path):
    dataset, probs = images
    model = probs.argmax(axis=1)
    path = printable_path(dataset.paths[0])
    wrong = (int(model[0]) + 1) % 3
    corrections = write_corrections(tmp_path / 'c.csv', f'id,path,from,to\n0,{path},{wrong},'
                                                        f'{(wrong + 1) % 3}\n')
    with pytest.raises(AnnotationError, match=f'line 2: .* is in cluster {model[0]} in this '
                                              f'export, not {wrong}'):
        export(tmp_path / 'a', images, corrections_file=corrections)
    target = (int(model[0]) + 1) % 3
    twice = f'0,{path},{model[0]},{target}\n'
    corrections = write_corrections(tmp_path / 'd.csv', 'id,path,from,to\n' + twice * 2)
    with pytest.raises(AnnotationError, match='line 3: .* moved twice \\(also on line 2\\)'):
        export(tmp_path / 'b', images, corrections_file=corrections)


def test_a_corrections_file_that_is_not_text(tmp_path):
    path = tmp_path / 'c.csv'
    path.write_bytes(b'\xff\xfe\x00garbage')
    with pytest.raises(AnnotationError, match='not UTF-8 text'):
        read_rows(str(path))
    with pytest.raises(AnnotationError, match='corrections file not found'):
        read_rows(str(tmp_path / 'none.csv'))


def test_the_image_folder_is_unchanged_by_every_export(images, tmp_path):
    dataset, _ = images
    before = folder_state(dataset.folder)
    export(tmp_path / 'x', images)
    assert folder_state(dataset.folder) == before


def test_a_full_disk_is_a_message_and_a_rerun_completes(images, tmp_path, monkeypatch):
    from annotation.outfolder import ExportFolder
    real_write, calls = ExportFolder.write, []

    def write_until_full(self, relative, data):
        calls.append(relative)
        if len(calls) == 5:
            raise OSError(28, 'No space left on device')
        return real_write(self, relative, data)

    monkeypatch.setattr(ExportFolder, 'write', write_until_full)
    out = tmp_path / 'out'
    with pytest.raises(AnnotationError, match='could not write the export .*No space left'):
        export(out, images)
    monkeypatch.setattr(ExportFolder, 'write', real_write)
    export(out, images)  # the half-written files are recognised as ours and replaced
    rows = read_csv(out / 'annotations.csv')
    assert len(rows) == len(images[0].paths) and not [
        name for name in os.listdir(out / 'thumbs') if name.startswith('.partial-')]
