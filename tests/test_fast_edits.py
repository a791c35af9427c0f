"""Fast edits (issue 23, point 5): a re-export with --names or --corrections reuses the saved
predictions (no forward pass, metrics and figures kept) while the model file and the images are
unchanged; --predict runs only the new images and reports their own metrics; the gallery keeps
pending edits across a reload and asks before leaving with unsaved ones. Also the true label
shown under each image of a labelled export (point 7)."""
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import eval as eval_script
from annotation import overview as overview_module
from annotation import prediction_cache
from annotation.derived_cache import DerivedCache
from annotation.duplicates import Duplicates
from tests.browser import open_page
from tests.folder_images import write_pattern_folder
from tests.pipeline_run import run_eval, trained_pattern_folder
from tests.test_annotate import js, move_selected, type_name

pytestmark = pytest.mark.usefixtures('one_thread')
SCAN = 'configs/scan/scan_folder.yml'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Images:
    """Three files standing for a dataset's images."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        self.paths = []
        for i in range(3):
            path = os.path.join(folder, f'{i}.png')
            with open(path, 'wb') as f:
                f.write(bytes([i]) * 10)
            self.paths.append(path)

    def __len__(self):
        return len(self.paths)


def test_predictions_are_reused_until_the_model_or_an_image_changes(tmp_path):
    images, model = Images(str(tmp_path / 'images')), tmp_path / 'model.pth.tar'
    model.write_bytes(b'weights 1')
    calls = []

    def predict():
        calls.append(1)
        return np.full((3, 2), 0.5, dtype=np.float32), np.array([0, 1, -1])

    def run():
        return prediction_cache.cached_predictions(str(tmp_path), 'val', str(model), 0, 'fp32',
                                                   images, predict)
    probs, targets, features, key, reused = run()
    assert not reused and len(calls) == 1
    probs, targets, features, again, reused = run()
    assert reused and again == key and len(calls) == 1 and targets.tolist() == [0, 1, -1]
    assert features is None  # none given, none kept
    os.utime(images.paths[1], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not run()[4] and len(calls) == 2  # an image changed
    model.write_bytes(b'weights 2')
    assert not run()[4] and len(calls) == 3  # the model changed
    assert run()[4] and len(calls) == 3


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('fast')
    env, opts = trained_pattern_folder(root)
    first = run_eval(env, SCAN, '--annotate', str(root / 'export'), '--opts', *opts)
    return root, env, opts, first


def refuse(*args, **kwargs):
    raise AssertionError('the model ran again')


def read_rows(path):
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def test_names_reexport_runs_no_model(trained, monkeypatch, capsys):
    root, env, opts, first = trained
    overview = ('x', 'y', 'duplicate_group', 'outlier_score')
    before_rows = read_rows(root / 'export' / 'annotations.csv')
    for name in ('predict_val', 'predict_dataset', 'evaluate_clustering', 'evaluate_model',
                 'load_clustering_model', 'start_device'):
        monkeypatch.setattr(eval_script, name, refuse)
    monkeypatch.setattr(overview_module.Overview, 'compute', refuse)
    names = root / 'names.yml'
    names.write_text('0: first\n1: second\n')
    thumbs = sorted((root / 'export' / 'thumbs').iterdir())
    before = [t.stat().st_mtime_ns for t in thumbs]
    results = run_eval(env, SCAN, '--annotate', str(root / 'export'), '--names', str(names),
                       '--opts', *opts)
    out = capsys.readouterr().out
    assert 'predictions of 18 images reused from ' in out and 'no model runs' in out
    assert 'map, duplicates, outliers and label matching reused from ' in out
    assert len(thumbs) == 18 and [t.stat().st_mtime_ns for t in thumbs] == before  # kept
    assert results['cluster_sizes'] == first['cluster_sizes']
    rows = read_rows(root / 'export' / 'annotations.csv')
    assert {r['name'] for r in rows if r['cluster'] == '1'} <= {'second'}
    assert {r['name'] for r in rows} <= {'first', 'second', 'cluster 2'}
    assert [[r[k] for k in overview] for r in rows] == \
        [[r[k] for k in overview] for r in before_rows]  # the map etc. as the first export's
    assert [r['path'] for r in rows] == [r['path'] for r in before_rows]


# what a re-export from saved predictions must not load (about 10 s of imports on 2 CPU cores)
HEAVY = ('torch', 'torchvision', 'sklearn', 'scipy', 'timm', 'faiss', 'imagehash', 'open_clip',
         'umap', 'numba')
NO_HEAVY_IMPORTS = f"""
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('a re-export imported ' + name)
sys.meta_path.insert(0, Refuse())
sys.argv = ['eval.py'] + sys.argv[1:]
runpy.run_path('eval.py', run_name='__main__')
"""


def test_names_reexport_imports_no_torch(trained):
    """The whole command, in a fresh process, with torch, scikit-learn, scipy and the other
    heavy libraries made unimportable: it still writes the export."""
    root, env, opts, first = trained
    names = root / 'names-2.yml'
    names.write_text('0: alpha\n')
    result = subprocess.run(
        [sys.executable, '-c', NO_HEAVY_IMPORTS, '--config_env', env, '--config_exp', SCAN,
         '--annotate', str(root / 'export'), '--names', str(names), '--opts', *opts],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert 'no model runs' in result.stdout
    rows = read_rows(root / 'export' / 'annotations.csv')
    assert len(rows) == 18 and {r['name'] for r in rows if r['cluster'] == '0'} <= {'alpha'}
    gallery = result.stdout[result.stdout.rindex('gallery: '):].splitlines()
    assert gallery[0] == f"gallery: {root / 'export' / 'index.html'}"
    assert gallery[1] == f"18 images in {len(first['cluster_sizes'])} clusters:"


def test_predict_runs_only_the_new_images_and_reports_them(trained, monkeypatch, capsys):
    root, env, opts, _ = trained
    new = root / 'new'
    truth = write_pattern_folder(str(new), 3, seed=5, labelled=True)
    seen = []
    original = eval_script.predict_dataset

    def counted(model, head, dataset, cfg, device, **kwargs):
        seen.append(len(dataset))
        return original(model, head, dataset, cfg, device, **kwargs)
    monkeypatch.setattr(eval_script, 'predict_dataset', counted)
    monkeypatch.setattr(eval_script, 'predict_val', refuse)  # the training folder has no labels
    metrics = root / 'out'
    before = [p.stat().st_mtime_ns for p in metrics.rglob('metrics.json')]
    results = run_eval(env, SCAN, '--predict', str(new), '--annotate', str(root / 'predicted'),
                       '--opts', *opts)
    assert seen == [len(truth)] == [9]
    assert results['predict'] == str(new) and sum(results['cluster_sizes']) == 9
    assert 0 <= results['acc'] <= 1 and 'nmi' in results
    printed = capsys.readouterr().out
    assert f"new images of {new} (not the training folder):" in printed
    assert [p.stat().st_mtime_ns for p in metrics.rglob('metrics.json')] == before
    summary = json.loads((root / 'predicted' / 'summary.json').read_text())
    assert summary['metrics']['acc'] == results['acc']


def leaving_is_questioned(driver):
    return js(driver, "const e = new Event('beforeunload', {cancelable: true}); "
                      "window.dispatchEvent(e); return e.defaultPrevented")


def test_pending_edits_survive_a_reload_and_leaving_asks(trained, browser):
    root = trained[0]
    open_page(browser, root / 'export')
    assert not leaving_is_questioned(browser)
    type_name(browser, 1, 'kept name')
    from selenium.webdriver.common.by import By
    first = int(browser.find_elements(By.CSS_SELECTOR, 'section.cluster figure')[0]
                .get_attribute('data-id'))
    js(browser, f"document.querySelector('figure[data-id=\"{first}\"] button.pick').click()")
    move_selected(browser, 2)
    time.sleep(0.2)
    assert leaving_is_questioned(browser)
    js(browser, "window.scanGalleryStorage.forget()")  # reload without the question
    browser.refresh()
    field = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Name of cluster 1"]')
    assert field.get_attribute('value') == 'kept name'
    assert browser.find_elements(By.CSS_SELECTOR, f'#cluster-2 figure[data-id="{first}"]')
    assert js(browser, "return document.getElementById('changes-summary').textContent") \
        .startswith('1 pending correction, 1 renamed cluster')
    assert 'restored' in js(browser, "return document.getElementById('kept-note').textContent")
    assert leaving_is_questioned(browser)
    browser.find_element(By.ID, 'save-names').click()
    browser.find_element(By.ID, 'save-corrections').click()
    assert not leaving_is_questioned(browser)


def test_labels_are_shown_under_the_images(trained, browser):
    root = trained[0]
    open_page(browser, root / 'predicted')
    labels = js(browser, "return [...document.querySelectorAll("
                         "'section.cluster figcaption .label')].map(s => s.textContent)")
    assert len(labels) == 9 and set(labels) == {'disc', 'stripes', 'checks'}


def test_derived_cache_is_keyed_by_predictions_and_settings(tmp_path):
    settings = overview_module.OverviewSettings()
    duplicates = Duplicates.restored(np.array([0, 0, -1]), np.array([True, True, False]), 1)
    overview = overview_module.Overview(np.array([[0, 0], [1, 2], [3, 1]], np.float32), 'pca',
                                        duplicates, np.array([0.1, 0.5, 0.9], np.float32),
                                        settings, {'map': 0.5, 'duplicates': 0.25,
                                                   'outliers': 0.125})
    path = str(tmp_path / 'overview-val.npz')
    DerivedCache(path, 'key 1').save({0: 'digit 0'}, {'acc': 0.75}, overview)
    own, metrics, again = DerivedCache(path, 'key 1').load(settings)
    assert own == {0: 'digit 0'} and metrics == {'acc': 0.75} and again.method == 'pca'
    assert again.coordinates.tolist() == overview.coordinates.tolist()
    assert again.duplicates.members() == [[0, 1]] and again.duplicates.pairs == 1
    assert again.outlier_score.tolist() == overview.outlier_score.tolist()
    assert again.summary(['a', 'b', 'c']) == overview.summary(['a', 'b', 'c'])
    assert DerivedCache(path, 'key 2').load(settings) is None  # other predictions
    assert DerivedCache(path, 'key 1').load(overview_module.OverviewSettings(seed=1)) is None
    (tmp_path / 'overview-val.npz').write_bytes(b'not a zip')
    assert DerivedCache(path, 'key 1').load(settings) is None  # damaged: computed again
    assert DerivedCache(str(tmp_path / 'none.npz'), 'key 1').load(settings) is None
