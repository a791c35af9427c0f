"""scripts/run_folder.sh (issue 23, point 1): one command from a folder to a gallery, ending
with the gallery's path, the cluster sizes and the warnings; --opts go to the steps that have
the key; a relative folder works; a key no step has stops before any work."""
import csv
import os
import subprocess
import sys

import pytest

from tests.fake_datasets import write_bad_files
from tests.folder_images import folder_state, write_pattern_folder
from tests.pipeline_run import ROOT, folder_outputs
from utils.step_opts import opts_for

SCRIPT = os.path.join(ROOT, 'scripts', 'run_folder.sh')


def run_script(*args, cwd):
    env = dict(os.environ, SCAN_PYTHON=sys.executable, OMP_NUM_THREADS='1')
    return subprocess.run(['bash', SCRIPT, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_each_step_gets_the_keys_it_has():
    opts = ['num_neighbors=5', 'confidence_threshold=0.9', 'num_heads=2', 'epochs=1',
            'root_dir=/tmp/x', 'augmentation_kwargs.cutout_kwargs.length=4']
    assert opts_for('simclr', opts) == ['num_neighbors=5', 'epochs=1', 'root_dir=/tmp/x',
                                        'augmentation_kwargs.cutout_kwargs.length=4']
    assert opts_for('scan', opts) == ['num_neighbors=5', 'num_heads=2', 'epochs=1',
                                      'root_dir=/tmp/x', 'augmentation_kwargs.cutout_kwargs.length=4']
    assert opts_for('selflabel', opts) == ['confidence_threshold=0.9', 'epochs=1',
                                           'root_dir=/tmp/x',
                                           'augmentation_kwargs.cutout_kwargs.length=4']
    with pytest.raises(SystemExit, match="no step has the key 'epoch'"):
        opts_for('scan', ['epoch=3'])


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('run_folder')
    folder = tmp / 'my photos'
    truth = write_pattern_folder(str(folder), 8)
    write_bad_files(str(folder))
    before = folder_state(str(folder))
    result = run_script('my photos', '3', '--opts', f'root_dir={tmp / "out"}', 'device=cpu',
                        'epochs=1', 'num_neighbors=5', 'batch_size=12', 'num_workers=0',
                        cwd=str(tmp))
    return result, tmp, folder, truth, before


def test_one_command_ends_with_gallery_sizes_and_warnings(finished):
    result, tmp, folder, truth, before = finished
    assert result.returncode == 0, result.stderr[-3000:]
    out = os.path.join(folder_outputs(tmp / 'out', folder), 'annotations')
    tail = result.stdout[result.stdout.rindex('\ngallery: '):].splitlines()[1:]
    assert tail[0] == f"gallery: {os.path.join(out, 'index.html')}"
    assert tail[1] == '24 images in 3 clusters:'
    sizes = [int(line.split()[1]) for line in tail[2:5]]
    assert sum(sizes) == 24 and all(line.startswith('  ') for line in tail[2:5])
    assert tail[5] == f"4 files skipped: listed in {os.path.join(out, 'summary.json')}"
    assert any(line.startswith('warning: training from scratch on only 24 images')
               for line in tail[6:])
    with open(os.path.join(out, 'annotations.csv'), newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert sorted(r['path'] for r in rows) == sorted(truth)
    assert folder_state(str(folder)) == before  # the images are never touched


def test_a_key_no_step_has_stops_before_any_work(tmp_path):
    folder = tmp_path / 'photos'
    write_pattern_folder(str(folder), 8)
    result = run_script(str(folder), '3', '--opts', f'root_dir={tmp_path / "out"}', 'epoch=1',
                        cwd=str(tmp_path))
    assert result.returncode != 0
    assert "no step has the key 'epoch'" in result.stderr
    assert not (tmp_path / 'out').exists()


def test_usage_without_arguments(tmp_path):
    result = run_script(cwd=str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith('usage: bash scripts/run_folder.sh')
