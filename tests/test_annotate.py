"""The folder pipeline end to end: three steps on a generated folder of good, broken and
non-image files, then eval.py --annotate (CSV, names, grids, gallery) and --predict."""
import csv
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import yaml
from scipy.optimize import linear_sum_assignment

import eval as eval_script
import scan
import selflabel
import simclr
from tests.fake_datasets import write_bad_files
from tests.folder_images import KINDS, folder_state, write_pattern_folder
from tests.pipeline_run import folder_outputs, write_env
from utils.runtime import get_args_parser, run_cli

PER_KIND = 20
CONFIGS = {'pretext': 'configs/pretext/simclr_folder.yml', 'scan': 'configs/scan/scan_folder.yml',
           'selflabel': 'configs/selflabel/selflabel_folder.yml'}
# Small and quick, but the same configs a user runs; horizontal flips are harmless here.
STEP_OPTS = {'pretext': ['epochs=15', 'batch_size=30', 'num_neighbors=5'],
             'scan': ['epochs=10', 'batch_size=30', 'num_neighbors=5'],
             'selflabel': ['epochs=3', 'batch_size=30']}


class Run:
    def __init__(self, root):
        self.root = root
        self.folder = os.path.join(root, 'my photos')  # a space: paths are quoted in the HTML
        self.truth = write_pattern_folder(self.folder, PER_KIND)
        self.bad = write_bad_files(self.folder)
        self.env = write_env(root, os.path.join(root, 'outputs'))
        self.opts = [f'folder={self.folder}', 'num_classes=3', 'num_workers=0']

    def argv(self, step, *extra, opts=()):
        return ['--config_env', self.env, '--config_exp', CONFIGS[step], *extra,
                '--opts', *self.opts, *STEP_OPTS[step], *opts]

    def args(self, step):
        return get_args_parser('test').parse_args(self.argv(step))

    def eval(self, step, *extra, opts=()):
        """eval.py as the command line runs it: a user error exits with its message."""
        return run_cli(eval_script.main, eval_script.get_eval_parser(),
                       self.argv(step, *extra, opts=opts))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """The three steps, once for the module, on 60 pictures of 3 kinds plus 4 bad files."""
    run = Run(str(tmp_path_factory.mktemp('pipeline')))
    run.before = folder_state(run.folder)
    simclr.main(run.args('pretext'))
    scan.main(run.args('scan'))
    selflabel.main(run.args('selflabel'))
    return run


def read_csv(path):
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def hungarian_acc(clusters, kinds):
    classes = sorted(set(kinds))
    counts = np.zeros((max(clusters) + 1, len(classes)), dtype=int)
    for c, k in zip(clusters, kinds):
        counts[c, classes.index(k)] += 1
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return counts[rows, cols].sum() / len(kinds)


@pytest.fixture(scope='module')
def annotated(run):
    out = os.path.join(run.root, 'annotations')
    results = run.eval('selflabel', '--annotate', out)
    return out, results


def test_csv_has_one_row_per_readable_image(run, annotated):
    out, results = annotated
    header, rows = read_csv(os.path.join(out, 'annotations.csv'))
    assert header == ['path', 'cluster', 'confidence', 'name']  # unlabeled: no label column
    assert [row[0] for row in rows] == sorted(run.truth)  # every good image once, none bad
    assert len(rows) == 3 * PER_KIND
    for path, cluster, confidence, name in rows:
        assert 0 <= int(cluster) < 3 and 1 / 3 <= float(confidence) <= 1
        assert name == f"cluster {cluster}"
    assert results['annotations'] == os.path.join(out, 'annotations.csv')
    summary = json.load(open(os.path.join(out, 'summary.json')))
    assert sorted(s['path'] for s in summary['skipped']) == sorted(run.bad)
    assert [c['size'] for c in summary['clusters']] == \
        [sum(int(r[1]) == k for r in rows) for k in range(3)]
    assert folder_state(run.folder) == run.before  # nothing written, moved or deleted there


def test_folder_clusters_are_mostly_right(run, annotated):
    _, rows = read_csv(os.path.join(annotated[0], 'annotations.csv'))
    acc = hungarian_acc([int(r[1]) for r in rows], [run.truth[r[0]] for r in rows])
    assert acc >= 0.8, acc  # chance is about 0.4 for 3 balanced clusters


def test_grids_gallery_and_names_template(run, annotated):
    out, _ = annotated
    _, rows = read_csv(os.path.join(out, 'annotations.csv'))
    sizes = [sum(int(r[1]) == k for r in rows) for k in range(3)]
    for k, size in enumerate(sizes):
        assert os.path.isfile(os.path.join(out, 'prototypes', f'cluster_{k:03d}.png')) == (size > 0)
    page = open(os.path.join(out, 'index.html'), encoding='utf-8').read()
    for k in range(3):
        assert f'id="cluster-{k}"' in page and f'data-size="{sizes[k]}"' in page
    thumbs = os.listdir(os.path.join(out, 'thumbs'))
    assert thumbs and all(f'src="thumbs/{t}"' in page for t in thumbs)
    assert 'my%20photos/' in page and 'notes.txt' in page  # link to originals; skipped list
    template = yaml.safe_load(open(os.path.join(out, 'names.yml')))
    assert template == {k: f"cluster {k}" for k in range(3)}


def test_names_file_sets_the_names(run, tmp_path):
    names = tmp_path / 'names.yml'
    names.write_text('0: discs & <b>dots</b>\n"2": checkerboards\n', encoding='utf-8')
    out = tmp_path / 'named'
    run.eval('selflabel', '--annotate', str(out), '--names', str(names))
    _, rows = read_csv(out / 'annotations.csv')
    expected = {'0': 'discs & <b>dots</b>', '1': 'cluster 1', '2': 'checkerboards'}
    assert all(row[3] == expected[row[1]] for row in rows)
    page = (out / 'index.html').read_text(encoding='utf-8')
    assert 'discs &amp; &lt;b&gt;dots&lt;/b&gt;' in page and '<b>dots' not in page
    assert yaml.safe_load((out / 'names.yml').read_text())[0] == 'discs & <b>dots</b>'


@pytest.mark.parametrize('content, message', [
    ('7: cats\n', "unknown cluster id 7: the model has clusters 0 to 2"),
    ('cats: 1\n', "unknown cluster id 'cats'"),
    ('- cats\n- dogs\n', "must map cluster ids to names"),
    ('1: ""\n', "the name of cluster 1 must be non-empty text"),
    ('1: [a, b]\n', "the name of cluster 1 must be non-empty text"),
    ('1: a\n"1": b\n', "cluster 1 is named twice"),
    ('1: [unclosed\n', "not valid YAML"),
])
def test_bad_names_file_is_an_error_naming_it(run, tmp_path, content, message):
    names = tmp_path / 'bad names.yml'
    names.write_text(content)
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as error:
        run.eval('selflabel', '--annotate', str(out), '--names', str(names))
    assert str(names) in str(error.value.code) and message in str(error.value.code)
    assert not out.exists()  # checked before anything is written


def test_missing_names_file(run, tmp_path):
    with pytest.raises(SystemExit, match='names file not found: .*nowhere.yml'):
        run.eval('selflabel', '--annotate', str(tmp_path / 'o'), '--names',
                 str(tmp_path / 'nowhere.yml'))


def test_predict_assigns_new_images(run, annotated, tmp_path):
    _, train_rows = read_csv(os.path.join(annotated[0], 'annotations.csv'))
    new = tmp_path / 'new images'
    truth = write_pattern_folder(str(new), 4, seed=1, prefix='new')
    (new / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    before = folder_state(new)
    out = tmp_path / 'predicted'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(out))
    header, rows = read_csv(out / 'annotations.csv')
    assert header == ['path', 'cluster', 'confidence', 'name']
    assert [r[0] for r in rows] == sorted(truth) and len(rows) == 12
    # the new images land in the cluster that holds their kind in the training folder
    cluster_of_kind = {}
    for kind in KINDS:
        clusters = [int(r[1]) for r in train_rows if run.truth[r[0]] == kind]
        cluster_of_kind[kind] = max(set(clusters), key=clusters.count)
    agree = np.mean([cluster_of_kind[truth[r[0]]] == int(r[1]) for r in rows])
    assert agree >= 0.75, agree
    assert 'broken.png' in (out / 'index.html').read_text(encoding='utf-8')
    assert folder_state(new) == before


def test_predict_on_a_labelled_tree_names_clusters_by_class(run, tmp_path):
    new = tmp_path / 'tree'
    truth = write_pattern_folder(str(new), 4, seed=2, labelled=True)
    out = tmp_path / 'predicted'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(out))
    header, rows = read_csv(out / 'annotations.csv')
    assert header == ['path', 'cluster', 'confidence', 'name', 'label']
    assert all(r[4] == truth[r[0]] for r in rows)
    assert all(r[3] in KINDS for r in rows)  # Hungarian-matched class names by default
    assert np.mean([r[3] == r[4] for r in rows]) >= 0.75
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['metrics']['acc'] >= 0.75


def test_labelled_folder_gives_labels_and_matched_names(run, tmp_path):
    """The trained model on a labelled tree of the same kinds (its own config, --model)."""
    tree = tmp_path / 'labelled'
    truth = write_pattern_folder(str(tree), 5, seed=3, labelled=True)
    model = os.path.join(folder_outputs(os.path.join(run.root, 'outputs'), run.folder),
                         'selflabel', 'model.pth.tar')
    out = tmp_path / 'out'
    results = run.eval('selflabel', '--model', model, '--annotate', str(out),
                       opts=[f'folder={tree}'])
    header, rows = read_csv(out / 'annotations.csv')
    assert header == ['path', 'cluster', 'confidence', 'name', 'label']
    assert [r[0] for r in rows] == sorted(truth) and all(r[4] == truth[r[0]] for r in rows)
    matched = {int(k): v for k, v in results['cluster_to_class'].items()}
    assert all(r[3] == matched[int(r[1])] for r in rows)  # names default to the matched class
    assert results['acc'] >= 0.75 and np.mean([r[3] == r[4] for r in rows]) == results['acc']
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['metrics']['acc'] == results['acc']


def test_rerun_leaves_no_stale_thumbnails(run, tmp_path):
    out = tmp_path / 'again'
    out.mkdir()
    (out / 'thumbs').mkdir()
    (out / 'thumbs' / '9999999.png').write_bytes(b'stale')
    (out / 'thumbs' / 'mine.txt').write_text('not ours: kept')
    run.eval('selflabel', '--annotate', str(out))
    assert not (out / 'thumbs' / '9999999.png').exists() and (out / 'thumbs' / 'mine.txt').exists()


def test_scan_model_annotates_too(run, tmp_path):
    run.eval('scan', '--annotate', str(tmp_path / 'scan'))
    _, rows = read_csv(tmp_path / 'scan' / 'annotations.csv')
    assert len(rows) == 3 * PER_KIND


def test_pretext_model_has_no_clusters(run, tmp_path):
    with pytest.raises(SystemExit, match='pretext .*no clusters'):
        run.eval('pretext', '--annotate', str(tmp_path / 'x'))
    assert not (tmp_path / 'x').exists()


def test_output_folder_inside_the_images_is_refused(run):
    inside = os.path.join(run.folder, 'annotations')
    with pytest.raises(SystemExit, match='inside the image folder'):
        run.eval('selflabel', '--annotate', inside)
    assert not os.path.exists(inside)


def test_names_and_predict_need_annotate(run, tmp_path):
    with pytest.raises(SystemExit, match='go with --annotate'):
        run.eval('selflabel', '--predict', str(tmp_path))


def test_plain_eval_is_unchanged(run):
    results = run.eval('selflabel')
    assert 'annotations' not in results and 'acc' not in results  # unlabeled folder
    assert sum(results['cluster_sizes']) == 3 * PER_KIND
    eval_dir = os.path.dirname(results['figures'][0])
    assert os.path.isfile(os.path.join(eval_dir, 'metrics.json'))
    assert os.path.isfile(os.path.join(eval_dir, 'prototypes.png'))


# ------------------------------------------------------------------------ the gallery in Chromium

def find_browser():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_gallery_opens_in_headless_chromium(annotated, tmp_path):
    browser, driver_path = find_browser(), shutil.which('chromedriver')
    if browser is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    out, _ = annotated
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                 '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--window-size=1200,900',
                 f'--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}'):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get('file://' + os.path.join(os.path.abspath(out), 'index.html'))
        sections = driver.execute_script(
            "return [...document.querySelectorAll('section.cluster')].map("
            "s => [s.id, s.querySelectorAll('img').length, Number(s.dataset.size)])")
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete, "
            "i.naturalWidth])")
        driver.save_screenshot(str(tmp_path / 'gallery.png'))
    finally:
        driver.quit()
    assert [s[0] for s in sections] == ['cluster-0', 'cluster-1', 'cluster-2']
    assert all(count > 0 for _, count, size in sections if size > 0)
    assert len(images) >= 3 and all(complete and width > 0 for _, complete, width in images), \
        [src for src, complete, width in images if not (complete and width > 0)]
    assert (tmp_path / 'gallery.png').stat().st_size > 1000


def test_readme_walks_through_the_folder_configs():
    """The README's walk-through names the configs and flags that exist."""
    readme = open('README.md', encoding='utf-8').read()
    section = readme.split('## Your own images', 1)[1].split('\n## ', 1)[0]
    for config in CONFIGS.values():
        assert config in section
    for flag in ('--annotate', '--names', '--predict', 'folder=', 'num_classes='):
        assert flag in section
