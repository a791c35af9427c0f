"""Honest warnings (issue 23, point 3): step 1's image size and backbone, training from scratch
on a small folder, self-labeling with nothing confident (which then changes nothing), collapse,
and empty clusters never named after a class; printed, kept in warnings.json, and carried into
metrics.json, summary.json and the gallery."""
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import scan
import selflabel
import simclr
from annotation.images import match_names
from tests.fake_datasets import write_bad_files
from tests.folder_images import write_pattern_folder
from tests.pipeline_run import folder_outputs, run_eval, run_step, write_env
from utils.run_warnings import collapse_warnings
from utils.selflabel_report import report_epoch

pytestmark = pytest.mark.usefixtures('one_thread')
CONFIGS = {'pretext': 'configs/pretext/simclr_folder.yml', 'scan': 'configs/scan/scan_folder.yml',
           'selflabel': 'configs/selflabel/selflabel_folder.yml'}


def test_collapse_warnings_name_empty_and_dominant_clusters():
    messages = collapse_warnings([0, 50, 0, 2])
    assert messages[0].startswith('2 clusters of 4 are empty (0, 2): the images went into '
                                  '2 clusters')
    assert messages[1].startswith('cluster 1 holds 96% of the images (50 of 52)')
    assert collapse_warnings([10, 11, 9]) == []
    assert collapse_warnings([60, 40]) == []  # two clusters: uneven is not collapse
    assert collapse_warnings([5, 0, 7], ids=[2, 4, 9])[0].startswith('1 cluster of 3 is empty (4)')


def test_an_empty_cluster_is_never_named_after_a_class():
    dataset = SimpleNamespace(has_labels=True, classes=['cat', 'dog', 'fox'],
                              targets=np.array([0, 0, 1, 1, 2, 2]))
    probs = np.eye(3)[[0, 0, 1, 1, 1, 1]]  # cluster 2 empty; Hungarian still pairs it with fox
    names, _ = match_names(dataset, probs)
    assert names == {0: 'cat', 1: 'dog'}


@pytest.fixture(scope='module')
def unconfident(tmp_path_factory):
    """The three steps on 24 tiny pictures, self-labeling with a threshold nothing reaches."""
    root = tmp_path_factory.mktemp('warnings')
    folder = str(root / 'photos')
    write_pattern_folder(folder, 8)
    write_bad_files(folder)
    env = write_env(str(root), root / 'out')
    opts = [f'folder={folder}', 'num_classes=3', 'num_workers=0', 'batch_size=12']
    run_step(simclr, env, CONFIGS['pretext'], *opts, 'epochs=1', 'num_neighbors=5')
    run_step(scan, env, CONFIGS['scan'], *opts, 'epochs=2', 'num_neighbors=5')
    selflabel_opts = [*opts, 'epochs=2', 'confidence_threshold=0.9999999']
    run_step(selflabel, env, CONFIGS['selflabel'], *selflabel_opts)
    return SimpleNamespace(env=env, opts=selflabel_opts, out=folder_outputs(root / 'out', folder),
                           root=root)


def read_warnings(out, step):
    with open(os.path.join(out, step, 'warnings.json'), encoding='utf-8') as f:
        return json.load(f)


def test_step_one_says_size_backbone_and_from_scratch(unconfident):
    notes = read_warnings(unconfident.out, 'pretext')
    size = notes[0]
    assert size['kind'] == 'note'
    assert size['message'].startswith('images of median size 12x12, resized to 16 px (shorter '
                                      'side) and cropped to 16x16; backbone small (backbone: '
                                      'auto chooses it for 16 px crops')
    scratch = notes[1]
    assert scratch['kind'] == 'warning'
    assert 'training from scratch on only 24 images' in scratch['message']
    assert 'colour and texture' in scratch['message'] and '--pretrained' in scratch['message']


def test_the_full_skipped_list_is_written(unconfident):
    with open(os.path.join(unconfident.out, 'pretext', 'skipped-files.txt')) as f:
        lines = f.read().splitlines()
    assert len(lines) == 4 and any(line.startswith('truncated.jpg: ') for line in lines)


def test_nothing_confident_keeps_the_scan_model(unconfident):
    scan_file = torch.load(os.path.join(unconfident.out, 'scan', 'model.pth.tar'),
                           weights_only=True)
    final = torch.load(os.path.join(unconfident.out, 'selflabel', 'model.pth.tar'),
                       weights_only=True)['model']
    head = scan_file['head']
    for key, value in final.items():  # BatchNorm running statistics included
        source = key.replace('cluster_head.0.', f'cluster_head.{head}.', 1)
        assert torch.equal(value, scan_file['model'][source]), key
    assert any('num_batches_tracked' in k for k in final)
    (message,) = [w['message'] for w in read_warnings(unconfident.out, 'selflabel')]
    assert message.startswith('no image reached the confidence threshold 0.9999999 in any of '
                              'the 2 epochs: nothing was trained, and the result is the SCAN '
                              'model unchanged')


def test_eval_and_export_carry_the_warnings(unconfident, capsys):
    out_dir = str(unconfident.root / 'export')
    results = run_eval(unconfident.env, CONFIGS['selflabel'], '--annotate', out_dir,
                       '--opts', *unconfident.opts)
    assert any('in any of the 2 epochs' in w for w in results['warnings'])
    assert any('training from scratch' in w for w in results['warnings'])
    assert results['notes'] == [read_warnings(unconfident.out, 'pretext')[0]['message']]
    printed = capsys.readouterr().out
    assert 'warning: no image reached the confidence threshold' in printed
    with open(os.path.join(out_dir, 'summary.json'), encoding='utf-8') as f:
        summary = json.load(f)
    assert any('in any of the 2 epochs' in w for w in summary['warnings'])
    with open(os.path.join(out_dir, 'index.html'), encoding='utf-8') as f:
        page = f.read()
    assert 'Warning: training from scratch on only 24 images' in page
    assert 'Note: images of median size 12x12, resized to 16 px' in page
    metrics = os.path.join(unconfident.out, 'selflabel', 'eval', 'metrics.json')
    with open(metrics, encoding='utf-8') as f:
        assert json.load(f)['warnings'] == results['warnings']


def test_an_epoch_without_confident_images_is_said_at_once(capsys):
    report_epoch({'epoch': 4, 'confident_share': 0, 'max_confidence': 0.8731}, 0.99)
    assert capsys.readouterr().out == ('epoch 4: no image reached the confidence threshold 0.99 '
                                       '(the highest probability was 0.873); nothing was trained '
                                       'in this epoch\n')
