"""num_classes=auto: K chosen from the mined neighbours (utils/k_selection.py), the range's
checks, and the chosen K followed by steps 2, 3 and eval."""
import json
import os

import faiss
import numpy as np
import pytest
import torch

import scan
import selflabel
import simclr
from data import build_dataset
from data.image_folder import FolderError
from data.settings import complete_image_settings
from models.original import read_model_file
from tests.pipeline_run import folder_outputs, run_eval, run_step, write_env
from tests.shapes import write_shapes
from utils.config import ConfigError, load_config
from utils.k_selection import choose_num_classes, largest_eigengap

CONFIGS = {'pretext': 'configs/pretext/simclr_folder.yml', 'scan': 'configs/scan/scan_folder.yml',
           'selflabel': 'configs/selflabel/selflabel_folder.yml'}


def blobs(k, per_cluster=40, dim=16, seed=0):
    """Well separated clusters of uneven sizes; (points, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 4
    sizes = rng.integers(per_cluster // 2, per_cluster * 3 // 2, k)
    points = np.concatenate([c + rng.standard_normal((s, dim)) for c, s in zip(centres, sizes)])
    return points.astype(np.float32), np.repeat(np.arange(k), sizes)


def mined(points, k=20):
    """(N, 1 + k) neighbour indices, the point itself first, as step 1 mines them."""
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    return index.search(points, k + 1)[1]


@pytest.mark.parametrize('planted', [3, 7, 15])
def test_planted_k_is_recovered(planted):
    points, _ = blobs(planted)
    chosen, table, _ = choose_num_classes(points, (2, 30))
    assert chosen == planted
    assert sorted(table) == list(range(2, 31))
    assert table[planted][1] == planted  # the graph sized for K clusters reads K


def test_one_eigengap_reads_the_planted_k():
    points, _ = blobs(4)
    assert largest_eigengap(mined(points, k=20), 2, 10)[0] == 4


def test_range_is_clipped_to_the_images_there_are():
    points, _ = blobs(3, per_cluster=20)
    chosen, table, _ = choose_num_classes(points, (2, len(points)))
    assert chosen == 3 and max(table) == len(points) - 2


@pytest.mark.parametrize('opts, message', [
    (['num_classes_range=[6, 3]'], "'num_classes_range' must be [min, max] with 2 <= min <= max"),
    (['num_classes_range=[1, 5]'], "'num_classes_range' must be [min, max] with 2 <= min <= max"),
    (['num_classes_range=[2]'], "'num_classes_range' must be a list [min, max]"),
    (['num_classes_range=[2, 5.5]'], "'num_classes_range' must be a list [min, max]"),
    (['num_classes=many'], "'num_classes' must be a count >= 1 or 'auto'"),
    (['num_classes=0'], "'num_classes' must be"),
])
def test_bad_values_name_the_key(tmp_path, opts, message):
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    with pytest.raises(ConfigError, match=message.replace('[', r'\[').replace(']', r'\]')) as e:
        load_config(env, CONFIGS['scan'], ['folder=/x', 'num_classes=auto', *opts])
    assert '(set by --opts)' in str(e.value)


def test_range_above_the_number_of_images_is_an_error(tmp_path):
    folder = tmp_path / 'shapes'
    write_shapes(str(folder), per_class=4)
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    with pytest.raises((ConfigError, FolderError), match=r"'num_classes_range' is \[2, 50\], but "
                                                          r"there are only 20 images"):
        run_step(simclr, env, CONFIGS['pretext'], f'folder={folder}', 'num_classes=auto',
                 'num_neighbors=5')


def test_steps_and_eval_follow_the_chosen_k(tmp_path, monkeypatch):
    """Step 1 with num_classes=auto, then step 1's features replaced by ones that hold the
    planted 5 classes: step 2 chooses 5, says why in its folder, and step 3, eval and
    --annotate use a 5-cluster model."""
    folder = tmp_path / 'shapes'
    truth = write_shapes(str(folder), per_class=12)
    env = write_env(str(tmp_path), tmp_path / 'outputs')
    opts = [f'folder={folder}', 'num_classes=auto', 'num_classes_range=[2, 20]', 'epochs=1']
    run_step(simclr, env, CONFIGS['pretext'], *opts, 'num_neighbors=5', 'knn_every=1')
    out = folder_outputs(tmp_path / 'outputs', folder)
    cfg = complete_image_settings(load_config(env, CONFIGS['scan'], [*opts, 'num_neighbors=5']))
    labels = np.asarray(build_dataset(cfg, 'train').targets)
    assert len(labels) == len(truth) and (labels >= 0).all()
    centres = np.random.default_rng(0).standard_normal((5, 16)) * 4
    planted = centres[labels] + np.random.default_rng(1).standard_normal((len(labels), 16))
    features = scan.step1_train_features(cfg, torch.device('cpu'))  # step 1's own: one per image
    assert features.shape[0] == len(labels)
    monkeypatch.setattr(scan, 'step1_train_features', lambda cfg, device: planted)

    run_step(scan, env, CONFIGS['scan'], *opts, 'num_neighbors=5')
    record = json.load(open(os.path.join(out, 'scan', 'k_selection.json')))
    assert record['num_classes'] == 5 and len(record['per_k']) == 19
    assert record['per_k']['5']['consistent']
    assert os.path.getsize(os.path.join(out, 'scan', 'k_selection.png')) > 1000
    saved = read_model_file(os.path.join(out, 'scan', 'model.pth.tar'))
    assert saved.config['num_classes'] == 5
    assert saved.state['cluster_head.0.weight'].shape[0] == 5

    run_step(selflabel, env, CONFIGS['selflabel'], *opts)
    saved = read_model_file(os.path.join(out, 'selflabel', 'model.pth.tar'))
    assert saved.config['num_classes'] == 5
    results = run_eval(env, CONFIGS['selflabel'], '--annotate', str(tmp_path / 'export'),
                       '--opts', *opts)
    assert len(results['cluster_sizes']) == 5 and 0 <= results['acc'] <= 1
    with open(tmp_path / 'export' / 'annotations.csv') as f:
        clusters = {int(line.split(',')[1]) for line in list(f)[1:]}
    assert clusters <= set(range(5))
