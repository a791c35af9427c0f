"""selflabel.py --corrections: the gallery's corrections teach the model (refine.py).

A folder of three easy kinds of picture and a planted step-3 model with two errors: the discs
are split over clusters 0 and 1, and the stripes and the checks share cluster 2 (cluster 3 is
empty). One merge row (1 into 0) and a handful of moved checks (2 -> 3) must fix both: the
merged cluster stays empty, and the checks nobody moved follow the moved ones."""
import csv
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import eval as eval_script
import selflabel
from data import build_dataset
from data.device_loader import make_eval_loader, make_train_loader
from data.settings import complete_image_settings
from models import ClusteringModel, build_backbone
from tests.folder_images import write_pattern_folder
from tests.pipeline_run import write_env
from utils.checkpoint import atomic_save
from utils.config import load_config
from utils.lock import release_output_locks
from utils.runtime import get_args_parser, run_cli
from utils.training import plain

pytestmark = pytest.mark.usefixtures('one_thread')

CONFIG = 'configs/selflabel/selflabel_folder.yml'
PER_KIND = 40
MOVED_CHECKS = 5
# 10x the config's learning rate: the planted errors sit in a head that was fit far from the
# truth, which a few epochs at 1e-4 do not undo
OPTS = ['num_classes=4', 'batch_size=40', 'refine_epochs=12', 'refine_lr=0.001', 'seed=0']


class Planted:
    """The folder, the config's options, and the planted model's clusters per image."""

    def __init__(self, root):
        self.root = root
        self.folder = os.path.join(root, 'pictures')
        self.truth = write_pattern_folder(self.folder, PER_KIND)
        self.env = write_env(root, os.path.join(root, 'outputs'))
        self.opts = [f'folder={self.folder}', *OPTS]

    def argv(self, *extra, opts=()):
        return ['--config_env', self.env, '--config_exp', CONFIG, *extra,
                '--opts', *self.opts, *opts]

    def refine(self, corrections, *opts):
        parser = selflabel.refine.add_corrections_argument(get_args_parser('test'))
        try:
            return selflabel.main(parser.parse_args(self.argv('--corrections', str(corrections),
                                                              opts=opts)))
        finally:
            release_output_locks()


def plant_model(run):
    """A step-3 model that tells the three kinds apart (discs 0, stripes 2, checks 3) but whose
    head was then refit to put the checks into 2 with the stripes (3 is left empty, a shadow of
    2); then the discs are split:
    cluster 1 is cluster 0 tilted along a random direction of the features, its bias set so
    that half the discs go there. Saved as step 3's model."""
    cfg = load_config(run.env, CONFIG, run.opts)
    complete_image_settings(cfg)
    dataset = build_dataset(cfg, 'val')
    truth = {os.path.realpath(p): kind for p, kind in run.truth.items()}
    kinds = np.array([truth[os.path.realpath(p)] for p in dataset.paths])
    torch.manual_seed(0)
    model = ClusteringModel(build_backbone(cfg.backbone), 4)
    fit(model, cfg, torch.as_tensor(np.select([kinds == 'disc', kinds == 'stripes'], [0, 2], 3)))
    model.eval()
    images = torch.cat([b['image'] for b in make_eval_loader(cfg, dataset, torch.device('cpu'))])
    head = model.cluster_head[0]
    with torch.no_grad():
        features = model(images, forward_pass='backbone')
    planted = torch.as_tensor(np.where(kinds == 'disc', 0, 2))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(100):  # the head alone: the features still tell the checks apart
        optimizer.zero_grad()
        F.cross_entropy(head(features), planted).backward()
        optimizer.step()
    with torch.no_grad():
        head.weight[3], head.bias[3] = head.weight[2], head.bias[2] - 6  # empty, next to 2
        tilt = torch.randn(features.shape[1]) * features.std(0).mean() / features.norm(dim=1).mean()
        head.weight[1] = head.weight[0] + tilt * head.weight[0].norm() * 10
        along = features[torch.as_tensor(kinds == 'disc')] @ (head.weight[1] - head.weight[0])
        head.bias[1] = head.bias[0] - along.median()
    atomic_save({'model': model.state_dict(), 'head': 0, 'config': plain(cfg)},
                cfg.paths.selflabel_model)
    return cfg, list(dataset.paths), kinds


def fit(model, cfg, labels):
    """Train on both views of the folder's images, as a step-3 model has seen augmentations."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    model.train()
    loader = make_train_loader(cfg, build_dataset(cfg, 'val'), 'selflabel', torch.device('cpu'))
    for _ in range(10):
        for batch in loader:
            optimizer.zero_grad()
            views = torch.cat([batch['image'], batch['image_augmented']])
            F.cross_entropy(model(views)[0], labels[batch['index']].repeat(2)).backward()
            optimizer.step()


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    run = Planted(str(tmp_path_factory.mktemp('refine')))
    run.cfg, run.paths, run.kinds = plant_model(run)
    return run


def export(run, out, *extra):
    run_cli(eval_script.main, eval_script.get_eval_parser(),
            run.argv('--annotate', str(out), '--force', *extra))
    with open(os.path.join(out, 'annotations.csv'), newline='', encoding='utf-8') as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r['id']))
    return np.array([int(r['cluster']) for r in rows]), [r['path'] for r in rows]


def in_colour(paths):
    """Which pictures keep their colour: the folder saves some as grey (L, 16-bit), and those
    look like one another more than like the coloured pictures of their kind."""
    return np.array([Image.open(p).mode not in ('L', 'I;16') for p in paths])


def write_corrections(path, run, before):
    """Merge 1 into 0; move the first MOVED_CHECKS coloured checks from 2 to 3."""
    checks = np.flatnonzero((run.kinds == 'checks') & in_colour(run.paths))[:MOVED_CHECKS]
    lines = ['id,path,from,to', ',,1,0']
    lines += [f'{i},{run.paths[i]},{before[i]},3' for i in checks]
    path.write_text('\n'.join(lines) + '\n')
    return checks


@pytest.fixture(scope='module')
def refined(planted, tmp_path_factory):
    work = tmp_path_factory.mktemp('refined')
    before, _ = export(planted, work / 'before')
    corrections = work / 'corrections.csv'
    moved = write_corrections(corrections, planted, before)
    report = planted.refine(corrections)
    model = planted.cfg.paths.refined_model
    after, _ = export(planted, work / 'after', '--model', model)
    return {'before': before, 'after': after, 'report': report, 'moved': moved,
            'corrections': corrections, 'work': work, 'model': model}


def test_planted_model_has_the_two_errors(planted, refined):
    before, kinds = refined['before'], planted.kinds
    assert set(before[kinds == 'disc']) == {0, 1}
    assert 0.25 <= (before[kinds == 'disc'] == 1).mean() <= 0.75
    assert set(before[kinds != 'disc']) == {2}


def test_merge_row_joins_the_split_class_and_the_merged_id_stays_empty(planted, refined):
    after, kinds = refined['after'], planted.kinds
    assert set(after[kinds == 'disc']) == {0}
    assert not (after == 1).any()
    assert refined['report']['images_in_merged_clusters'] == 0


def test_a_handful_of_moved_images_drags_their_look_alikes(planted, refined):
    after, kinds, moved = refined['after'], planted.kinds, refined['moved']
    alike = np.setdiff1d(np.flatnonzero((kinds == 'checks') & in_colour(planted.paths)), moved)
    assert len(alike) >= 20
    assert (after[moved] == 3).all()
    share = (after[alike] == 3).mean()
    print(f"unmoved coloured checks now in cluster 3: {share:.2f}")
    assert share >= 0.9
    assert (after[kinds == 'stripes'] == 2).mean() >= 0.9  # the stripes stay where they were


def test_report_counts_and_log(planted, refined):
    report, before, after = refined['report'], refined['before'], refined['after']
    corrected = np.zeros(len(before), bool)
    corrected[refined['moved']] = True
    corrected[before == 1] = True  # the merged cluster's images
    assert report['corrected_images'] == int(corrected.sum())
    assert report['corrected_in_their_cluster'] == report['corrected_images']
    assert report['corrected_elsewhere'] == []
    assert report['uncorrected_changed_cluster'] == int((after != before)[~corrected].sum())
    assert report['uncorrected_changed_cluster'] >= 20  # the checks that followed
    with open(planted.cfg.paths.refined_log, encoding='utf-8') as f:
        records = [json.loads(line) for line in f]
    assert [r['epoch'] for r in records[:-1]] == list(range(1, 13))
    assert records[-1] == {'report': report}


def test_predict_uses_the_refined_model(planted, refined, tmp_path):
    new = tmp_path / 'new'
    truth = write_pattern_folder(str(new), 6, seed=5, prefix='new')
    clusters, paths = export(planted, tmp_path / 'out', '--model', refined['model'],
                             '--predict', str(new))
    kinds = np.array([truth[os.path.realpath(p)] for p in paths])
    assert (clusters[(kinds == 'checks') & in_colour(paths)] == 3).mean() >= 0.8
    assert not (clusters == 1).any()


def test_resume_with_another_corrections_file_is_refused(planted, refined, tmp_path):
    other = tmp_path / 'other.csv'
    other.write_text(refined['corrections'].read_text() + ',,3,2\n')
    with pytest.raises(Exception, match=r'refined with another corrections file'):
        planted.refine(other)
    with pytest.raises(Exception, match=r'refined with correction_weight=1.0, not 2'):
        planted.refine(refined['corrections'], 'correction_weight=2')
    # the same file resumes: all epochs done, nothing trained again, the same report
    assert planted.refine(refined['corrections']) == refined['report']


def test_bad_corrections_file_names_the_line(planted, tmp_path):
    bad = tmp_path / 'bad.csv'
    bad.write_text('id,path,from,to\n,,1,9\n')
    with pytest.raises(Exception, match=r'bad.csv, line 2: `to` must be a cluster of the model'):
        planted.refine(bad)
