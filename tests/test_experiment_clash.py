"""Experiments never clash (issue 23, point 2): a seed or a pretrained backbone gets its own
outputs, and a step whose folder holds another configuration's model stops before any work,
naming the keys that differ and what to do."""
import os

import pytest

import scan
import simclr
from tests.folder_images import write_pattern_folder
from tests.pipeline_run import folder_outputs, run_step, write_env
from utils.config import output_name
from utils.experiment_clash import ExperimentClash
from utils.paths import file_digest

pytestmark = pytest.mark.usefixtures('one_thread')
PRETEXT, SCAN = 'configs/pretext/simclr_folder.yml', 'configs/scan/scan_folder.yml'


def test_published_names_stay_and_experiments_get_their_own():
    assert output_name({'train_db_name': 'cifar-10', 'backbone': 'resnet18_cifar'}) == 'cifar-10'
    assert output_name({'train_db_name': 'digits', 'seed': 1}) == 'digits-seed1'
    dino = output_name({'train_db_name': 'cifar-10',
                        'backbone': 'timm/vit_small_patch14_dinov2.lvd142m'})
    assert dino == 'cifar-10-vit_small_patch14_dinov2.lvd142m'
    scratch = output_name({'train_db_name': 'folder', 'folder': '/x/photos', 'backbone': 'auto'})
    pretrained = output_name({'train_db_name': 'folder', 'folder': '/x/photos',
                              'backbone': 'timm/vit_small_patch14_dinov2.lvd142m', 'seed': 2})
    assert scratch.startswith('folder-photos-') and '-' not in scratch[len('folder-photos-'):]
    assert pretrained == scratch + '-vit_small_patch14_dinov2.lvd142m-seed2'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('clash')
    folder = str(root / 'photos')
    write_pattern_folder(folder, 8)
    env = write_env(str(root), root / 'out')
    opts = [f'folder={folder}', 'num_classes=3', 'num_workers=0', 'num_neighbors=5',
            'batch_size=24']
    run_step(simclr, env, PRETEXT, *opts, 'epochs=1')
    run_step(scan, env, SCAN, *opts, 'epochs=1')
    return env, opts, folder_outputs(root / 'out', folder)


def fail_if_called(*args, **kwargs):
    raise AssertionError("work started before the clash was found")


def test_same_configuration_reruns(trained):
    env, opts, out = trained
    run_step(scan, env, SCAN, *opts, 'epochs=2')  # epochs may change: it continues
    assert os.path.isfile(os.path.join(out, 'scan', 'model.pth.tar'))


def test_other_pretext_configuration_stops_before_training(trained, monkeypatch):
    env, opts, out = trained
    model = os.path.join(out, 'pretext', 'model.pth.tar')
    before = file_digest(model)
    monkeypatch.setattr(simclr, 'record_fingerprint', fail_if_called)
    monkeypatch.setattr(simclr, 'train_pretext', fail_if_called)
    with pytest.raises(ExperimentClash) as error:
        run_step(simclr, env, PRETEXT, *opts, 'epochs=1', 'criterion_kwargs.temperature=0.2')
    message = str(error.value)
    assert 'changed: criterion_kwargs' in message
    assert 'criterion_kwargs.temperature: 0.5 -> 0.2' in message
    assert 'root_dir=PATH' in message and f"rm -r '{os.path.join(out, 'pretext')}'" in message
    assert file_digest(model) == before


def test_other_scan_configuration_stops_before_embedding(trained, monkeypatch):
    env, opts, out = trained
    monkeypatch.setattr(scan, 'load_neighbors', fail_if_called)
    monkeypatch.setattr(scan, 'clustering_model_from_pretext', fail_if_called)
    with pytest.raises(ExperimentClash, match=r'entropy_weight: 5\.0 -> 2\.0'):
        run_step(scan, env, SCAN, *opts, 'epochs=2', 'criterion_kwargs.entropy_weight=2.0')


def test_another_seed_trains_beside(trained):
    env, opts, out = trained
    run_step(simclr, env, PRETEXT, *opts, 'epochs=1', 'seed=1')
    assert os.path.isfile(os.path.join(out + '-seed1', 'pretext', 'model.pth.tar'))
    assert os.path.isfile(os.path.join(out, 'pretext', 'model.pth.tar'))


def test_num_classes_auto_reruns_over_the_k_it_chose(tmp_path):
    """Step 2 with num_classes=auto saves the K it chose; a rerun with auto chooses again."""
    import torch
    from easydict import EasyDict

    from utils.experiment_clash import check_no_clash
    saved = {'num_classes': 3, 'seed': 0, 'paths': {}}
    torch.save({'config': saved}, str(tmp_path / 'model.pth.tar'))
    check_no_clash(EasyDict({**saved, 'num_classes': 'auto'}), str(tmp_path))
    with pytest.raises(ExperimentClash, match='num_classes: 3 -> 4'):
        check_no_clash(EasyDict({**saved, 'num_classes': 4}), str(tmp_path))
