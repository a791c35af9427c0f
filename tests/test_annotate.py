"""The folder pipeline end to end: three steps on a generated folder of good, broken and
non-image files, then eval.py --annotate (CSV, names, grids, gallery), --predict, --names and
--corrections, and the gallery driven in headless Chromium: names typed and corrections made in
the page, downloaded, and read back by eval.py."""
import csv
import json
import os

import numpy as np
import pytest
import yaml
from scipy.optimize import linear_sum_assignment

import eval as eval_script
import scan
import selflabel
import simclr
from tests.fake_datasets import write_bad_files
from tests.browser import open_page, wait_for_download
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
    assert header == ['path', 'cluster', 'confidence', 'name', 'source', 'id',
                      'x', 'y', 'duplicate_group', 'outlier_score']  # no label
    assert [row[0] for row in rows] == sorted(run.truth)  # every good image once, none bad
    assert len(rows) == 3 * PER_KIND
    for i, (path, cluster, confidence, name, source, image_id, x, y, _, outlier) in \
            enumerate(rows):
        assert 0 <= int(cluster) < 3 and 1 / 3 <= float(confidence) <= 1
        assert name == f"cluster {cluster}" and source == 'model' and image_id == str(i)
        assert 0 <= float(x) <= 1 and 0 <= float(y) <= 1 and 0 <= float(outlier) <= 1
    assert os.path.isfile(os.path.join(out, 'map.png'))  # the map of the model's features
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
    assert '<script src="gallery-data.js"></script>' in page and 'notes.txt' in page  # skipped
    data = gallery_data(out)
    assert sorted(os.listdir(os.path.join(out, 'thumbs'))) == \
        [f'{i:07d}.png' for i in range(len(rows))]  # one per image, named by its id
    assert [data['prefix'] + tail for tail in data['tails']] == [r[0] for r in rows]
    assert data['hrefs'][0].startswith('../my%20photos/')  # links to the originals
    assert [c['size'] for c in data['clusters']] == sizes
    template = yaml.safe_load(open(os.path.join(out, 'names.yml')))
    assert template == {k: f"cluster {k}" for k in range(3)}


def gallery_data(out):
    text = open(os.path.join(out, 'gallery-data.js'), encoding='ascii').read()
    return json.loads(text[text.index('=') + 1:].rstrip().rstrip(';'))


def test_names_file_sets_the_names(run, tmp_path):
    names = tmp_path / 'names.yml'
    names.write_text('0: discs & <b>dots</b>\n"2": checkerboards\n', encoding='utf-8')
    out = tmp_path / 'named'
    run.eval('selflabel', '--annotate', str(out), '--names', str(names))
    _, rows = read_csv(out / 'annotations.csv')
    expected = {'0': 'discs & <b>dots</b>', '1': 'cluster 1', '2': 'checkerboards'}
    assert all(row[3] == expected[row[1]] for row in rows)
    assert gallery_data(out)['clusters'][0]['name'] == 'discs & <b>dots</b>'
    assert '<b>dots' not in (out / 'index.html').read_text(encoding='utf-8') + \
        (out / 'gallery-data.js').read_text(encoding='ascii')
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
    assert header == ['path', 'cluster', 'confidence', 'name', 'source', 'id',
                      'x', 'y', 'duplicate_group', 'outlier_score']
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
    assert header == ['path', 'cluster', 'confidence', 'name', 'label', 'source', 'id',
                      'x', 'y', 'duplicate_group', 'outlier_score']
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
    assert header == ['path', 'cluster', 'confidence', 'name', 'label', 'source', 'id',
                      'x', 'y', 'duplicate_group', 'outlier_score']
    assert [r[0] for r in rows] == sorted(truth) and all(r[4] == truth[r[0]] for r in rows)
    matched = {int(k): v for k, v in results['cluster_to_class'].items()}
    assert all(r[3] == matched[int(r[1])] for r in rows)  # names default to the matched class
    assert results['acc'] >= 0.75 and np.mean([r[3] == r[4] for r in rows]) == results['acc']
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['metrics']['acc'] == results['acc']


def test_predict_on_more_classes_than_clusters(run, tmp_path):
    """Five class folders for a model of three clusters: exported, three names."""
    new = tmp_path / 'tree'
    truth = write_pattern_folder(str(new), 3, seed=4, labelled=True)
    for extra in ('more', 'yet more'):
        truth.update(write_pattern_folder(str(new / extra), 1, seed=5, prefix=extra))
    out = tmp_path / 'predicted'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(out))
    _, rows = read_csv(out / 'annotations.csv')
    assert len(rows) == len(truth) and {r[4] for r in rows} == set(KINDS) | {'more', 'yet more'}
    assert yaml.safe_load((out / 'names.yml').read_text()).keys() == {0, 1, 2}


def test_rerun_into_an_export_replaces_it(run, annotated, tmp_path):
    out = tmp_path / 'again'
    run.eval('selflabel', '--annotate', str(out))
    (out / 'my notes.txt').write_text('kept')
    run.eval('selflabel', '--annotate', str(out))
    assert (out / 'my notes.txt').read_text() == 'kept'
    assert (out / 'annotations.csv').read_bytes() == \
        open(os.path.join(annotated[0], 'annotations.csv'), 'rb').read()


def test_user_frames_in_a_thumbs_folder_are_never_touched(run, tmp_path):
    """The reported loss: numbered video frames in OUT/thumbs, that folder (or a link to it)
    being the --predict folder, emptied by the clean-up of an earlier export."""
    out, frames = tmp_path / 'out', tmp_path / 'frames'
    write_pattern_folder(str(frames), 2, seed=6, prefix='0000')
    for i, name in enumerate(sorted(os.listdir(frames))):
        (frames / name).rename(frames / f'{i:07d}.png')
    before = folder_state(frames)
    run.eval('selflabel', '--annotate', str(out))  # an earlier export: OUT/thumbs is ours
    for name in os.listdir(out / 'thumbs'):
        os.remove(out / 'thumbs' / name)
    os.rmdir(out / 'thumbs')
    os.symlink(frames, out / 'thumbs')
    for predict in (str(out / 'thumbs'), str(frames)):
        for force in ((), ('--force',)):
            with pytest.raises(SystemExit, match='thumbs/0000000.png.* already exist'):
                run.eval('selflabel', '--predict', predict, '--annotate', str(out), *force)
    assert folder_state(frames) == before


def test_a_folder_of_other_files_is_refused(run, tmp_path):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'index.html').write_text('my page')
    with pytest.raises(SystemExit, match='not an earlier export .*--force'):
        run.eval('selflabel', '--annotate', str(out))
    with pytest.raises(SystemExit, match='index.html already exist'):
        run.eval('selflabel', '--annotate', str(out), '--force')
    assert os.listdir(out) == ['index.html'] and (out / 'index.html').read_text() == 'my page'


def test_bad_corrections_file_names_the_line_and_writes_nothing(run, annotated, tmp_path):
    _, rows = read_csv(os.path.join(annotated[0], 'annotations.csv'))
    bad = tmp_path / 'corrections.csv'
    to = (int(rows[0][1]) + 1) % 3
    bad.write_text(f'id,path,from,to\n0,{rows[0][0]},{rows[0][1]},{to}\n'
                   f',{run.folder}/nope.png,0,1\n')
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match=r'corrections.csv, line 3: .*nope.png\' is not an image'):
        run.eval('selflabel', '--annotate', str(out), '--corrections', str(bad))
    assert not out.exists()


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

def js(driver, script, *args):
    return driver.execute_script(script, *args)


def sections(driver):
    """[(cluster, size)] of the cluster sections on the page."""
    return [tuple(s) for s in js(
        driver, "return [...document.querySelectorAll('section.cluster')].map("
                "s => [Number(s.dataset.cluster), Number(s.dataset.size)])")]


def nothing_injected(driver):
    """No script ran from a name and no element was made from one: only the page's own."""
    own = ['gallery-data.js', 'gallery.js', 'naming.js', 'map.js']
    found = js(driver, "return [window.pwned === undefined, "
                       "Array.from(document.scripts, s => s.getAttribute('src')), "
                       "document.querySelectorAll('[onerror], b, img[src=\"x\"]').length]")
    return found[0] is True and found[2] == 0 and found[1][:2] == own[:2] \
        and all(src in own for src in found[1])


def pick(driver, image_id, keyboard=False):
    """Select an image: a click, or Enter on its (focused) button."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    button = driver.find_element(By.CSS_SELECTOR, f'figure[data-id="{image_id}"] button.pick')
    if keyboard:
        js(driver, "arguments[0].focus()", button)
        driver.switch_to.active_element.send_keys(Keys.ENTER)
    else:  # centred first: at the top of the view the sticky tool bar would take the click
        js(driver, "arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()


def move_selected(driver, cluster):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select
    Select(driver.find_element(By.ID, 'move-target')).select_by_value(str(cluster))
    driver.find_element(By.ID, 'move').send_keys(Keys.ENTER)  # the keyboard way


def merge(driver, cluster, into):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    section = driver.find_element(By.ID, f'cluster-{cluster}')
    Select(section.find_element(By.CSS_SELECTOR, 'p.merge select')).select_by_value(str(into))
    section.find_element(By.CSS_SELECTOR, 'p.merge button').click()


def type_name(driver, cluster, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    field = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="Name of cluster {cluster}"]')
    field.clear()
    field.send_keys(name, Keys.ENTER)


def save(driver, button, name):
    from selenium.webdriver.common.by import By
    driver.find_element(By.ID, button).click()
    return wait_for_download(driver.downloads, name)


def test_gallery_opens_in_headless_chromium(annotated, browser, tmp_path):
    out, _ = annotated
    open_page(browser, out)
    assert [k for k, _ in sections(browser)] == [0, 1, 2]
    sizes = [c['size'] for c in gallery_data(out)['clusters']]
    assert [size for _, size in sections(browser)] == sizes
    js(browser, "document.querySelectorAll('section.cluster').forEach("
                "s => s.scrollIntoView())")  # lazy thumbnails load once near the view
    js(browser, "window.scrollTo(0, document.body.scrollHeight)")
    from selenium.webdriver.support.ui import WebDriverWait
    images = WebDriverWait(browser, 20).until(lambda d: (lambda found: found if all(
        complete and width > 0 for _, complete, width, _ in found) else None)(js(
            d, "return [...document.querySelectorAll('#clusters img')].map(i => "
               "[i.getAttribute('src'), i.complete, "
               "i.naturalWidth, i.loading])")))
    assert len(images) == 3 * (12 + 6) and all(lazy == 'lazy' for *_, lazy in images)
    browser.save_screenshot(str(tmp_path / 'gallery.png'))
    assert (tmp_path / 'gallery.png').stat().st_size > 1000 and nothing_injected(browser)


def test_show_more_pages_through_a_cluster(annotated, browser):
    out, _ = annotated
    open_page(browser, out)
    from selenium.webdriver.common.by import By
    section = browser.find_element(By.ID, 'cluster-0')
    shown = len(section.find_elements(By.CSS_SELECTOR, 'figure'))
    size = gallery_data(out)['clusters'][0]['size']
    assert shown == min(size, 18)
    section.find_element(By.CSS_SELECTOR, 'button.show-more').click()
    section = browser.find_element(By.ID, 'cluster-0')
    assert len(section.find_elements(By.CSS_SELECTOR, 'figure')) == size
    assert not section.find_elements(By.CSS_SELECTOR, 'button.show-more')


HOSTILE_NAME = ' <img src=x onerror="window.pwned=1"> "Cats" & \'dogs\': café 猫 $x$ \\ #1 yes'


def test_names_typed_in_the_page_read_back_through_names(run, annotated, browser, tmp_path):
    out, _ = annotated
    open_page(browser, out)
    type_name(browser, 1, HOSTILE_NAME)
    assert HOSTILE_NAME.strip() in js(browser, "return document.getElementById('nav').textContent")
    assert nothing_injected(browser)
    names = save(browser, 'save-names', 'names.yml')
    assert yaml.safe_load(open(names, encoding='utf-8')) == \
        {0: 'cluster 0', 1: HOSTILE_NAME, 2: 'cluster 2'}
    again = tmp_path / 'named'
    run.eval('selflabel', '--annotate', str(again), '--names', names)
    _, rows = read_csv(again / 'annotations.csv')
    assert {r[3] for r in rows if r[1] == '1'} == {HOSTILE_NAME}
    assert {r[3] for r in rows if r[1] == '0'} == {'cluster 0'}
    assert yaml.safe_load((again / 'names.yml').read_text(encoding='utf-8'))[1] == HOSTILE_NAME


def test_corrections_made_in_the_page_are_applied(run, annotated, browser, tmp_path):
    out, _ = annotated
    _, model_rows = read_csv(os.path.join(out, 'annotations.csv'))
    open_page(browser, out)
    from selenium.webdriver.common.by import By
    first, second = [int(f.get_attribute('data-id')) for f in
                     browser.find_elements(By.CSS_SELECTOR, '#cluster-0 figure')[:2]]
    pick(browser, first)
    pick(browser, second, keyboard=True)
    assert js(browser, "return document.getElementById('selection').textContent") == \
        '2 images selected'
    move_selected(browser, 1)
    merge(browser, 2, 0)
    sizes = [sum(r[1] == str(k) for r in model_rows) for k in range(3)]
    assert sections(browser) == [(0, sizes[0] - 2 + sizes[2]), (1, sizes[1] + 2)]
    assert js(browser, "return document.getElementById('changes-summary').textContent") \
        .startswith('3 pending corrections')
    assert 'Cluster 2 (cluster 2) is merged into cluster 0' in \
        js(browser, "return document.getElementById('merged').textContent")
    path = save(browser, 'save-corrections', 'corrections.csv')
    with open(path, newline='', encoding='utf-8') as f:
        saved = list(csv.reader(f))
    assert saved == [['id', 'path', 'from', 'to']] \
        + [[str(i), model_rows[i][0], '0', '1'] for i in sorted((first, second))] \
        + [['', '', '2', '0']]  # moves by image id, whichever was picked first

    corrected = tmp_path / 'corrected'
    run.eval('selflabel', '--annotate', str(corrected), '--corrections', path)
    header, rows = read_csv(corrected / 'annotations.csv')
    assert header[-6:] == ['source', 'id', 'x', 'y', 'duplicate_group', 'outlier_score']
    for i, (row, model_row) in enumerate(zip(rows, model_rows)):
        expected = '1' if i in (first, second) else '0' if model_row[1] == '2' else model_row[1]
        assert row[0] == model_row[0] and row[1] == expected
        assert row[4] == ('corrected' if i in (first, second) or model_row[1] == '2' else 'model')
    summary = json.loads((corrected / 'summary.json').read_text())
    assert summary['corrections'] == {
        'file': path, 'moved_images': 2,
        'merged_clusters': [{'cluster': 2, 'into': 0, 'images': sizes[2]}],
        'corrected_images': 2 + sizes[2]}
    # the corrected gallery: the merged cluster is gone; saving again gives the same file
    os.rename(path, path + '.first')
    open_page(browser, corrected)
    assert sections(browser) == [(0, sizes[0] - 2 + sizes[2]), (1, sizes[1] + 2)]
    assert js(browser, "return document.getElementById('changes-summary').textContent") == \
        'No pending change'
    again = save(browser, 'save-corrections', 'corrections.csv')
    assert open(again, 'rb').read() == open(path + '.first', 'rb').read()


def test_hostile_names_survive_the_round_trip_without_running(run, browser, tmp_path):
    """Class folders and file names holding HTML, quotes, markup and bytes that are not UTF-8
    (a folder of more classes than clusters, through --predict), named and corrected in the
    page: nothing runs, and everything reads back as it was."""
    new = tmp_path / 'hostile'
    write_pattern_folder(str(new), 2, seed=7, labelled=True)
    (new / 'disc').rename(new / '<img src=x onerror="window.pwned=1"> =1+1 \'q\' $x$')
    (new / 'extra "class" é').mkdir()
    shown = '<b onclick=alert(1)>"bold" \'é\' =cmd.png'
    odd = os.fsdecode(bytes(new / 'extra "class" é') + b'/caf\xe9 \xff.png')
    for name in (new / 'extra "class" é' / shown, odd):
        with open(name, 'wb') as f:
            f.write((new / 'checks' / sorted(os.listdir(new / 'checks'))[0]).read_bytes())
    out = tmp_path / 'out'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(out))
    _, rows = read_csv(out / 'annotations.csv')
    ids = {os.path.basename(r[0]): int(r[6]) for r in rows}
    hostile, undecodable = ids[shown], ids['caf\\xe9 \\xff.png']
    open_page(browser, out)
    assert nothing_injected(browser)
    nav = js(browser, "return document.getElementById('nav').textContent")
    assert all(f'{r[1]}: {r[3]} (' in nav for r in rows)  # the names (class folders), as text
    alt = js(browser, f"return document.querySelector('figure[data-id=\"{hostile}\"] img').alt")
    assert alt == os.path.join('extra "class" é', shown) + ' (label: extra "class" é)'
    type_name(browser, 0, HOSTILE_NAME)
    pick(browser, hostile)
    pick(browser, undecodable)
    to = next(k for k in range(3) if k != int(rows[hostile][1]) and k != int(rows[undecodable][1])
              ) if rows[hostile][1] != rows[undecodable][1] else (int(rows[hostile][1]) + 1) % 3
    move_selected(browser, to)
    assert nothing_injected(browser)
    names = save(browser, 'save-names', 'names.yml')
    corrections = save(browser, 'save-corrections', 'corrections.csv')
    again = tmp_path / 'again'
    run.eval('selflabel', '--predict', str(new), '--annotate', str(again), '--names', names,
             '--corrections', corrections)
    _, after = read_csv(again / 'annotations.csv')
    assert [r[0] for r in after] == [r[0] for r in rows]
    for i in (hostile, undecodable):
        assert after[i][1] == str(to) and after[i][5] == 'corrected'
    assert after[hostile][0].endswith(shown)
    assert after[undecodable][0].endswith('caf\\xe9 \\xff.png')
    assert {r[3] for r in after if r[1] == '0'} == {HOSTILE_NAME}
    assert sum(r[5] == 'corrected' for r in after) == 2
    open_page(browser, again)
    assert nothing_injected(browser)


def test_docs_walk_through_the_folder_configs():
    """The walk-through (docs/own-images.md) names the configs and flags that exist."""
    section = open('docs/own-images.md', encoding='utf-8').read()
    for config in CONFIGS.values():
        assert config in section
    for flag in ('--annotate', '--names', '--corrections', '--predict', '--force', 'Save names',
                 'Save corrections', 'folder=', 'num_classes='):
        assert flag in section


def test_the_page_escapes_names_and_cells_as_eval_reads_them(annotated, browser):
    """gallery.js's yamlString and csvCell against annotation/names.py and tables.py."""
    from annotation.names import yaml_string
    from annotation.tables import from_cell
    from tests.test_annotation_export import TRICKY_NAMES
    open_page(browser, annotated[0])
    escaped = js(browser, "return arguments[0].map(s => [window.scanGallery.yamlString(s), "
                          "window.scanGallery.csvCell(s)])", TRICKY_NAMES)
    assert [yaml for yaml, _ in escaped] == [yaml_string(name) for name in TRICKY_NAMES]
    cells = next(csv.reader([','.join(cell for _, cell in escaped) + '\r\n'], strict=True))
    assert [from_cell(cell) for cell in cells] == TRICKY_NAMES
