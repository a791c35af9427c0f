"""Hostile and careless use, round 2 (issue 16): links where outputs go, step folders that lead
into the images, interrupted exports, --predict above the outputs, damaged outputs of our own,
values without bounds. Each case ends in success or a message naming the problem, and the
image folders and the user's files are hashed before and after."""
import json
import os
import re
import types

import numpy as np
import pytest

import eval as eval_script
import scan
import simclr
from annotation.export import ExportRequest, prepare_export
from annotation.outfolder import JOURNAL, MANIFEST
from data.image_folder import ImageFolderDataset
from tests.file_hashes import folder_hash
from tests.folder_images import KINDS, write_pattern_folder
from tests.pipeline_run import folder_outputs, write_env
from utils.checkpoint import UMASK
from utils.runtime import get_args_parser, run_cli

CONFIGS = {'pretext': 'configs/pretext/simclr_folder.yml', 'scan': 'configs/scan/scan_folder.yml'}
KIND = KINDS[0]
OPTS = {'pretext': ['epochs=1', 'batch_size=18', 'num_neighbors=3', 'num_neighbors_val=3'],
        'scan': ['epochs=1', 'batch_size=18', 'num_neighbors=3']}


def run_message(module, env, step, *extra, opts=(), parser=None):
    """The message a script run ends with (it must end in one, not a traceback)."""
    with pytest.raises(SystemExit) as end:
        run(module, env, step, *extra, opts=opts, parser=parser)
    return str(end.value.code)


def run(module, env, step, *extra, opts=(), parser=None):
    argv = ['--config_env', env.path, '--config_exp', CONFIGS[step], *extra,
            '--opts', *env.opts, *OPTS[step], *opts]
    return run_cli(module.main, parser or get_args_parser('test'), argv)


def evaluate(env, *extra, opts=()):
    return run(eval_script, env, 'scan', *extra, opts=opts, parser=eval_script.get_eval_parser())


def make_env(tmp, folder, root_name='outputs', classes=3):
    root = os.path.join(tmp, root_name)
    return types.SimpleNamespace(path=write_env(os.path.join(tmp, f'env-{root_name}'), root),
                                 root=root, outputs=folder_outputs(root, folder),
                                 opts=[f'folder={folder}', f'num_classes={classes}',
                                       'num_workers=0'])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Steps 1 and 2 (one epoch each) on 18 labelled pictures of 3 kinds."""
    tmp = str(tmp_path_factory.mktemp('round2'))
    folder = os.path.join(tmp, 'photos')
    write_pattern_folder(folder, 6, labelled=True)
    env = make_env(tmp, folder)
    run(simclr, env, 'pretext')
    run(scan, env, 'scan')
    return types.SimpleNamespace(tmp=tmp, folder=folder, env=env, before=folder_hash(folder))


@pytest.fixture
def photos(tmp_path):
    """A fresh folder of 18 pictures (for the cases that never get to train)."""
    folder = str(tmp_path / 'photos')
    write_pattern_folder(folder, 6, labelled=True)
    return folder, folder_hash(folder)


# 1. Writes never follow links ------------------------------------------------------------------

def test_a_lock_that_links_to_an_image_is_refused_and_the_image_untouched(tmp_path, photos):
    folder, before = photos
    env = make_env(str(tmp_path), folder)
    victim = os.path.join(folder, KIND, os.listdir(os.path.join(folder, KIND))[0])
    os.makedirs(os.path.join(env.outputs, 'pretext'))
    os.symlink(victim, os.path.join(env.outputs, 'pretext', '.lock'))
    message = run_message(simclr, env, 'pretext')
    assert f"{env.outputs}/pretext/.lock is a link (to {victim}): this code never writes " \
           f"through a link; delete the link and rerun" in message
    assert folder_hash(folder) == before


def test_a_lock_that_is_a_fifo_is_refused_not_waited_on(tmp_path, photos):
    folder, before = photos
    env = make_env(str(tmp_path), folder)
    os.makedirs(os.path.join(env.outputs, 'pretext'))
    os.mkfifo(os.path.join(env.outputs, 'pretext', '.lock'))
    message = run_message(simclr, env, 'pretext')
    assert f"{env.outputs}/pretext/.lock is not a regular file" in message
    assert folder_hash(folder) == before


def test_eval_outputs_that_are_links_are_replaced_not_written_through(trained, tmp_path):
    user = tmp_path / 'user'
    user.mkdir()
    eval_dir = os.path.join(trained.env.outputs, 'scan', 'eval')
    os.makedirs(eval_dir, exist_ok=True)
    targets = {}
    for name in ('metrics.json', 'confusion_matrix.png', 'prototypes.png', 'most_confident.png'):
        target = user / name
        target.write_text(f'my {name}')
        targets[target] = f'my {name}'
        if os.path.lexists(os.path.join(eval_dir, name)):
            os.remove(os.path.join(eval_dir, name))
        os.symlink(target, os.path.join(eval_dir, name))
    results = evaluate(trained.env)
    assert 'acc' in results
    for target, text in targets.items():
        assert target.read_text() == text
        assert not os.path.islink(os.path.join(eval_dir, target.name))
    with open(os.path.join(eval_dir, 'metrics.json')) as f:
        assert json.load(f)['acc'] == results['acc']
    assert folder_hash(trained.folder) == trained.before


def test_the_feature_cache_and_log_replace_links_in_their_place(tmp_path):
    from data.feature_cache import read_cached, write_cached
    from utils.training import RunLog
    victim = tmp_path / 'victim'
    victim.write_bytes(b'precious')
    out = tmp_path / 'pretext'
    out.mkdir()
    for name in ('features-train.npy', 'features-train.json', 'log.jsonl'):
        os.symlink(victim, out / name)
    key = {'images': 'a', 'backbone': 'b', 'preprocessing': 'c'}
    write_cached(str(out / 'features-train.npy'), np.ones((4, 2), np.float32), key)
    assert read_cached(str(out / 'features-train.npy'), key, 4)[0].shape == (4, 2)
    log = RunLog(str(out / 'log.jsonl'))
    log.start(None)
    log.write({'epoch': 1})
    assert victim.read_bytes() == b'precious'
    assert not any(os.path.islink(out / n) for n in os.listdir(out))
    assert sorted(os.listdir(out)) == ['features-train.json', 'features-train.npy', 'log.jsonl']


# 2. A step folder that is a link into the image folder ----------------------------------------

@pytest.mark.parametrize('step, module', [('pretext', simclr), ('scan', scan)])
def test_a_step_folder_linked_into_the_images_is_refused(tmp_path, photos, step, module):
    folder, before = photos
    env = make_env(str(tmp_path), folder)
    os.makedirs(env.outputs)
    os.symlink(os.path.join(folder, KIND), os.path.join(env.outputs, step))
    message = run_message(module, env, step)
    assert f"outputs would be written into {env.outputs}/{step} (it resolves to " \
           f"{folder}/{KIND}), inside the image folder {folder}, where nothing is written" \
           in message
    assert folder_hash(folder) == before


def test_an_eval_folder_linked_into_the_images_is_refused(trained):
    eval_dir = os.path.join(trained.env.outputs, 'scan', 'eval')
    moved = eval_dir + '.kept'
    os.rename(eval_dir, moved) if os.path.isdir(eval_dir) else None
    os.symlink(trained.folder, eval_dir)
    try:
        message = run_message(eval_script, trained.env, 'scan',
                              parser=eval_script.get_eval_parser())
    finally:
        os.remove(eval_dir)
        os.rename(moved, eval_dir) if os.path.isdir(moved) else None
    assert f"inside the image folder {trained.folder}, where nothing is written" in message
    assert folder_hash(trained.folder) == trained.before


def test_any_folder_written_is_checked_resolved(tmp_path):
    """One check for every folder (refined/ and any step to come): the lock and atomic writes."""
    from utils.checkpoint import atomic_write_text
    from utils.lock import lock_output_folder
    from utils.outputs import UnsafeOutput, protect, reset_protected
    images = tmp_path / 'images'
    images.mkdir()
    (tmp_path / 'out').mkdir()
    os.symlink(images, tmp_path / 'out' / 'refined')
    protect(str(images))
    try:
        with pytest.raises(UnsafeOutput, match='inside the image folder'):
            lock_output_folder(str(tmp_path / 'out' / 'refined'))
        with pytest.raises(UnsafeOutput, match='inside the image folder'):
            atomic_write_text(str(tmp_path / 'out' / 'refined' / 'model.txt'), 'x')
    finally:
        reset_protected()
    assert os.listdir(images) == []


# 3. An interrupted export keeps the user's edits ----------------------------------------------

@pytest.fixture(scope='module')
def labelled(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('export') / 'photos')
    write_pattern_folder(folder, 3, labelled=True)
    dataset = ImageFolderDataset(folder)
    probs = np.random.default_rng(0).dirichlet(np.ones(3) * 0.5, len(dataset.paths))
    return dataset, probs


def export(out, labelled, **request):
    dataset, probs = labelled
    request.setdefault('image_folders', (dataset.folder,))
    return prepare_export(ExportRequest(str(out), **request), dataset, probs, dataset.folder,
                          'model.pth').write()


class DiskFull(OSError):
    pass


def interrupted_export(out, labelled, monkeypatch, stop_at):
    """An export that stops (disk full) when it comes to write `stop_at`."""
    from annotation.outfolder import ExportFolder
    original = ExportFolder.write

    def failing(self, relative, data):
        if relative == stop_at:
            raise DiskFull(28, 'No space left on device')
        return original(self, relative, data)
    with monkeypatch.context() as patch:
        patch.setattr(ExportFolder, 'write', failing)
        with pytest.raises(Exception, match='No space left'):
            export(out, labelled)


# stopped before anything, among the thumbnails, after names.yml was written; a re-export of
# the same images keeps its thumbnails, so the thumbnails' case is a first export cut short
@pytest.mark.parametrize('stop_at', ['annotations.csv', 'thumbs/0000004.png', 'summary.json'])
def test_names_edited_after_an_interrupted_export_are_kept(labelled, tmp_path, monkeypatch,
                                                           stop_at):
    out = tmp_path / 'out'
    if not stop_at.startswith('thumbs/'):
        export(out, labelled)
    interrupted_export(out, labelled, monkeypatch, stop_at)
    (out / 'names.yml').write_text('0: my own name\n')
    export(out, labelled)
    assert (out / 'names.yml').read_text() == '0: my own name\n'
    assert json.loads((out / 'summary.json').read_text())['clusters'][0]['name'] == 'my own name'
    assert not (out / JOURNAL).exists()


def test_an_interrupted_export_is_redone_over_its_own_files(labelled, tmp_path, monkeypatch):
    out = tmp_path / 'out'
    interrupted_export(out, labelled, monkeypatch, 'summary.json')  # the first export: no file was ours
    export(out, labelled)  # what it wrote is recognised as ours: no refusal
    manifest = json.loads((out / MANIFEST).read_text())['files']
    assert not any(entry.get('pending') for entry in manifest.values())
    assert 'names.yml' in manifest


def test_export_files_follow_the_umask(labelled, tmp_path):
    out = tmp_path / 'out'
    export(out, labelled)
    for name in ('annotations.csv', 'index.html', 'names.yml', MANIFEST):
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~UMASK


# 4. --predict on a folder that holds the outputs ----------------------------------------------

def test_predict_on_a_folder_holding_root_dir_writes_nothing_there(trained, tmp_path):
    # root_dir (and so eval's outputs) inside the prediction folder, as with --predict ~
    home = os.path.join(trained.tmp)
    before = {k: v for k, v in folder_hash(home).items()}
    message = run_message(eval_script, trained.env, 'scan', '--annotate',
                          str(tmp_path / 'annotated'), '--predict', home,
                          parser=eval_script.get_eval_parser())
    assert f"inside the --predict folder {home}, where nothing is written" in message
    assert folder_hash(home) == before
    assert not (tmp_path / 'annotated').exists()


# 5, 6. Any number of clusters against any number of classes -----------------------------------

def test_metrics_of_fewer_or_more_clusters_than_classes():
    from utils.metrics import cluster_metrics
    targets = np.array([0, 0, 1, 1, 2, 2])
    fewer = cluster_metrics(np.array([0, 0, 1, 1, 1, 1]), targets, 2)  # num_classes=2 < 3
    assert fewer['acc'] == pytest.approx(4 / 6) and fewer['mapping'][0] == 0
    probs = np.eye(5)[[0, 0, 1, 1, 2, 3]]  # cluster 4, the highest, is empty
    more = cluster_metrics(probs.argmax(1), targets, 3, probs=probs)
    assert more['acc'] == pytest.approx(5 / 6) and sorted(more['mapping']) == [0, 1, 2, 3, 4]
    assert more['mapping'][4] in (-1, 2) and more['acc_top5'] == 1.0


def test_eval_with_the_highest_cluster_empty(trained, tmp_path):
    dataset = ImageFolderDataset(trained.folder)
    kinds = np.asarray(dataset.targets)
    probs = np.full((len(kinds), 5), 0.01)
    probs[np.arange(len(kinds)), kinds] = 0.96  # clusters 3 and 4 empty
    cfg = types.SimpleNamespace(step='scan', val_db_name='folder', num_classes=5,
                                paths={f'{s}_dir': str(tmp_path / s) for s in ('pretext', 'scan')})
    features = np.random.default_rng(0).normal(size=(len(kinds), 8)).astype(np.float32)
    results = eval_script.evaluate_clustering(cfg, 'model', str(tmp_path), dataset, probs,
                                              kinds, 0, features)
    assert results['acc'] == 1.0 and results['cluster_order'][-2:] == [3, 4]
    assert results['cluster_sizes'] == [6, 6, 6, 0, 0]
    assert sorted(os.listdir(tmp_path)) == ['confusion_matrix.png', 'most_confident.png',
                                            'prototypes.png']


def test_two_clusters_of_a_three_class_folder_train_and_evaluate(trained, tmp_path):
    import shutil
    env = make_env(str(tmp_path), trained.folder, classes=2)
    shutil.copytree(os.path.join(trained.env.outputs, 'pretext'),
                    os.path.join(env.outputs, 'pretext'))
    run(scan, env, 'scan')  # step 2's per-epoch metrics: 2 clusters, 3 classes
    results = evaluate(env)
    assert results['cluster_sizes'] and len(results['cluster_sizes']) == 2
    assert 0 < results['acc'] <= 2 / 3 + 1e-9 and len(results['per_class']) == 3
    assert folder_hash(trained.folder) == trained.before


# 7. A full disk while the feature cache is written ---------------------------------------------

class FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(28, 'No space left on device')
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_while_caching_features_is_a_message_and_leaves_nothing(tmp_path,
                                                                          monkeypatch):
    import utils.checkpoint as checkpoint
    from data.feature_cache import write_cached
    out = tmp_path / 'pretext'
    out.mkdir()
    # what a full disk left before temporaries were named as ours
    (out / 'features-train.npy.tmp.npy').write_bytes(b'\0' * 1000)
    (out / 'notes.tmp.npy').write_bytes(b'mine')
    real_stream = checkpoint._Stream  # what numpy writes through: the disk fills at 200 bytes
    monkeypatch.setattr(checkpoint, '_Stream', lambda f: real_stream(FullDisk(f, 200)))
    with pytest.raises(checkpoint.CheckpointError) as error:
        write_cached(str(out / 'features-train.npy'), np.ones((100, 8), np.float32),
                     {'images': 'a', 'backbone': 'b', 'preprocessing': 'c'})
    assert f"could not write {out}/features-train.npy: the disk is full" in str(error.value)
    assert sorted(os.listdir(out)) == ['notes.tmp.npy']  # the old temporary went with the lock


def test_a_killed_cache_writes_temporary_is_removed_by_the_next_run(tmp_path):
    from data.feature_cache import write_cached
    out = tmp_path / 'pretext'
    out.mkdir()
    (out / '.tmp-k1ll3d.npy').write_bytes(b'\0' * 1000)  # atomic_write's, killed
    write_cached(str(out / 'features-val.npy'), np.ones((3, 2), np.float32),
                 {'images': 'a', 'backbone': 'b', 'preprocessing': 'c'})
    assert sorted(os.listdir(out)) == ['features-val.json', 'features-val.npy']


# 10. Bounded input: every value, every file we read --------------------------------------------

# a billion laughs in one value: 9 ** 9 strings if expanded
LAUGHS = '[&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"], ' + ', '.join(
    f'&{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]' for a, b in zip('abcdefgh',
                                                                         'bcdefghi')) + ']'



def config_message(tmp_path, text=None, *opts):
    """The message of step 1 on the digits config with `text` appended (or --opts)."""
    from utils.config import ConfigError, load_config
    exp = tmp_path / 'exp.yml'
    exp.write_text(open('configs/pretext/simclr_digits.yml').read() + (text or ''))
    env = write_env(str(tmp_path), tmp_path / 'out')
    with pytest.raises(ConfigError) as error:
        load_config(env, str(exp), list(opts))
    return str(error.value), str(exp)


@pytest.mark.parametrize('text, expected', [
    ('\nseed: ' + LAUGHS + '\n', "key 'seed' must be int, got list ([['lol', 'lol', "),
    ('\nmodel_kwargs: ' + '[' * 20000 + ']' * 20000 + '\n', 'its YAML is nested too deep'),
    ('\nseed: ' + '9' * 5000 + '\n', 'a number of 5,000 digits is too long in "<unicode string>", line'),
    ('\nseed: 100000000000000000000\n', "key 'seed' must be in [0, 4294967295], got "
                                         "100000000000000000000"),
    ('\ntransformation_kwargs:\n  crop_size: 60000\n',
     "key 'transformation_kwargs.crop_size' must be in [1, 4096], got 60000"),
])
def test_hostile_config_values_are_messages_naming_key_and_file(tmp_path, text, expected):
    message, exp = config_message(tmp_path, text)
    assert message.startswith(exp) and expected in message
    assert len(message) < 1000


@pytest.mark.parametrize('opt', ['optimizer_kwargs.lr=.inf', 'optimizer_kwargs.lr=.nan',
                                 'criterion_kwargs.temperature=-.inf',
                                 'transformation_kwargs.normalize.std=[0.2, .inf, 0.2]'])
def test_infinite_values_are_refused_for_every_numeric_key(tmp_path, opt):
    message, _ = config_message(tmp_path, None, opt)
    key = opt.split('=')[0]
    assert f"key '{key}' must be a finite number" in message or f"key '{key}' must be" in message
    assert 'inf' in message or 'nan' in message


def test_a_names_bomb_is_a_bounded_message(tmp_path):
    from annotation.names import AnnotationError, read_names
    names = tmp_path / 'names.yml'
    for text, shown in ((f'0: {LAUGHS}\n', "got [['lol', 'lol'"),  # as a name
                        (f'? {LAUGHS}\n: name\n', 'found unhashable key')):  # as an id
        names.write_text(text)
        with pytest.raises(AnnotationError) as error:
            read_names(str(names), 3)
        assert len(str(error.value)) < 500 and shown in str(error.value)
    names.write_text('0: ' + '[' * 20000 + '\n')
    with pytest.raises(AnnotationError, match='nested too deep|not valid YAML'):
        read_names(str(names), 3)


# 11. Unicode digits -----------------------------------------------------------------------------

def test_names_and_corrections_take_ascii_digits_only(tmp_path):
    from annotation.corrections import match_corrections, read_rows
    from annotation.names import AnnotationError, read_names
    names = tmp_path / 'names.yml'
    names.write_text('"²": squares\n"1": ones\n', encoding='utf-8')
    with pytest.raises(AnnotationError, match="unknown cluster id '²': the model has clusters"):
        read_names(str(names), 3)
    table = tmp_path / 'corrections.csv'
    for line, problem in ((',,²,1', "`from` must be a cluster of the model (0 to 2), got '²'"),
                          ('٣,a.png,0,1', "no image has id '٣' in this export")):
        table.write_text(f'id,path,from,to\n{line}\n', encoding='utf-8')
        with pytest.raises(AnnotationError, match=re.escape(problem)):
            match_corrections(str(table), read_rows(str(table)), ['a.png'], np.array([0]), 3)


# 12. --names / --corrections that are not regular files -----------------------------------------

def test_names_from_a_pipe_a_fifo_or_a_folder(tmp_path):
    from annotation.names import AnnotationError, read_names
    fifo = tmp_path / 'fifo.yml'
    os.mkfifo(fifo)  # nobody writes to it: a message, never a hang
    with pytest.raises(AnnotationError, match=f"names file {fifo} is a pipe that nothing was "
                                              f"written to"):
        read_names(str(fifo), 3)
    with pytest.raises(AnnotationError, match=f"names file {tmp_path} is a folder, not a file"):
        read_names(str(tmp_path), 3)
    read, write = os.pipe()  # as <(cat names.yml): read once, the same content every time
    os.write(write, b'0: zero\n')
    os.close(write)
    path = f'/proc/self/fd/{read}'
    try:
        assert read_names(path, 3) == read_names(path, 3) == {0: 'zero'}
    finally:
        os.close(read)
    with pytest.raises(AnnotationError, match=f"names file not found: {tmp_path}/none.yml"):
        read_names(str(tmp_path / 'none.yml'), 3)


def test_corrections_that_are_a_folder_or_a_fifo(tmp_path):
    from annotation.corrections import read_rows
    from annotation.names import AnnotationError
    with pytest.raises(AnnotationError, match=f"corrections file {tmp_path} is a folder"):
        read_rows(str(tmp_path))
    os.mkfifo(tmp_path / 'c.csv')
    with pytest.raises(AnnotationError, match="is a pipe that nothing was written to"):
        read_rows(str(tmp_path / 'c.csv'))


# 14. The gallery: no merge or move into nothing, one definition of blank, the umask -------------

def test_the_last_cluster_cannot_be_merged_or_moved_into_nothing(labelled, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from tests.browser import open_page
    dataset, probs = labelled
    two = np.stack([probs[:, 0], probs[:, 1] + probs[:, 2]], axis=1)
    out = tmp_path / 'out'
    export(out, (dataset, two))
    open_page(browser, out)
    section = browser.find_element(By.ID, 'cluster-1')
    Select(section.find_element(By.CSS_SELECTOR, 'p.merge select')).select_by_value('0')
    section.find_element(By.CSS_SELECTOR, 'p.merge button').click()  # 1 into 0: 0 is the last
    last = browser.find_element(By.ID, 'cluster-0')
    assert last.find_element(By.CSS_SELECTOR, 'p.merge select').get_attribute('disabled')
    button = last.find_element(By.CSS_SELECTOR, 'p.merge button')
    assert button.get_attribute('disabled')
    browser.execute_script("arguments[0].disabled = false; arguments[0].click()", button)
    browser.execute_script("const s = document.getElementById('move-target');"
                           "s.replaceChildren(); document.getElementById('move').disabled = "
                           "false; document.getElementById('move').click()")
    sections = browser.execute_script(
        "return [...document.querySelectorAll('section.cluster')].map(s => s.dataset.cluster)")
    assert sections == ['0']  # the last cluster is still there, merged into nothing
    assert 'Cluster 1 (' in browser.find_element(By.ID, 'merged').text
    assert 'merged into cluster 1' not in browser.find_element(By.ID, 'merged').text


def test_blank_is_one_definition_for_the_page_and_eval(labelled, tmp_path, browser):
    from tests.browser import open_page
    from utils.text import is_blank
    out = tmp_path / 'out'
    export(out, labelled)
    open_page(browser, out)
    chars = [chr(c) for c in list(range(0x3001)) + [0xfeff, 0xfffd, 0x1f600]
             if not 0xd800 <= c < 0xe000]
    page = browser.execute_script(
        "const blank = new RegExp(`^${window.SCAN_GALLERY.blank}*$`);"
        "return arguments[0].map(c => blank.test(c))", chars)
    assert page == [is_blank(c) for c in chars]
    assert is_blank('\x85\x1c \u200b') and not is_blank('\x85a')
    from annotation.names import AnnotationError, read_names
    names = tmp_path / 'names.yml'
    names.write_text('0: "\\x85\\x1c"\n')
    with pytest.raises(AnnotationError, match='the name of cluster 0 must be non-empty text'):
        read_names(str(names), 3)


# 13. Damaged outputs of our own: a message naming the file and what to do ---------------------

@pytest.mark.parametrize('content', [b'', b'garbage', b'\x93NUMPY\x01\x00v\x00{"descr": "<f4"'])
def test_a_damaged_feature_cache_is_recomputed(tmp_path, content):
    from data.feature_cache import read_cached, write_cached
    path = str(tmp_path / 'features-train.npy')
    key = {'images': 'a', 'backbone': 'b', 'preprocessing': 'c'}
    write_cached(path, np.ones((4, 2), np.float32), key)
    with open(path, 'wb') as f:
        f.write(content)
    array, why = read_cached(path, key, 4)
    assert array is None and why.startswith(f"{path} is damaged")
    write_cached(path, np.ones((4, 2), np.float32), key)
    with open(path[:-4] + '.json', 'w') as f:
        f.write('{"key": [1, 2')  # a truncated key file
    array, why = read_cached(path, key, 4)
    assert array is None and 'features-train.json is damaged' in why
    np.save(path, np.full((4, 2), np.nan, np.float32))
    write_cached(path, np.ones((4, 2), np.float32), key)
    np.save(path, np.full((4, 2), np.nan, np.float32))
    assert read_cached(path, key, 4)[1].endswith('holds values that are not finite (NaN or '
                                                 'infinite)')
    assert read_cached(path, key, 5)[0] is None  # features of another number of images


def test_a_cache_path_that_is_a_folder_is_a_message(tmp_path):
    from data.feature_cache import write_cached
    from utils.checkpoint import CheckpointError
    (tmp_path / 'features-train.npy').mkdir()
    (tmp_path / 'features-train.npy' / 'mine').write_text('mine')
    with pytest.raises(CheckpointError, match='features-train.npy is a folder where this code '
                                              'writes a file: move it away'):
        write_cached(str(tmp_path / 'features-train.npy'), np.ones((2, 2), np.float32),
                     {'images': 'a', 'backbone': 'b', 'preprocessing': 'c'})
    assert (tmp_path / 'features-train.npy' / 'mine').read_text() == 'mine'


@pytest.mark.parametrize('name, content, expected', [
    ('fingerprint.json', b'{"train": {"kind": "fi', 'fingerprint.json is damaged (JSONDecodeError'),
    ('fingerprint.json', b'[1, 2]', 'fingerprint.json is damaged (not a record of images)'),
    ('fingerprint.json', b'{"train": 3, "val": 4}', 'fingerprint.json is damaged (not a record'),
    ('topk-train-neighbors.npy', b'\x93NUMPY trunc', 'topk-train-neighbors.npy is damaged ('),
    ('topk-val-neighbors.npy', b'', 'topk-val-neighbors.npy is damaged ('),
])
def test_damaged_step_1_outputs_are_messages(trained, tmp_path, name, content, expected):
    import shutil
    env = make_env(str(tmp_path), trained.folder)
    shutil.copytree(os.path.join(trained.env.outputs, 'pretext'),
                    os.path.join(env.outputs, 'pretext'))
    with open(os.path.join(env.outputs, 'pretext', name), 'wb') as f:
        f.write(content)
    message = run_message(scan, env, 'scan')
    assert expected in message and 'Traceback' not in message
    assert ('Delete it to go on without that check' in message if name.endswith('.json')
            else 'rerun simclr.py with the same config' in message)
    assert folder_hash(trained.folder) == trained.before


def test_neighbours_of_images_that_do_not_exist_are_refused(tmp_path):
    from utils.mining import DamagedNeighbors, read_neighbors
    np.save(tmp_path / 'n.npy', np.array([[0, 5], [1, 0]]))
    with pytest.raises(DamagedNeighbors, match='holds indices of images that do not exist'):
        read_neighbors(str(tmp_path / 'n.npy'))
    np.save(tmp_path / 'n.npy', np.ones((2, 3), np.float32))
    with pytest.raises(DamagedNeighbors, match=r'holds float32 \(2, 3\), not neighbour indices'):
        read_neighbors(str(tmp_path / 'n.npy'))


def test_a_lock_naming_an_impossible_pid_is_taken_over(tmp_path, capsys):
    from utils.lock import lock_output_folder, release_output_locks
    (tmp_path / '.lock').write_text(json.dumps({'pid': 10 ** 20, 'host': os.uname().nodename}))
    lock_output_folder(str(tmp_path))
    release_output_locks()
    assert os.listdir(tmp_path) == []


def damaged_model(trained, tmp_path, **changes):
    import torch
    saved = torch.load(os.path.join(trained.env.outputs, 'scan', 'model.pth.tar'),
                       weights_only=True)
    saved.update(changes)
    path = str(tmp_path / 'model.pth.tar')
    torch.save(saved, path)
    return path


@pytest.mark.parametrize('changes, expected', [
    ({'head': 99}, "its best head is 99, but it has "),
    ({'head': 'best'}, "its 'head' must be a head index, got a str"),
    ({'config': [1, 2]}, "its saved 'config' is not the mapping this code writes"),
    ({'config': {'transformation_kwargs': {'crop_size': 16, 'resize': 16}}},
     "its saved 'config' is not the mapping this code writes"),
])
def test_a_damaged_model_file_is_a_message(trained, tmp_path, changes, expected):
    path = damaged_model(trained, tmp_path, **changes)
    message = run_message(eval_script, trained.env, 'scan', '--model', path,
                          parser=eval_script.get_eval_parser())
    assert f"{path} is damaged: {expected}" in message and 'rerun the step' in message


def test_a_folder_1500_levels_deep_is_listed(tmp_path, monkeypatch):
    from tests.hostile_files import picture
    deep = str(tmp_path / 'photos')
    os.makedirs(deep)
    monkeypatch.chdir(deep)  # relative mkdir: one short path per level
    for _ in range(1500):
        os.mkdir('d')
        os.chdir('d')
    picture(0).save('deep.png')
    monkeypatch.chdir(tmp_path)
    try:
        dataset = ImageFolderDataset(deep)
        assert len(dataset.paths) == 1 and dataset.paths[0].endswith('/d' * 1500 + '/deep.png')
        assert dataset.load_image(0).size == (12, 10)
    finally:  # pytest's clean-up (shutil.rmtree) recurses too: take the tree down here
        os.remove(os.path.join(deep, *['d'] * 1500, 'deep.png'))
        for depth in range(1500, 0, -1):
            os.rmdir(os.path.join(deep, *['d'] * depth))


# 8, 9. Weights files: the file given is the only source; nothing that is not finite -------------

def test_weights_with_no_tensors_never_go_to_the_hub(tmp_path, monkeypatch):
    import huggingface_hub
    import torch
    from models.timm_backbone import WeightsUnavailable, timm_backbone, load_weights_file

    def no_hub(*args, **kwargs):
        raise AssertionError('the hub was asked')
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', no_hub)
    path = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'epoch': 3}, path)
    net = timm_backbone('timm/resnet18.a1_in1k')['backbone']
    with pytest.raises(WeightsUnavailable, match=f"the weights file {path} holds no tensors"):
        load_weights_file(net, path, 'resnet18.a1_in1k')


def test_weights_that_are_not_finite_are_refused_naming_the_file(tmp_path):
    import torch
    from models import ContrastiveModel, build_backbone
    from models.loading import load_contrastive_weights
    from utils.checkpoint import WeightsMismatch
    model = ContrastiveModel(build_backbone('small'))
    state = model.state_dict()
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float('nan'))
    path = str(tmp_path / 'model.pth.tar')
    torch.save({'model': state}, path)
    with pytest.raises(WeightsMismatch, match=f"weights in {path} are not finite \\(NaN or "
                                              f"infinite values in {first}\\)"):
        load_contrastive_weights(ContrastiveModel(build_backbone('small')), path)


def test_features_that_are_not_finite_name_the_weights():
    import torch
    from data.feature_cache import NonFiniteFeatures, check_finite
    features = torch.ones(4, 3)
    features[2, 1] = float('inf')
    with pytest.raises(NonFiniteFeatures, match=r'not finite \(NaN or infinite\) for 1 of 4 '
                                                r'images: check its weights \(w.pth\)'):
        check_finite(features, 'w.pth')
